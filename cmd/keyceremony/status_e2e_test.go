package main_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/wrap"
)

// statusJSON is the part of status --json the tests read.
type statusJSON struct {
	Keys []struct {
		Key               string `json:"key"`
		Label             string `json:"label"`
		ARN               string `json:"arn"`
		State             string `json:"state"`
		Origin            string `json:"origin"`
		ExpirationModel   string `json:"expiration_model"`
		DaysLeft          *int   `json:"days_left"`
		CurrentMaterialID string `json:"current_key_material_id"`
		Rotations         int    `json:"rotations"`
		Record            string `json:"record"`
		Warnings          []string
		Error             string `json:"error"`
	} `json:"keys"`
}

// ceremonyRun runs the standard two-key ceremony named name and returns its
// output directory.
func ceremonyRun(t *testing.T, e *e2e, name string) string {
	t.Helper()
	cfg := e.config(name+".yaml", fmt.Sprintf(ceremonyYAML, name))
	if out, errOut, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg); code != 0 {
		t.Fatalf("run exited %d\n%s\n%s", code, out, errOut)
	}
	return filepath.Join(e.dir, name)
}

// rotateBehindItsBack imports new material into arn and rotates to it, as
// someone outside any ceremony could.
func rotateBehindItsBack(t *testing.T, kc *awskms.Client, arn string) {
	t.Helper()
	ctx := context.Background()
	p, err := kc.GetParameters(ctx, arn, wrap.RSAESOAEPSHA256, "RSA_2048")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := p.RSAPublicKey()
	m := make([]byte, 32)
	rand.Read(m)
	enc, err := wrap.EncryptOnHost(rand.Reader, p.Algorithm, pub, m)
	if err != nil {
		t.Fatal(err)
	}
	b := &wrap.Bundle{KeyARN: arn, ImportToken: p.ImportToken, EncryptedKeyMaterial: enc}
	if _, err := kc.ImportMaterial(ctx, awskms.ImportRequest{Bundle: b, Type: awskms.ImportNew}); err != nil {
		t.Fatal(err)
	}
	if err := kc.RotateOnDemand(ctx, arn); err != nil {
		t.Fatal(err)
	}
}

