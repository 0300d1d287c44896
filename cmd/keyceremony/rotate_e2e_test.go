package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
)

// TestRotationCeremony rotates a key's imported material with a ceremony
// (keys[].rotate: true), then re-imports the older version after it was
// deleted: through the real binary against kmslocal, the old ciphertext
// decrypting after each step.
func TestRotationCeremony(t *testing.T) {
	e := newE2E(t)
	out1 := ceremonyRun(t, e, "ro")
	tr1 := filepath.Join(out1, "transcript.jsonl")
	imp1 := eventWith(t, tr1, "import", "label", "payments-ro")
	arn, mid1 := imp1["kms_key_arn"].(string), imp1["key_material_id"].(string)
	ctx := context.Background()
	kc, _ := awskms.New(ctx, awskms.Options{})
	old, err := kc.Encrypt(ctx, arn, []byte("under v1"))
	if err != nil {
		t.Fatal(err)
	}
	decrypts := func(c *awskms.Client, ct []byte, want, when string) {
		t.Helper()
		if pt, err := c.Decrypt(ctx, arn, ct); err != nil || string(pt) != want {
			t.Fatalf("%s: ciphertext does not decrypt: %v", when, err)
		}
	}

	id, _ := age.GenerateX25519Identity()
	cfg := e.config("ro2.yaml", fmt.Sprintf(`
ceremony: {id: ro2, operator: tester, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
  - {label: payments-ro-v2, kms_key_id: %s, rotate: true, valid_for: 60d}
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - {name: alice, recipient: %s}
`, filepath.Join(e.dir, "ro2"), arn, id.Recipient()))
	if stdout, stderr, code := e.run(pin, "run", "--config", cfg); code != 0 {
		t.Fatalf("rotation ceremony exited %d\n%s\n%s", code, stdout, stderr)
	}
	tr2 := filepath.Join(e.dir, "ro2", "transcript.jsonl")
	imp2 := eventWith(t, tr2, "import", "label", "payments-ro-v2")
	mid2 := imp2["key_material_id"].(string)
	if d, _ := imp2["key_material_description"].(string); !strings.Contains(d, "kcv "+imp2["key_check_value"].(string)) || !strings.Contains(d, "transcript sha256:") {
		t.Errorf("new material's description %q", d)
	}
	if rot := eventWith(t, tr2, "rotate", "label", "payments-ro-v2"); rot["key_material_id"] != mid2 || rot["previous_key_material_id"] != mid1 {
		t.Errorf("rotate event %v", rot)
	}
	if _, err := kc.Describe(ctx, arn); err != nil {
		t.Fatal(err)
	}
	ms, err := kc.Materials(ctx, arn)
	if err != nil || len(ms) != 2 || ms[0].ID != mid1 || ms[0].State != "NON_CURRENT" || ms[1].ID != mid2 || ms[1].State != "CURRENT" {
		t.Fatalf("materials after rotation: %+v, %v", ms, err)
	}
	decrypts(kc, old, "under v1", "after the rotation")
	newer, err := kc.Encrypt(ctx, arn, []byte("under v2"))
	if err != nil {
		t.Fatal(err)
	}
	stdout, _, code := e.run(nil, "status", "--transcript", tr1, "--transcript", tr2, "--warn", "7d", "--json", "--pubkey", filepath.Join(out1, "signing-key.pem"))
	var rep statusJSON
	if json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("status: %s", stdout)
	}
	for _, k := range rep.Keys {
		if k.ARN == arn && (k.Record != "match" || k.Rotations != 1 || k.CurrentMaterialID != mid2) {
			t.Errorf("status of the rotated key: %+v (exit %d)", k, code)
		}
	}

	// The older version lost (deleted): the key is unusable until the same
	// v1 material is imported again, which renew does from the token with
	// v1's KeyMaterialId.
	if err := kc.DeleteMaterial(ctx, arn, mid1); err != nil {
		t.Fatal(err)
	}
	if d, _ := kc.Describe(ctx, arn); d.State != "PendingImport" {
		t.Fatalf("state after deleting v1: %s", d.State)
	}
	stdout, stderr, code := e.run(pin, "renew", "--key", "payments-ro", "--kms-key", arn, "--token-label", "ceremony", "--out", filepath.Join(e.dir, "ro-renew"), "--does-not-expire")
	if code != 0 || !strings.Contains(stdout, "same key material "+mid1) {
		t.Fatalf("re-import of v1: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if ev := eventWith(t, filepath.Join(e.dir, "ro-renew", "transcript.jsonl"), "reimport", "kms_key_arn", arn); ev["key_material_id"] != mid1 {
		t.Errorf("reimport event %v", ev)
	}
	decrypts(kc, old, "under v1", "after re-importing v1")
	decrypts(kc, newer, "under v2", "after re-importing v1")
	if d, _ := kc.Describe(ctx, arn); d.State != "Enabled" || d.CurrentMaterialID != mid2 {
		t.Fatalf("after re-importing v1: %+v", d)
	}
}

