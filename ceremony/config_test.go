package ceremony

import (
	"strings"
	"testing"
	"time"
)

const goodConfig = `
ceremony:
  id: payments-2026
  operator: alice
  out_dir: out
token:
  label: ceremony
kms:
  region: eu-west-1
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_2048
keys:
  - label: payments-2026
    create: true
    valid_for: 90d
`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token.SigningKey != "keyceremony-transcript" || cfg.Keys[0].Label != "payments-2026" || len(cfg.Hash()) != 64 {
		t.Errorf("%+v", cfg)
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 500, time.UTC)
	vt, err := cfg.Keys[0].validTo(now)
	if err != nil || !vt.Equal(time.Date(2027, 2, 21, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("validTo = %v, %v", vt, err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown field", "operator: alice", "operator: alice\n  colour: blue", "field colour not found"},
		{"bad id", "id: payments-2026", "id: 'pay ments'", "ceremony.id"},
		{"no out_dir", "out_dir: out", "out_dir: ''", "ceremony.out_dir"},
		{"no token", "label: ceremony", "module: /x.so", "token: set label, serial or uri"},
		{"bad uri", "label: ceremony", "uri: 'pkcs11:token=x?pin-value=1234'", "never put a PIN in a URI"},
		{"uri and label", "label: ceremony", "label: ceremony\n  uri: 'pkcs11:token=x'", "exclusive"},
		{"pkcs1", "RSAES_OAEP_SHA_1", "RSAES_PKCS1_V1_5", "no longer accepted"},
		{"bad algorithm", "RSAES_OAEP_SHA_1", "RSA_OAEP", "kms.wrapping_algorithm"},
		{"bad spec", "RSA_2048", "RSA_1024", "kms.wrapping_key_spec"},
		{"no expiry", "valid_for: 90d", "description: x", "keys[0]: set exactly one of valid_to"},
		{"two expiries", "valid_for: 90d", "valid_for: 90d\n    does_not_expire: true", "keys[0]: set exactly one of valid_to"},
		{"too long", "valid_for: 90d", "valid_for: 366d", "keys[0].valid_for \"366d\" is more than 365 days"},
		{"bad valid_to", "valid_for: 90d", "valid_to: tomorrow", "keys[0].valid_to"},
		{"no kms key", "create: true", "description: x", "keys[0]: set exactly one of kms_key_id"},
		{"both kms key", "create: true", "create: true\n    kms_key_id: abc", "keys[0]: set exactly one of kms_key_id"},
		{"bad key id", "create: true", "create: true\n    id: xyz", "keys[0].id"},
		{"two docs", "valid_for: 90d", "valid_for: 90d\n---\nfoo: 1", "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(goodConfig, tt.from) {
				t.Fatalf("bad test: %q not in config", tt.from)
			}
			_, err := ParseConfig([]byte(strings.Replace(goodConfig, tt.from, tt.to, 1)))
			if err == nil {
				t.Fatal("ParseConfig succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Errorf("error leaks a PIN: %q", err)
			}
		})
	}
	if _, err := ParseConfig(nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty config: %v", err)
	}
}

func TestValidToBounds(t *testing.T) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		validTo string
		ok      bool
	}{
		{"2026-11-22T00:00:00Z", false},
		{"2027-11-24T00:00:00Z", false},
		{"2027-06-01T00:00:00Z", true},
	} {
		k := KeyConfig{Label: "k", ValidTo: tt.validTo}
		_, err := k.validTo(now)
		if (err == nil) != tt.ok {
			t.Errorf("valid_to %s: err = %v", tt.validTo, err)
		}
	}
	k := KeyConfig{Label: "k", DoesNotExpire: true}
	if vt, err := k.validTo(now); vt != nil || err != nil {
		t.Errorf("does_not_expire: %v %v", vt, err)
	}
}