// TestStatus checks keyceremony status through the real binary against
// kmslocal: the table, --json, --prom, and each exit code.
func TestStatus(t *testing.T) {
	e := newE2E(t)
	out := ceremonyRun(t, e, "st")
	tr, pub := filepath.Join(out, "transcript.jsonl"), filepath.Join(out, "signing-key.pem")
	kc, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := e.run(nil, "status", "--transcript", tr, "--pubkey", pub, "--warn", "7d")
	if code != 0 {
		t.Fatalf("status exited %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"payments-st", "archive-st", "Enabled", "EXTERNAL", "never", "match"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, stdout)
		}
	}

	stdout, _, code = e.run(nil, "status", "--transcript", tr, "--pubkey", pub, "--json", "--warn", "7d")
	var rep statusJSON
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 || len(rep.Keys) != 2 {
		t.Fatalf("status --json exited %d: %v\n%s", code, err, stdout)
	}
	arns := map[string]string{}
	for _, k := range rep.Keys {
		arns[k.Label] = k.ARN
		if k.Record != "match" || k.State != "Enabled" || len(k.CurrentMaterialID) != 64 || k.Rotations != 0 {
			t.Errorf("%s: %+v", k.Label, k)
		}
		imp := eventWith(t, tr, "import", "label", k.Label)
		if imp["key_material_id"] != k.CurrentMaterialID {
			t.Errorf("%s: transcript records material %v, KMS says %s", k.Label, imp["key_material_id"], k.CurrentMaterialID)
		}
		if d, _ := imp["key_material_description"].(string); !strings.HasPrefix(d, "keyceremony kcv ") || !strings.Contains(d, " transcript sha256:") {
			t.Errorf("%s: KeyMaterialDescription %q", k.Label, d)
		}
	}
	for _, k := range rep.Keys {
		if d := k.DaysLeft; k.Label == "payments-st" && (d == nil || *d != 29) {
			t.Errorf("payments-st days left %v, want 29 (30d material)", d)
		}
	}

	// Expiry within the warning window (30d by default): exit 4, named.
	stdout, stderr, code = e.run(nil, "status", "--transcript", tr)
	if code != 4 || !strings.Contains(stderr, "keyceremony: warning: a key needs attention") ||
		!strings.Contains(stdout, "in 29 days: renew it with keyceremony renew") {
		t.Fatalf("default --warn 30d exited %d: %s\n%s", code, stdout, stderr)
	}

	// Prometheus textfile.
	prom := filepath.Join(e.dir, "keys.prom")
	if _, stderr, code = e.run(nil, "status", "--transcript", tr, "--prom", prom, "--warn", "7d"); code != 0 {
		t.Fatalf("--prom exited %d: %s", code, stderr)
	}
	pb, _ := os.ReadFile(prom)
	for _, want := range []string{
		"# TYPE keyceremony_kms_key_material_expiry_timestamp_seconds gauge",
		fmt.Sprintf(`keyceremony_kms_key_enabled{arn="%s",label="payments-st"} 1`, arns["payments-st"]),
		fmt.Sprintf(`keyceremony_kms_key_material_matches_record{arn="%s",label="archive-st"} 1`, arns["archive-st"]),
		"keyceremony_status_timestamp_seconds ",
	} {
		if !strings.Contains(string(pb), want) {
			t.Errorf("prom file lacks %q:\n%s", want, pb)
		}
	}

	// A key ARN alone: no record to compare.
	stdout, _, code = e.run(nil, "status", arns["archive-st"], "--json")
	if json.Unmarshal([]byte(stdout), &rep) != nil || code != 0 || rep.Keys[0].Record != "unknown" {
		t.Fatalf("status ARN exited %d:\n%s", code, stdout)
	}

	// Material deleted: PendingImport is a warning (exit 4).
	if err := kc.DeleteMaterial(context.Background(), arns["payments-st"], ""); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = e.run(nil, "status", "--transcript", tr, "--warn", "0")
	if code != 4 || !strings.Contains(stdout, "key is PendingImport") {
		t.Fatalf("PendingImport: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// Material rotated outside any ceremony: a mismatch (exit 3).
	rotateBehindItsBack(t, kc, arns["archive-st"])
	stdout, stderr, code = e.run(nil, "status", "--transcript", tr, "--warn", "0")
	if code != 3 || !strings.Contains(stdout, "is not recorded in the transcripts") || !strings.Contains(stderr, "keyceremony: mismatch: ") {
		t.Fatalf("rotated behind its back: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// Errors: an unknown key (1), a tampered transcript (3), usage (2).
	_, stderr, code = e.run(nil, "status", "arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-4000-8000-000000000000")
	if code != 1 || !strings.Contains(stderr, "keyceremony: error: a key could not be read") {
		t.Errorf("unknown key: exit %d: %s", code, stderr)
	}
	data, _ := os.ReadFile(tr)
	bad := filepath.Join(e.dir, "tampered.jsonl")
	os.WriteFile(bad, []byte(strings.Replace(string(data), "payments-st", "paymentz-st", 1)), 0o600)
	_, stderr, code = e.run(nil, "status", "--transcript", bad)
	if code != 3 || !strings.HasPrefix(stderr, "keyceremony: error: transcript "+bad+": ") {
		t.Errorf("tampered transcript: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"status"}, {"status", "--transcript", tr, "--warn", "soon"}, {"status", "--transcript", tr, "--prom", "x.txt"}} {
		if _, stderr, code := e.run(nil, args...); code != 2 || strings.Count(stderr, "\n") > 2 {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
}

// eventWith returns the data of the first event of step whose field is
// value.
func eventWith(t *testing.T, path, step, field, value string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Step string         `json:"step"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Step == step && ev.Data[field] == value {
			return ev.Data
		}
	}
	t.Fatalf("%s has no %s event with %s=%s", path, step, field, value)
	return nil
}
