package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
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
