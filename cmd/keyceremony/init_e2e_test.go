package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestInitRunsAsWritten writes a starter config with keyceremony init and
// runs a whole ceremony from it as written: script prints it, run completes
// and verify accepts the result. A second init refuses to overwrite it, and
// a bad custodian is a one-line error that writes nothing.
func TestInitRunsAsWritten(t *testing.T) {
	e := newE2E(t)
	bob, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.dir, "ceremony.yaml")
	stdout, stderr, code := e.run(nil, "init", "--out", cfg, "--id", "init-e2e", "--operator", "tester", "--token-label", "ceremony",
		"--key", "payments-init", "--key", "archive-init", "--valid-for", "30d",
		"--wrapping-algorithm", "RSAES_OAEP_SHA_1", "--wrapping-key-spec", "RSA_2048",
		"--custodian", "alice=age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "--custodian", "bob="+bob.Recipient().String())
	if code != 0 || !strings.Contains(stdout, "wrote "+cfg) {
		t.Fatalf("init exited %d: %s %s", code, stdout, stderr)
	}
	data, _ := os.ReadFile(cfg)
	if !strings.Contains(string(data), "# keyceremony config, written by keyceremony init") || !strings.Contains(string(data), "threshold: 2") {
		t.Errorf("the starter config:\n%s", data)
	}
	runAsWritten(t, e, cfg, "init-e2e")

	_, stderr, code = e.run(nil, "init", "--out", cfg)
	if code != 1 || !strings.Contains(stderr, "already exists: init never overwrites a config") {
		t.Errorf("a second init: %d %s", code, stderr)
	}
	if after, _ := os.ReadFile(cfg); string(after) != string(data) {
		t.Error("a second init changed the config")
	}
	bad := filepath.Join(e.dir, "bad.yaml")
	_, stderr, code = e.run(nil, "init", "--out", bad, "--custodian", "alice=age1notarecipient", "--custodian", "bob=ask")
	if code != 1 || !strings.Contains(stderr, "escrow.custodians[0].recipient") || strings.Count(stderr, "\n") > 2 {
		t.Errorf("a bad custodian: %d %s", code, stderr)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("a bad init wrote a file")
	}
}

// runAsWritten runs the ceremony of the config init wrote, as written:
// keyceremony script prints it, run completes it, and verify accepts the
// result with its files.
func runAsWritten(t *testing.T, e *e2e, cfg, id string) {
	t.Helper()
	if stdout, stderr, code := e.run(nil, "script", "--config", cfg); code != 0 || !strings.Contains(stdout, "# Key ceremony script: "+id) {
		t.Fatalf("script exited %d: %s %s", code, stdout, stderr)
	}
	if stdout, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg); code != 0 {
		t.Fatalf("run exited %d: %s %s", code, stdout, stderr)
	}
	out := filepath.Join(e.dir, id)
	if stdout, stderr, code := e.run(nil, "verify", "--files", out, "--pubkey", filepath.Join(out, "signing-key.pem"), filepath.Join(out, "transcript.jsonl")); code != 0 {
		t.Fatalf("verify exited %d: %s %s", code, stdout, stderr)
	}
}

// TestInitPrintsCommandsThatWork: a config path with a space and a quote
// is quoted in the commands init prints, so that they work as printed: a
// POSIX shell splits the printed script command back into the same path.
func TestInitPrintsCommandsThatWork(t *testing.T) {
	e := newE2E(t)
	cfg := filepath.Join(e.dir, "bob's ceremony.yaml")
	stdout, stderr, code := e.run(nil, "init", "--out", cfg, "--id", "init-quoted", "--operator", "tester", "--token-label", "ceremony",
		"--key", "payments-init", "--custodian", "alice=age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
		"--custodian", "bob=passphrase")
	_, next, ok := strings.Cut(stdout, "next: keyceremony ")
	script, _, ok2 := strings.Cut(next, ", then keyceremony ")
	if code != 0 || !ok || !ok2 {
		t.Fatalf("init exited %d: %q %s", code, stdout, stderr)
	}
	words, err := exec.Command("sh", "-c", `for w in `+script+`; do printf '%s\n' "$w"; done`).Output()
	if err != nil {
		t.Fatalf("the printed command %q does not parse in sh: %v", script, err)
	}
	args := strings.Split(strings.TrimSuffix(string(words), "\n"), "\n")
	if len(args) != 3 || args[2] != cfg {
		t.Fatalf("sh splits the printed command %q into %q, not script --config %q", script, args, cfg)
	}
	if stdout, stderr, code := e.run(nil, args...); code != 0 || !strings.Contains(stdout, "# Key ceremony script: init-quoted") {
		t.Fatalf("the printed command exited %d: %s %s", code, stdout, stderr)
	}
}
