package main_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/wrap"
)

// TestOfflineCeremony runs the air-gapped ceremony through the real binary:
// params fetched online, then a whole ceremony (generate, escrow, wrap,
// seal) with no AWS configuration and KMS unreachable, then the bundles
// uploaded online and checked in KMS.
func TestOfflineCeremony(t *testing.T) {
	a := newAirgap(t)
	work := t.TempDir()
	var keys strings.Builder
	for _, label := range []string{"pay", "arc"} {
		arn := a.createKey()
		p := filepath.Join(work, "params-in-"+label+".json")
		out, errOut, code := a.run(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", p)
		if code != 0 {
			t.Fatalf("params fetch: %s%s", out, errOut)
		}
		// Pin the wrapping key params fetch printed.
		_, after, ok := strings.Cut(out, "wrapping public key sha256 ")
		if !ok {
			t.Fatalf("params fetch does not print the wrapping key's hash:\n%s", out)
		}
		pin := strings.TrimSuffix(strings.Fields(after)[0], ":")
		// Another fetch for the same key: another wrapping key, to swap in.
		if out, errOut, code := a.run(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", p+".other"); code != 0 {
			t.Fatalf("params fetch: %s%s", out, errOut)
		}
		fmt.Fprintf(&keys, "  - {label: off-%s, params_file: %s, wrapping_key_sha256: %s, valid_for: 60d}\n", label, p, pin)
	}
	cfg := filepath.Join(work, "offline.yaml")
	os.WriteFile(cfg, []byte(`
ceremony: {id: offline-1, operator: tester, out_dir: out}
token: {label: ceremony}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
keys:
`+keys.String()), 0o600)

	stdout, stderr, code := a.offline([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg)
	if code != 0 {
		t.Fatalf("offline run exited %d:\n%s\n%s", code, stdout, stderr)
	}
	out := filepath.Join(work, "out")
	fp := strings.Fields(strings.SplitN(stdout, "signer fingerprint: ", 2)[1])[0]
	for _, l := range []string{"pay", "arc"} {
		want := "keyceremony upload --bundle " + filepath.Join(out, "bundle-off-"+l+".json") + " --transcript " + filepath.Join(out, "transcript.jsonl") + " --fingerprint " + fp + " --valid-for 60d\n"
		if !strings.Contains(stdout, want) {
			t.Errorf("the run does not say how to upload (%s):\n%s", want, stdout)
		}
	}
	data, _ := os.ReadFile(filepath.Join(out, "transcript.jsonl"))
	if strings.Contains(string(data), `"step":"import"`) {
		t.Error("an offline ceremony recorded an import")
	}
	if vout, verr, code := a.offline(nil, "verify", "--files", out, "--pubkey", filepath.Join(out, "signing-key.pem"), filepath.Join(out, "transcript.jsonl")); code != 0 {
		t.Fatalf("verify: %s%s", vout, verr)
	}
	pin := []string{"--transcript", filepath.Join(out, "transcript.jsonl"), "--pubkey", filepath.Join(out, "signing-key.pem")}
	// A bundle changed on its way out is refused before KMS sees it.
	orig := mustRead(t, filepath.Join(out, "bundle-off-pay.json"))
	swapped := filepath.Join(work, "swapped.json")
	os.WriteFile(swapped, append([]byte(" "), orig...), 0o644)
	if _, uerr, code := a.run(nil, append([]string{"upload", "--bundle", swapped, "--valid-for", "60d"}, pin...)...); code != 3 || !strings.Contains(uerr, "is not one the transcript of ceremony offline-1 recorded") {
		t.Fatalf("swapped bundle: exit %d: %s", code, uerr)
	}
	// The upload commands the run printed, as printed.
	for _, line := range strings.Split(stdout, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "keyceremony upload ") {
			if uout, uerr, code := a.run(nil, strings.Fields(line)[1:]...); code != 0 {
				t.Fatalf("%s: %s%s", line, uout, uerr)
			}
		}
	}
	arn := strings.Split(strings.Split(string(data), `"kms_key_arn":"`)[1], `"`)[0]
	if st := a.keyState(arn); st != "Enabled" {
		t.Errorf("after upload the key is %s", st)
	}

	// A params file swapped on its way in is refused before anything changes.
	swappedCfg := strings.Replace(strings.Replace(string(mustRead(t, cfg)), "out_dir: out", "out_dir: out3", 1), "params-in-pay.json", "params-in-pay.json.other", 1)
	os.WriteFile(cfg, []byte(swappedCfg), 0o600)
	_, stderr, code = a.offline([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "not the pinned") {
		t.Errorf("swapped params file: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "out3")); err == nil {
		t.Error("a refused offline run left an output directory")
	}
	os.WriteFile(cfg, []byte(strings.Replace(swappedCfg, ".json.other", ".json", 1)), 0o600)

	// An expired or missing params file is refused before anything changes.
	bad := strings.Replace(string(mustRead(t, cfg)), "out_dir: out3", "out_dir: out2", 1)
	bad = strings.Replace(bad, "params-in-pay.json", "missing.json", 1)
	os.WriteFile(cfg, []byte(bad), 0o600)
	_, stderr, code = a.offline([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "keys[0].params_file") {
		t.Errorf("missing params file: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "out2")); err == nil {
		t.Error("a refused offline run left an output directory")
	}

	// Two keys for one KMS key (two params files fetched for it): the
	// second upload would fail after the first bound its material; refused
	// before anything changes.
	other := filepath.Join(work, "params-in-pay.json.other")
	op, err := wrap.ParseParams(mustRead(t, other))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(op.PublicKey)
	twice := strings.Replace(strings.Replace(bad, "out_dir: out2", "out_dir: out4", 1), "missing.json", "params-in-pay.json", 1)
	twice += fmt.Sprintf("  - {label: off-twice, params_file: %s, wrapping_key_sha256: %x, valid_for: 60d}\n", other, sum)
	os.WriteFile(cfg, []byte(twice), 0o600)
	_, stderr, code = a.offline([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg)
	want := "keyceremony: error: keys[2].params_file " + other + " is for KMS key " + op.KeyARN + ", as keys[0].params_file is: each key needs its own KMS key; fetch parameters for another key"
	if code != 1 || errorLines(stderr) != want {
		t.Errorf("two keys for one KMS key: exit %d, error lines:\n%s\nwant:\n%s", code, errorLines(stderr), want)
	}
	if _, err := os.Stat(filepath.Join(work, "out4")); err == nil {
		t.Error("a refused offline run left an output directory")
	}
}
