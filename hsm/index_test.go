package hsm_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestSecretKeyIndex: one listing sees every secret key on a real SoftHSM
// token, and GenerateAESKeyIndexed refuses a label or id in it, then adds
// the key it makes.
func TestSecretKeyIndex(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	tok := open(t, "ceremony")
	x0, err := tok.SecretKeyIndex()
	if err != nil || x0.HasLabel("k000") {
		t.Fatalf("index of an empty token: %v", err)
	}
	for i := range 300 { // more than one FindObjects batch
		if _, err := tok.GenerateAESKeyIndexed(x0, fmt.Sprintf("k%03d", i), []byte{byte(i >> 8), byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	x, err := tok.SecretKeyIndex()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"k000", "k255", "k256", "k299"} {
		if !x.HasLabel(l) {
			t.Errorf("index lacks %s", l)
		}
	}
	if x.HasLabel("new") {
		t.Fatal("index has a label that is not on the token")
	}
	for _, c := range []struct {
		label string
		id    []byte
	}{{"k007", []byte{9, 9}}, {"fresh", []byte{0, 7}}} {
		if _, err := tok.GenerateAESKeyIndexed(x, c.label, c.id); !errors.Is(err, hsm.ErrKeyExists) {
			t.Errorf("GenerateAESKeyIndexed(%s, %x) = %v, want ErrKeyExists", c.label, c.id, err)
		}
	}
	if _, err := tok.GenerateAESKeyIndexed(x, "new", []byte{7, 7}); err != nil {
		t.Fatal(err)
	}
	if !x.HasLabel("new") {
		t.Error("the new key is not in the index")
	}
	if _, err := tok.FindAESKey("new", []byte{7, 7}); err != nil {
		t.Errorf("the new key is not on the token: %v", err)
	}
	if _, err := tok.GenerateAESKeyIndexed(x, "new", []byte{8, 8}); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("second key labelled new: %v", err)
	}
}
