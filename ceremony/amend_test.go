package ceremony

import (
	"strings"
	"testing"
)

// TestAmendRules: which config changes a resumed ceremony takes, given
// what its transcript shows done.
func TestAmendRules(t *testing.T) {
	old, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		from, to string
		done     func(s *state, k *keyState)
		want     string // "" when taken; else the reason
		path     string
	}{
		{"expiry before import", "valid_for: 90d", "valid_for: 60d", func(s *state, k *keyState) { k.generated, k.bundle = true, nil }, "", "keys[0].valid_for"},
		{"expiry after import", "valid_for: 90d", "valid_for: 60d", func(s *state, k *keyState) { k.imported = true }, "already imported with the old expiry", "keys[0].valid_for"},
		{"algorithm before wrap", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_1", func(s *state, k *keyState) { k.generated = true }, "", "kms.wrapping_algorithm"},
		{"custodian before escrow", "name: erin", "name: frank", func(s *state, k *keyState) { k.generated = true }, "", "escrow.custodians[2].name"},
		{"custodian after escrow", "name: erin", "name: frank", func(s *state, k *keyState) { s.escrowed = true }, "the escrow was already made", "escrow.custodians[2].name"},
		{"region after create", "region: eu-west-1", "region: us-east-1", func(s *state, k *keyState) { k.nonce = "n" }, "already created or chosen there", "kms.region"},
		{"existing key after create", "create: true", "kms_key_id: abc", func(s *state, k *keyState) { k.kmsRecorded = true }, "already created or chosen", "keys[0].kms_key_id"},
		{"id after generation intent", "create: true", "create: true\n    id: 0a0b", func(s *state, k *keyState) { k.genIntent = true }, "already generated on the token", "keys[0].id"},
		{"operator", "operator: alice", "operator: bob", func(s *state, k *keyState) { s.escrowed, k.imported = true, true }, "", "ceremony.operator"},
		{"signing key", "label: ceremony", "label: ceremony\n  signing_key: other", func(s *state, k *keyState) {}, "header names the signing key", "token.signing_key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(goodConfig, tt.from) {
				t.Fatalf("bad test: %q not in config", tt.from)
			}
			cur, err := ParseConfig([]byte(strings.Replace(goodConfig, tt.from, tt.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			s := &state{cfg: cur}
			for i := range cur.Keys {
				s.keys = append(s.keys, &keyState{cfg: &cur.Keys[i]})
			}
			tt.done(s, s.keys[0])
			changes := diffConfig(old, cur)
			found := false
			for _, c := range changes {
				why := s.contradicts(c)
				if c.path == tt.path {
					found = true
				}
				if (why != "" || c.path == tt.path) && (why == "") != (tt.want == "") || !strings.Contains(why, tt.want) {
					t.Errorf("%s: contradicts = %q, want %q", c.path, why, tt.want)
				}
			}
			if !found {
				t.Errorf("changes %v, want one at %s", changes, tt.path)
			}
		})
	}
}
