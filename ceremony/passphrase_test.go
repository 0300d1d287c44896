package ceremony

import (
	"strings"
	"testing"
)

func TestCheckPassphrase(t *testing.T) {
	for _, tc := range []struct {
		pass string
		ok   bool
	}{
		{"correct horse battery staple", true},
		{"carol's long passphrase", true},
		{"tr0ub4dor&3xyz", true},
		{"Kx9#mQ2v!pLw", true},
		{"x7!kq", false},
		{"aaaaaaaaaaaaaaaaaaaa", false},
		{"abcdefghijklmnopqrst", false},
		{"123456789012", false},
		{"987654321098", false},
		{"Password1234!", false},
		{"passwordpassword", false},
		{"abcabcabcabcabcabc", false},
		{"alice alice alice 1", false},
		{"qwertyuiop12", false},
		{"ceremony-7 password", false},
	} {
		err := checkPassphrase([]byte(tc.pass), "alice", "ceremony-7")
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v (%.0f bits)", tc.pass, err, tc.ok, passphraseBits([]byte(tc.pass), "alice", "ceremony-7"))
		}
		if err != nil && strings.Contains(err.Error(), tc.pass) {
			t.Errorf("the error repeats the passphrase: %v", err)
		}
	}
}
