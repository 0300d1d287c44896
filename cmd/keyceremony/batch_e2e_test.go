package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// startKMS starts another bin/kmslocal with extra flags and returns its
// endpoint URL and its log.
func startKMS(t *testing.T, args ...string) (string, *bytes.Buffer) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "kms.addr")
	cmd := exec.Command(filepath.Join(binDir, "kmslocal"), append([]string{"--addr", "127.0.0.1:0", "--ready-file", ready}, args...)...)
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for range 400 {
		if addr, _ := os.ReadFile(ready); len(addr) > 0 {
			return "http://" + strings.TrimSpace(string(addr)), &log
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("kmslocal did not start: %s", log.String())
	return "", nil
}

// TestThrottledBatch runs a 12-key ceremony, 8 keys at a time, against a
// kmslocal that allows 10 requests per second: KMS throttles, the SDK's
// retryer absorbs it, the ceremony completes with every key as recorded.
func TestThrottledBatch(t *testing.T) {
	e := newE2E(t)
	url, kmsLog := startKMS(t, "--quota", "10", "--latency", "5ms", "--pool-size", "4", "--pool-specs", "RSA_2048")
	env := append([]string{"AWS_ENDPOINT_URL_KMS=" + url}, pin...)
	id, _ := age.GenerateX25519Identity()
	var keys strings.Builder
	for i := range 12 {
		fmt.Fprintf(&keys, "  - {label: batch-%02d, create: true, does_not_expire: true}\n", i)
	}
	cfg := e.config("batch.yaml", fmt.Sprintf(`
ceremony: {id: batch, operator: tester, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
%sescrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - {name: alice, recipient: %s}
`, filepath.Join(e.dir, "batch"), keys.String(), id.Recipient()))
	stdout, stderr, code := e.run(env, "run", "--config", cfg, "--parallel", "8")
	if code != 0 {
		t.Fatalf("run exited %d\n%s\n%s\nkmslocal:\n%s", code, stdout, stderr, kmsLog)
	}
	if !strings.Contains(kmsLog.String(), "result=ThrottlingException") {
		t.Fatal("kmslocal throttled nothing: the test proves nothing")
	}
	if !strings.Contains(stderr, "[####################] 12/12 keys") {
		t.Errorf("no progress bar:\n%s", stderr)
	}
	if n := strings.Count(stdout, "batch-"); n < 12 || !strings.Contains(stdout, "KEY MATERIAL ID") {
		t.Errorf("result table:\n%s", stdout)
	}
	stdout, stderr, code = e.run(env, "status", "--transcript", filepath.Join(e.dir, "batch", "transcript.jsonl"), "--json")
	var rep statusJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || len(rep.Keys) != 12 {
		t.Fatalf("status exited %d\n%s\n%s", code, stdout, stderr)
	}
	for _, k := range rep.Keys {
		if k.State != "Enabled" || k.Record != "match" {
			t.Errorf("%s: %s, record %s", k.Label, k.State, k.Record)
		}
	}
	_, stderr, code = e.run(env, "run", "--config", cfg, "--parallel", "65")
	if code != 2 || !strings.Contains(stderr, "--parallel 65 must be between 1 and 64") {
		t.Errorf("--parallel 65: exit %d: %s", code, stderr)
	}
}

// TestBatchFailedKeyRetriedAlone: one key's import fails (KMS answers it
// with an error) while the batch goes on; the run reports that key, exit
// 1, and running the same command again imports only it: nothing done is
// done again. The ceremony then checks like any other (verify --files,
// shares, drill, token, KMS).
func TestBatchFailedKeyRetriedAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ceremonies")
	}
	hsmtest.Require(t)
	conf, err := hsmtest.SetupDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	c := newCrashCase(t, conf, newCrashCustodians(t), 960)
	c.kms.mu.Lock()
	c.kms.failOp, c.kms.failOpN = "ImportKeyMaterial", 2
	c.kms.mu.Unlock()
	r := c.run(killPoint{line: -1, request: -1})
	if r.code != 1 || !strings.Contains(r.stderr, "1 of 3 keys failed in import: archive: ") || !strings.Contains(r.stderr, "injected by the test") {
		t.Fatalf("run with a failing import: exit %d\n%s", r.code, r.stderr)
	}
	c.kms.mu.Lock()
	c.kms.failOp = ""
	first := len(c.kms.ops)
	c.kms.mu.Unlock()
	if r := c.run(killPoint{line: -1, request: -1}); r.code != 0 {
		t.Fatalf("the run again exited %d: %s", r.code, r.stderr)
	}
	c.kms.mu.Lock()
	ops := slices.Clone(c.kms.ops[first:])
	c.kms.mu.Unlock()
	count := map[string]int{}
	for _, op := range ops {
		count[op]++
	}
	if count["ImportKeyMaterial"] != 1 || count["CreateKey"] != 0 || count["GetParametersForImport"] != 0 {
		t.Errorf("the run again redid work: %v", count)
	}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
}
