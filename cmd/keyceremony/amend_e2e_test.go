package main_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

const amendYAML = `
ceremony:
  id: amend-e2e
  operator: tester
  out_dir: amend
token:
  label: ceremony
kms:
  wrapping_algorithm: RSAES_OAEP_SHA_256
  wrapping_key_spec: RSA_2048
  allow_host_wrap: true
keys:
  - label: payments
    create: true
    valid_for: 30d
  - label: archive
    create: true
    does_not_expire: true
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - name: alice
      recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
`

// TestFixAndRunAgain: the KMS endpoint does not offer the configured
// wrapping algorithm, found once the KMS keys exist but before any key is
// generated. A config change that contradicts done work (the Region of the
// keys already created) is refused naming the field and changing nothing;
// the fix (another algorithm, and a longer expiry) is taken on resume with
// a signed amendment naming both configs, the KMS keys are kept, and the
// evidence verifies.
func TestFixAndRunAgain(t *testing.T) {
	e := newE2EWith(t, "--wrapping-algorithms", "RSAES_OAEP_SHA_1,RSA_AES_KEY_WRAP_SHA_1")
	pin := []string{"KEYCEREMONY_PIN=" + hsmtest.PIN}
	cfg := e.config("ceremony.yaml", amendYAML)
	out := filepath.Join(e.dir, "amend")
	tr := filepath.Join(out, "transcript.jsonl")

	_, stderr, code := e.run(pin, "run", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "does not offer wrapping algorithm RSAES_OAEP_SHA_256") || !strings.Contains(stderr, "fix the cause and run the same command again") {
		t.Fatalf("first run: exit %d: %s", code, stderr)
	}
	tok, err := hsm.Open(hsm.Config{TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tok.FindAESKey("payments", nil)
	tok.Close()
	if !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("a key was generated before the import parameters were fetched: %v", err)
	}
	keys := kmsKeyCount(t)
	if keys != 2 {
		t.Fatalf("KMS holds %d keys after the first run, want the 2 created", keys)
	}

	// The keys were created in this Region: moving them is refused.
	before, _ := os.ReadFile(tr)
	moved := e.config("ceremony.yaml", strings.Replace(amendYAML, "kms:\n", "kms:\n  region: us-west-2\n", 1))
	_, stderr, code = e.run(pin, "run", "--config", moved)
	want := `kms.region cannot change ("" → us-west-2): the ceremony's KMS keys were already created or chosen there`
	if code != 1 || !strings.Contains(firstErrorLine(stderr), want) {
		t.Errorf("contradicting change: exit %d, want 1 and %q:\n%s", code, want, stderr)
	}
	if after, _ := os.ReadFile(tr); !bytes.Equal(after, before) {
		t.Error("a refused change changed the transcript")
	}

	// The fix: an algorithm the endpoint offers, and a longer expiry.
	fixed := strings.Replace(strings.Replace(amendYAML, "RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", 1), "valid_for: 30d", "valid_for: 60d", 1)
	e.config("ceremony.yaml", fixed)
	stdout, stderr, code := e.run(pin, "run", "--config", cfg)
	if code != 0 {
		t.Fatalf("resume with the fix: exit %d: %s %s", code, stdout, stderr)
	}
	lines, err := transcriptLines(tr)
	if err != nil {
		t.Fatal(err)
	}
	var amend map[string]any
	for _, l := range lines {
		if l["step"] == "amend" {
			amend, _ = l["data"].(map[string]any)
		}
	}
	if amend == nil {
		t.Fatal("no amend event")
	}
	header := lines[0]
	changes := strings.Join(toStrings(amend["changes"]), "; ")
	if amend["old_config_sha256"] != header["config_sha256"] || amend["new_config_sha256"] != sha256Hex([]byte(fixed)) ||
		changes != "kms.wrapping_algorithm: RSAES_OAEP_SHA_256 → RSAES_OAEP_SHA_1; keys[0].valid_for: 30d → 60d" {
		t.Errorf("amend event: %v", amend)
	}
	if _, verr, code := e.run(nil, "verify", "--pubkey", filepath.Join(out, "signing-key.pem"), "--files", out, tr); code != 0 {
		t.Errorf("verify --files: %s", verr)
	}
	if n := kmsKeyCount(t); n != 2 {
		t.Errorf("KMS holds %d keys, want the 2 created by the first run", n)
	}
	if !strings.Contains(stdout, "valid to "+time.Now().Add(60*24*time.Hour).UTC().Format("2006-01-02")) {
		t.Errorf("the amended expiry was not used:\n%s", stdout)
	}
}

func kmsKeyCount(t *testing.T) int {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := kms.NewFromConfig(cfg).ListKeys(context.Background(), &kms.ListKeysInput{Limit: aws.Int32(1000)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Keys)
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
