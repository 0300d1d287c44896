package main_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
)

// offlineKey is one key of an offline config: its label, params file and
// the pin params fetch printed, and the rest of its YAML flow mapping.
type offlineKey struct {
	label, params, pin, extra string
}

// offlineRun writes an offline config (out_dir out, in work) for keys and
// runs it with no AWS environment; it returns stdout, stderr and the exit
// code.
func (a *airgap) offlineRun(work, id, out string, keys ...offlineKey) (string, string, int) {
	a.t.Helper()
	var ks strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&ks, "  - {label: %s, params_file: %s, wrapping_key_sha256: %s%s}\n", k.label, k.params, k.pin, k.extra)
	}
	cfg := filepath.Join(work, out+".yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
ceremony: {id: %s, operator: tester, out_dir: %s}
token: {label: ceremony}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
keys:
%s`, id, out, ks.String())), 0o600); err != nil {
		a.t.Fatal(err)
	}
	return a.offline(pin, "run", "--config", cfg)
}

// uploads returns the upload commands an offline run printed, as argument
// lists (after "keyceremony").
func uploads(stdout string) [][]string {
	var out [][]string
	for _, line := range strings.Split(stdout, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "keyceremony upload ") {
			out = append(out, strings.Fields(line)[1:])
		}
	}
	return out
}

// firstImportOffline makes an EXTERNAL key and gives it its first material
// through the air gap (params fetch, an offline ceremony, the upload it
// printed); it returns the key's ARN and KeyMaterialId.
func (a *airgap) firstImportOffline(work, label string) (string, string) {
	a.t.Helper()
	arn := a.createKey()
	p := filepath.Join(work, "params-"+label+".json")
	pin := a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", p)
	stdout, stderr, code := a.offlineRun(work, label, "out-"+label, offlineKey{label, p, pin, ", valid_for: 60d"})
	if code != 0 {
		a.t.Fatalf("offline run exited %d:\n%s\n%s", code, stdout, stderr)
	}
	for _, args := range uploads(stdout) {
		if out, errOut, code := a.run(nil, args...); code != 0 {
			a.t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	d, err := a.kms.Describe(context.Background(), arn)
	if err != nil || d.State != "Enabled" || d.CurrentMaterialID == "" {
		a.t.Fatalf("after the first upload: %+v %v", d, err)
	}
	return arn, d.CurrentMaterialID
}

// TestOfflineRotation rotates a key's imported material across the air
// gap: params fetch of the Enabled key (online), an offline ceremony with
// rotate: true and every AWS_* variable removed, the upload it printed, as
// printed (online). The old material stays NON_CURRENT and old ciphertexts
// decrypt, new ones use the new material, status matches both ceremonies'
// transcripts, and the same upload again changes nothing and says so.
func TestOfflineRotation(t *testing.T) {
	a := newAirgap(t)
	ctx := context.Background()
	work := t.TempDir()
	arn, mid1 := a.firstImportOffline(work, "rot-v1")
	old, err := a.kms.Encrypt(ctx, arn, []byte("under v1"))
	if err != nil {
		t.Fatal(err)
	}

	// params fetch of a key that has material says so, and records it.
	p2 := filepath.Join(work, "params-v2.json")
	stdout, stderr, code := a.run(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", p2)
	if code != 0 || !strings.Contains(stdout, "KMS key "+arn+" is Enabled with key material "+mid1+": KMS takes only that material again, or new material as a rotation (keys[].rotate: true with this params_file)\n") {
		t.Fatalf("params fetch of an Enabled key: exit %d\n%s%s", code, stdout, stderr)
	}
	pin2 := strings.TrimSuffix(strings.Fields(strings.SplitN(stdout, "wrapping public key sha256 ", 2)[1])[0], ":")

	// Without rotate: true, new material for a key that has some is
	// refused offline, before anything happens.
	_, stderr, code = a.offlineRun(work, "rot-bad", "out-bad", offlineKey{"rot-bad", p2, pin2, ", valid_for: 90d"})
	want := "keyceremony: error: keys[0].params_file " + p2 + " is for " + arn + ", which had key material " + mid1 + " when its parameters were fetched: KMS refuses other material for it; add rotate: true to rotate it to new material, or fetch parameters for a new key"
	if code != 1 || errorLines(stderr) != want {
		t.Errorf("new material without rotate: exit %d\n%s\nwant %s", code, errorLines(stderr), want)
	}
	if _, err := os.Stat(filepath.Join(work, "out-bad")); err == nil {
		t.Error("a refused offline run left an output directory")
	}

	stdout, stderr, code = a.offlineRun(work, "rot-v2", "out-v2", offlineKey{"rot-v2", p2, pin2, ", rotate: true, valid_for: 90d"})
	if code != 0 {
		t.Fatalf("offline rotation exited %d:\n%s\n%s", code, stdout, stderr)
	}
	out2 := filepath.Join(work, "out-v2")
	tr2 := filepath.Join(out2, "transcript.jsonl")
	if ev := eventWith(t, tr2, "kms-key", "label", "rot-v2"); ev["rotation"] != true || ev["kms_key_arn"] != arn {
		t.Errorf("the offline transcript's kms-key event %v does not record the rotation", ev)
	}
	if strings.Contains(string(mustRead(t, tr2)), `"step":"import"`) || strings.Contains(string(mustRead(t, tr2)), `"step":"rotate"`) {
		t.Error("an offline ceremony recorded an import or a rotation")
	}
	cmds := uploads(stdout)
	if len(cmds) != 1 {
		t.Fatalf("upload commands:\n%s", stdout)
	}
	if ms, _ := a.kms.Materials(ctx, arn); len(ms) != 1 {
		t.Fatalf("the offline run changed KMS: %+v", ms)
	}

	// The upload, exactly as printed.
	stdout, stderr, code = a.run(nil, cmds[0]...)
	if code != 0 {
		t.Fatalf("upload of the rotation: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("upload:\n%s", stdout)
	ms, err := a.kms.Materials(ctx, arn)
	if err != nil || len(ms) != 2 || ms[0].ID != mid1 || ms[0].State != "NON_CURRENT" || ms[1].State != "CURRENT" || ms[1].RotationDate == nil {
		t.Fatalf("materials after the upload: %+v %v", ms, err)
	}
	mid2 := ms[1].ID
	kcv2 := eventWith(t, tr2, "wrap", "label", "rot-v2")["key_check_value"].(string)
	for _, line := range []string{
		"imported into " + arn + " (kcv " + kcv2 + "): key material " + mid2 + ", NEW_KEY_MATERIAL, PENDING_ROTATION\n",
		"rotated " + arn + " (RotateKeyOnDemand): key material " + mid2 + " CURRENT, " + mid1 + " NON_CURRENT\n",
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("upload does not say %q:\n%s", line, stdout)
		}
	}
	if !strings.HasPrefix(ms[1].Description, "keyceremony kcv "+kcv2+" transcript sha256:") {
		t.Errorf("new material's description %q", ms[1].Description)
	}
	if pt, err := a.kms.Decrypt(ctx, arn, old); err != nil || string(pt) != "under v1" {
		t.Fatalf("an old ciphertext does not decrypt after the rotation: %v", err)
	}
	newer, err := a.kms.Encrypt(ctx, arn, []byte("under v2"))
	if err != nil {
		t.Fatal(err)
	}
	// kmslocal's blob names its material (bytes 18-50).
	if got := hex.EncodeToString(newer[18:50]); got != mid2 {
		t.Errorf("a new ciphertext is under material %s, not the new %s", got, mid2)
	}

	// The same upload again changes nothing and says so.
	stdout, stderr, code = a.run(nil, cmds[0]...)
	if code != 0 || !strings.Contains(stdout, "nothing to do: KMS key "+arn+" already has this material (kcv "+kcv2+") as its current key material "+mid2+", rotated by an earlier upload; nothing was imported or rotated\n") {
		t.Fatalf("upload again: exit %d\n%s%s", code, stdout, stderr)
	}
	if again, _ := a.kms.Materials(ctx, arn); len(again) != 2 || again[1].ID != mid2 || !again[1].RotationDate.Equal(*ms[1].RotationDate) {
		t.Errorf("the second upload changed KMS: %+v", again)
	}

	// status, given both transcripts, matches both versions.
	tr1 := filepath.Join(work, "out-rot-v1", "transcript.jsonl")
	stdout, _, code = a.run(nil, "status", "--transcript", tr1, "--transcript", tr2, "--warn", "7d", "--json")
	var rep statusJSON
	t.Logf("status:\n%s", stdout)
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || len(rep.Keys) == 0 {
		t.Fatalf("status: exit %d: %s", code, stdout)
	}
	for _, k := range rep.Keys {
		if k.ARN != arn || k.Record != "match" || k.Rotations != 1 || k.CurrentMaterialID != mid2 || k.State != "Enabled" {
			t.Errorf("status of the rotated key: %+v (exit %d)", k, code)
		}
	}
	_ = awskms.ImportNew
}
