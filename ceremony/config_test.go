package ceremony

import (
	"context"
	"errors"
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
escrow:
  threshold: 2
  custodians:
    - name: carol
      recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    - name: dave
      recipient: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0qHy1yNkNuGk2sFzDa8VPR8ukY8uD0WSVWOCcW1VCk dave@example
    - name: erin
      passphrase: true
      passphrase_env: ERIN_PASSPHRASE
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
		{"unknown field", "operator: alice", "operator: alice\n  colour: blue", `line 5: unknown field "colour" in ceremony`},
		{"bad id", "id: payments-2026", "id: 'pay ments'", "ceremony.id"},
		{"no out_dir", "out_dir: out", "out_dir: ''", "ceremony.out_dir"},
		{"operator on two lines", "operator: alice", `operator: "alice\nOK: verified"`, `ceremony.operator "alice\nOK: verified" must be printable text on one line: it is printed in the evidence`},
		{"operator with an escape", "operator: alice", `operator: "alice\e[8m"`, `ceremony.operator "alice\x1b[8m" must be printable text on one line`},
		{"no token", "label: ceremony", "module: /x.so", "token: set label, serial or uri"},
		{"bad uri", "label: ceremony", "uri: 'pkcs11:token=x?pin-value=1234'", "never put a PIN in a URI"},
		{"uri and label", "label: ceremony", "label: ceremony\n  uri: 'pkcs11:token=x'", "exclusive"},
		{"token parallel", "label: ceremony", "label: ceremony\n  parallel: 65", "token.parallel 65 must be between 1 and 64 (0: the default, 8)"},
		{"pkcs1", "RSAES_OAEP_SHA_1", "RSAES_PKCS1_V1_5", "no longer accepted"},
		{"bad algorithm", "RSAES_OAEP_SHA_1", "RSA_OAEP", "kms.wrapping_algorithm"},
		{"bad spec", "RSA_2048", "RSA_1024", "kms.wrapping_key_spec"},
		{"bad region", "region: eu-west-1", `region: "eu-west-1.attacker.example/"`, `kms.region "eu-west-1.attacker.example/" must be an AWS Region such as us-east-1`},
		{"no expiry", "valid_for: 90d", "description: x", "keys[0]: set exactly one of valid_to"},
		{"two expiries", "valid_for: 90d", "valid_for: 90d\n    does_not_expire: true", "keys[0]: set exactly one of valid_to"},
		{"too long", "valid_for: 90d", "valid_for: 366d", "keys[0].valid_for \"366d\" is more than 365 days"},
		{"bad valid_to", "valid_for: 90d", "valid_to: tomorrow", "keys[0].valid_to"},
		{"no kms key", "create: true", "description: x", "keys[0]: set exactly one of kms_key_id"},
		{"both kms key", "create: true", "create: true\n    kms_key_id: abc", "keys[0]: set exactly one of kms_key_id"},
		{"bad key id", "create: true", "create: true\n    id: xyz", "keys[0].id"},
		{"two docs", "passphrase_env: ERIN_PASSPHRASE", "passphrase_env: ERIN_PASSPHRASE\n---\nfoo: 1", "more than one YAML document"},
		{"no escrow", "escrow:", "escrow_:", `unknown field "escrow_" in the top level`},
		{"threshold 0", "threshold: 2", "threshold: 0", "escrow.threshold 0 must be between 1 and the number of custodians (3)"},
		{"threshold > n", "threshold: 2", "threshold: 4", "escrow.threshold 4 must be between 1"},
		{"single custodian", "threshold: 2", "threshold: 1", "escrow.threshold 1 lets any one custodian recover every key alone: raise it, or set escrow.allow_single_custodian: true"},
		{"bad name", "name: carol", "name: 'carol smith'", "escrow.custodians[0].name"},
		{"same name", "name: dave", "name: carol", `escrow.custodians[1].name "carol" is used twice`},
		{"bad age recipient", "recipient: age1ql3z", "recipient: age1xl3z", "escrow.custodians[0].recipient: invalid age recipient"},
		{"secret key as recipient", "recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "recipient: AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX", "escrow.custodians[0].recipient: recipient must be"},
		{"bad ssh", "AAAAC3NzaC1lZDI1NTE5AAAAIH0q", "AAAAC3NzaC1lZDI1NTE5AAAAIH1q", "escrow.custodians[1].recipient: invalid SSH recipient"},
		{"both", "passphrase: true", "passphrase: true\n      recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "escrow.custodians[2]: set exactly one of recipient"},
		{"neither", "passphrase: true", "passphrase: false", "escrow.custodians[2]: set exactly one of recipient"},
		{"env and file", "passphrase_env: ERIN_PASSPHRASE", "passphrase_env: ERIN_PASSPHRASE\n      passphrase_file: erin.txt", "escrow.custodians[2]: passphrase_env and passphrase_file are exclusive"},
		{"env without passphrase", "dave@example", "dave@example\n      passphrase_env: X", "escrow.custodians[1]: passphrase_env and passphrase_file need passphrase: true"},
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
			if strings.Contains(err.Error(), "AGE-SECRET-KEY") {
				t.Errorf("error repeats a secret key: %q", err)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Errorf("error leaks a PIN: %q", err)
			}
		})
	}
	// Without an escrow section the config parses (wrap --config reads only
	// its token section), but a ceremony refuses to start.
	noEscrow := goodConfig[:strings.Index(goodConfig, "escrow:")]
	cfg, err := ParseConfig([]byte(noEscrow))
	if err != nil {
		t.Fatalf("config without escrow: %v", err)
	}
	if _, err := custodians(context.Background(), &state{cfg: cfg}); !errors.Is(err, ErrNoEscrow) {
		t.Errorf("ceremony without escrow: %v", err)
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

// TestConfigDuplicates: two keys for one label, one CKA_ID, one KMS key
// (however written) or one params file are refused when the config is read.
func TestConfigDuplicates(t *testing.T) {
	two := func(a, b string) string {
		return strings.Replace(goodConfig, "  - label: payments-2026\n    create: true\n    valid_for: 90d\n",
			"  - label: one\n    "+a+"\n    valid_for: 90d\n  - label: two\n    "+b+"\n    valid_for: 90d\n", 1)
	}
	arn := "arn:aws:kms:eu-west-1:111122223333:key/0b0e5a9c-3c3e-4a53-9a0e-2f1f2c1d0e0f"
	for _, tt := range []struct{ name, cfg, want string }{
		{"label", strings.Replace(two("create: true", "create: true"), "label: two", "label: one", 1), `keys[1].label "one" is used twice (keys[0] names it too)`},
		{"same ARN", two("kms_key_id: "+arn, "kms_key_id: "+arn), `keys[1].kms_key_id "` + arn + `" is used twice`},
		{"ARN and ID", two("kms_key_id: "+arn, "kms_key_id: 0b0e5a9c-3c3e-4a53-9a0e-2f1f2c1d0e0f"), `keys[1].kms_key_id "0b0e5a9c-3c3e-4a53-9a0e-2f1f2c1d0e0f" is used twice`},
		{"params file", two("params_file: p.json", "params_file: ./p.json"), `keys[1].params_file "./p.json" is used twice`},
		{"CKA_ID", two("create: true\n    id: 0a1b", "create: true\n    id: 0A1B"), `keys[1].id "0A1B" is used twice (keys[0] names it too)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.cfg))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := ParseConfig([]byte(two("create: true", "create: true"))); err != nil {
		t.Errorf("two distinct keys: %v", err)
	}
}
