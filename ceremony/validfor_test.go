package ceremony

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestParseValidFor holds issue 17's day counts that wrapped around when
// multiplied: 106751991167301d became 8h29m52s and 281474976710686d exactly
// 30 days, both accepted.
func TestParseValidFor(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  error
	}{
		{"90d", 90 * 24 * time.Hour, nil},
		{"365d", 365 * 24 * time.Hour, nil},
		{"2160h", 2160 * time.Hour, nil},
		{"8760h", 8760 * time.Hour, nil},
		{"366d", 0, ErrValidForTooLong},
		{"8761h", 0, ErrValidForTooLong},
		{"106751991167301d", 0, ErrValidForTooLong},
		{"281474976710686d", 0, ErrValidForTooLong},
		{"18446744073709551616d", 0, ErrValidForTooLong},
		{"99999999999999999999999d", 0, ErrValidForTooLong},
		{"0d", 0, ErrValidForSyntax},
		{"-1d", 0, ErrValidForSyntax},
		{"-24h", 0, ErrValidForSyntax},
		{"d", 0, ErrValidForSyntax},
		{"1.5d", 0, ErrValidForSyntax},
		{"9999999999999999999h", 0, ErrValidForSyntax},
		{"", 0, ErrValidForSyntax},
	} {
		got, err := ParseValidFor(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("ParseValidFor(%q) = %v, %v; want %v, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestConfigValidForOverflow(t *testing.T) {
	for _, in := range []string{"106751991167301d", "281474976710686d"} {
		_, err := ParseConfig([]byte(strings.Replace(goodConfig, "valid_for: 90d", "valid_for: "+in, 1)))
		want := `keys[0].valid_for "` + in + `" is more than 365 days, the most KMS allows`
		if err == nil || err.Error() != want {
			t.Errorf("valid_for %s: got %v, want %q", in, err, want)
		}
	}
}
