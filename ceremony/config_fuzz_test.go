package ceremony

import (
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// FuzzParseConfig: a config is refused with a one-line error, or it
// validates, survives a YAML round trip unchanged, and every expiry it
// gives lies between now and 365 days ahead.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	for _, r := range []string{"valid_for: 2160h", "valid_to: 2027-06-30T00:00:00Z", "does_not_expire: true",
		"valid_for: 106751991167301d", "valid_for: 281474976710686d", "valid_for: 365d", "valid_for: -1d"} {
		f.Add([]byte(strings.Replace(goodConfig, "valid_for: 90d", r, 1)))
	}
	examples, err := filepath.Glob("../examples/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range examples {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("ceremony: {id: x}\n---\nfoo: 1\n"))
	f.Add([]byte(""))
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		for i := range cfg.Keys {
			k := &cfg.Keys[i]
			vt, err := k.validTo(now)
			switch {
			case err != nil && k.ValidTo == "":
				t.Fatalf("keys[%d]: validated, then validTo: %v", i, err)
			case vt != nil && (!vt.After(now.Add(-time.Second)) || vt.After(now.Add(MaxValidFor))):
				t.Fatalf("keys[%d]: expiry %v is not within 365 days of %v", i, vt, now)
			}
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("re-encoded config refused: %v\n%s", err, out)
		}
		again.hash, again.raw = cfg.hash, cfg.raw
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("round trip changed the config:\n%s", out)
		}
	})
}

// FuzzParseValidFor checks the bounds and the arithmetic against big
// integers (days) and time.ParseDuration (everything else).
func FuzzParseValidFor(f *testing.F) {
	for _, s := range []string{"90d", "2160h", "106751991167301d", "281474976710686d", "365d", "366d", "0d", "-1d", "1h30m", "+5d", "d", "1e3d"} {
		f.Add(s)
	}
	day := big.NewInt(int64(24 * time.Hour))
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseValidFor(s)
		if err != nil {
			if !errors.Is(err, ErrValidForSyntax) && !errors.Is(err, ErrValidForTooLong) {
				t.Fatalf("untyped error %v", err)
			}
			if d != 0 {
				t.Fatalf("error %v with duration %v", err, d)
			}
		} else if d <= 0 || d > MaxValidFor {
			t.Fatalf("ParseValidFor(%q) = %v, outside (0, 365d]", s, d)
		}
		var want *big.Int
		if n, ok := strings.CutSuffix(s, "d"); ok {
			if days, ok := new(big.Int).SetString(n, 10); ok && !strings.HasPrefix(n, "-") && !strings.HasPrefix(n, "+") {
				want = days.Mul(days, day)
			}
		} else if ref, err := time.ParseDuration(s); err == nil {
			want = big.NewInt(int64(ref))
		}
		inRange := want != nil && want.Sign() > 0 && want.Cmp(big.NewInt(int64(MaxValidFor))) <= 0
		switch {
		case inRange && (err != nil || big.NewInt(int64(d)).Cmp(want) != 0):
			t.Fatalf("ParseValidFor(%q) = %v, %v; want %v", s, d, err, want)
		case !inRange && err == nil:
			t.Fatalf("ParseValidFor(%q) = %v, want an error", s, d)
		case want != nil && want.Cmp(big.NewInt(int64(MaxValidFor))) > 0 && !errors.Is(err, ErrValidForTooLong):
			t.Fatalf("ParseValidFor(%q): %v, want ErrValidForTooLong", s, err)
		}
	})
}