// TestMultiRegionCeremony makes a multi-Region primary in a ceremony,
// replicates it into a second Region with keyceremony replicate (its own
// import parameters there), and decrypts in both Regions.
func TestMultiRegionCeremony(t *testing.T) {
	e := newE2E(t)
	id, _ := age.GenerateX25519Identity()
	cfg := e.config("mr.yaml", fmt.Sprintf(`
ceremony: {id: mr, operator: tester, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
  - {label: global-mr, create: true, multi_region: true, valid_for: 90d}
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - {name: alice, recipient: %s}
`, filepath.Join(e.dir, "mr"), id.Recipient()))
	if stdout, stderr, code := e.run(pin, "run", "--config", cfg); code != 0 {
		t.Fatalf("run exited %d\n%s\n%s", code, stdout, stderr)
	}
	imp := eventWith(t, filepath.Join(e.dir, "mr", "transcript.jsonl"), "import", "label", "global-mr")
	arn, mid := imp["kms_key_arn"].(string), imp["key_material_id"].(string)
	if !strings.Contains(arn, ":eu-west-1:") || !strings.Contains(arn, ":key/mrk-") {
		t.Fatalf("primary ARN %s", arn)
	}
	ctx := context.Background()
	west, _ := awskms.New(ctx, awskms.Options{Region: "eu-west-1"})
	east, _ := awskms.New(ctx, awskms.Options{Region: "us-east-1"})
	ct, err := west.Encrypt(ctx, arn, []byte("from eu-west-1"))
	if err != nil {
		t.Fatal(err)
	}

	// A key that is not multi-Region is refused before anything happens.
	if _, stderr, code := e.run(pin, "replicate", "--key", "global-mr", "--kms-key", arn, "--token-label", "ceremony", "--out", filepath.Join(e.dir, "rep0"), "--does-not-expire"); code != 2 || !strings.Contains(stderr, "at least one --region") {
		t.Errorf("replicate without --region: exit %d: %s", code, stderr)
	}
	stdout, stderr, code := e.run(pin, "replicate", "--key", "global-mr", "--kms-key", arn, "--region", "us-east-1", "--token-label", "ceremony",
		"--out", filepath.Join(e.dir, "rep"), "--valid-for", "90d")
	replica := strings.Replace(arn, ":eu-west-1:", ":us-east-1:", 1)
	if code != 0 || !strings.Contains(stdout, "imported into replica "+replica+": same key material "+mid) {
		t.Fatalf("replicate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	rtr := filepath.Join(e.dir, "rep", "transcript.jsonl")
	if ev := eventWith(t, rtr, "replicate", "replica_region", "us-east-1"); ev["replica_arn"] != replica || ev["created"] != true {
		t.Errorf("replicate event %v", ev)
	}
	if ev := eventWith(t, rtr, "reimport", "kms_key_arn", replica); ev["key_material_id"] != mid {
		t.Errorf("replica import event %v", ev)
	}
	pt, err := east.Decrypt(ctx, replica, ct)
	if err != nil || !bytes.Equal(pt, []byte("from eu-west-1")) {
		t.Fatalf("decrypt in us-east-1: %v", err)
	}
	ct2, err := east.Encrypt(ctx, replica, []byte("from us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := west.Decrypt(ctx, arn, ct2); err != nil || string(pt) != "from us-east-1" {
		t.Fatalf("decrypt in eu-west-1 of a us-east-1 ciphertext: %v", err)
	}
	// status sees both Regions (each ARN in its own Region).
	stdout, _, code = e.run(nil, "status", "--transcript", filepath.Join(e.dir, "mr", "transcript.jsonl"), "--transcript", rtr, "--warn", "7d", "--json")
	var rep statusJSON
	if json.Unmarshal([]byte(stdout), &rep) != nil || code != 0 || len(rep.Keys) != 2 {
		t.Fatalf("status: exit %d\n%s", code, stdout)
	}
	for _, k := range rep.Keys {
		if k.State != "Enabled" || k.Record != "match" || k.CurrentMaterialID != mid {
			t.Errorf("status %+v", k)
		}
	}
}
