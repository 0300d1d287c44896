package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestRenew renews imported material through the real binary against
// kmslocal: renew from the token (default algorithm, then host wrap when
// asked), the same with a different key refused, after deletion, and the
// air-gap renewal (params fetch, wrap, upload). An old ciphertext decrypts
// after each, and status matches every material with the transcripts.
func TestRenew(t *testing.T) {
	e := newE2E(t)
	out := ceremonyRun(t, e, "rn")
	tr := filepath.Join(out, "transcript.jsonl")
	ctx := context.Background()
	kc, err := awskms.New(ctx, awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	arn := eventWith(t, tr, "import", "label", "payments-rn")["kms_key_arn"].(string)
	mid := eventWith(t, tr, "import", "label", "payments-rn")["key_material_id"].(string)
	secret := []byte("old ciphertext")
	ct, err := kc.Encrypt(ctx, arn, secret)
	if err != nil {
		t.Fatal(err)
	}
	decrypts := func(when string) {
		t.Helper()
		if pt, err := kc.Decrypt(ctx, arn, ct); err != nil || !bytes.Equal(pt, secret) {
			t.Fatalf("%s: the old ciphertext does not decrypt: %v", when, err)
		}
	}
	renew := func(dir string, extra ...string) (string, string, int) {
		args := append([]string{"renew", "--key", "payments-rn", "--kms-key", arn, "--token-label", "ceremony", "--out", filepath.Join(e.dir, dir)}, extra...)
		return e.run(pin, args...)
	}

	// Refused before anything: an algorithm SoftHSM cannot do in the HSM.
	_, stderr, code := renew("refused", "--valid-for", "200d", "--wrapping-algorithm", "RSAES_OAEP_SHA_256", "--wrapping-key-spec", "RSA_2048")
	if code != 1 || !strings.Contains(stderr, "cannot wrap with RSAES_OAEP_SHA_256 inside the HSM") || !strings.Contains(stderr, "--allow-host-wrap") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("renew with RSAES_OAEP_SHA_256: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "refused")); !os.IsNotExist(err) {
		t.Fatal("a refused renewal left its output directory")
	}

	// Renewal from the token with the defaults (the algorithm chosen by
	// probing the token).
	before := time.Now()
	stdout, stderr, code := renew("renew1", "--valid-for", "200d")
	if code != 0 || !strings.Contains(stdout, "renewed "+arn+": same key material "+mid) {
		t.Fatalf("renew: exit %d\n%s\n%s", code, stdout, stderr)
	}
	d, err := kc.Describe(ctx, arn)
	if err != nil || d.ValidTo == nil || d.ValidTo.Sub(before.Add(200*24*time.Hour)).Abs() > time.Minute || d.CurrentMaterialID != mid {
		t.Fatalf("after renew: %+v, %v", d, err)
	}
	decrypts("after renew")
	rtr := filepath.Join(e.dir, "renew1", "transcript.jsonl")
	if vout, verr, code := e.run(nil, "verify", "--pubkey", filepath.Join(e.dir, "renew1", "signing-key.pem"), rtr); code != 0 {
		t.Fatalf("renewal transcript does not verify: %s %s", vout, verr)
	}
	ev := eventWith(t, rtr, "reimport", "kms_key_arn", arn)
	if ev["key_material_id"] != mid || ev["key_material_id_before"] != mid || ev["in_hsm"] != true || ev["wrapping_algorithm"] != "RSA_AES_KEY_WRAP_SHA_1" {
		t.Errorf("reimport event: %v", ev)
	}
	stdout, _, code = e.run(nil, "status", "--transcript", tr, "--transcript", rtr, "--json", arn)
	var rep statusJSON
	if json.Unmarshal([]byte(stdout), &rep) != nil || code != 0 || len(rep.Keys) != 2 {
		t.Fatalf("status after renew: exit %d\n%s", code, stdout)
	}
	for _, k := range rep.Keys {
		if k.ARN == arn && (k.Record != "match" || k.DaysLeft == nil || *k.DaysLeft != 199) {
			t.Fatalf("status after renew: %+v", k)
		}
	}

	// A different token key is not the same material: KMS refuses, nothing
	// changes in KMS.
	tok, err := hsm.Open(hsm.Config{TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 4)
	rand.Read(id)
	if _, err := tok.GenerateAESKey("imposter-rn", id); err != nil {
		t.Fatal(err)
	}
	tok.Close()
	_, stderr, code = e.run(pin, "renew", "--key", "imposter-rn", "--kms-key", arn, "--token-label", "ceremony", "--out", filepath.Join(e.dir, "imposter"), "--valid-for", "300d")
	want := fmt.Sprintf("keyceremony: error: failed to import key material into %[1]s: IncorrectKeyMaterialException: The key material does not match the key material %[2]s of %[1]s; only the same material can be imported again. (this key already had other material: KMS accepts only the same material again; check you recovered the right escrow)", arn, mid)
	if code != 1 || errorLine(stderr) != want {
		t.Fatalf("renew with another key: exit %d\n%s\nwant %s", code, stderr, want)
	}
	if d2, _ := kc.Describe(ctx, arn); d2.State != "Enabled" || !d2.ValidTo.Equal(*d.ValidTo) {
		t.Fatalf("a refused renewal changed the key: %+v", d2)
	}
	decrypts("after the refused renewal")

	// After the material was deleted (or expired): renew brings it back,
	// here with host wrapping allowed for an algorithm the token lacks.
	if err := kc.DeleteMaterial(ctx, arn, ""); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = renew("renew2", "--does-not-expire", "--wrapping-algorithm", "RSAES_OAEP_SHA_256", "--allow-host-wrap", "--wrapping-key-spec", "RSA_3072")
	if code != 0 || !strings.Contains(stdout, "same key material "+mid+", kcv ") || !strings.Contains(stdout, "does not expire") {
		t.Fatalf("renew after deletion: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if ev := eventWith(t, filepath.Join(e.dir, "renew2", "transcript.jsonl"), "reimport", "kms_key_arn", arn); ev["in_hsm"] != false || ev["host_reason"] == "" {
		t.Errorf("host-wrapped reimport event: %v", ev)
	}
	decrypts("after renew following deletion")

	// Across the air gap: params fetch, wrap, upload as printed (without
	// shortening the expiry); upload checks the KeyMaterialId is unchanged.
	params := filepath.Join(e.dir, "params.json")
	got, stderr, code := e.run(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", params)
	if code != 0 {
		t.Fatal(stderr)
	}
	got, stderr, code = e.run(pin, printed(t, got, "wrap", map[string]string{"LABEL": "payments-rn", "TOKEN": "ceremony", "DIR": filepath.Join(e.dir, "rewrap")})...)
	if code != 0 {
		t.Fatal(stderr)
	}
	var args []string
	up := printed(t, got, "upload", nil)
	for i := 0; i < len(up); i++ {
		switch {
		case up[i] == "--valid-for" || up[i] == "--valid-to":
			i++ // the printed expiry, replaced below
		case up[i] != "--does-not-expire":
			args = append(args, up[i])
		}
	}
	got, stderr, code = e.run(nil, append(args, "--does-not-expire")...)
	if code != 0 || !strings.Contains(got, "same key material as before: KeyMaterialId "+mid+" unchanged") {
		t.Fatalf("air-gap renewal: exit %d\n%s\n%s", code, got, stderr)
	}
	decrypts("after the air-gap renewal")
}

// TestRecoverReimportChecksFirst: recover --reimport checks the token's
// wrap capability and the KMS endpoint's parameters before it writes
// anything to the token, and its defaults work on SoftHSM; KMS must take
// the same material (KeyMaterialId unchanged) and the old ciphertext
// decrypts again.
func TestRecoverReimportChecksFirst(t *testing.T) {
	e := newE2E(t)
	id, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(e.dir, "alice.key")
	os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600)
	cfg := e.config("rr.yaml", fmt.Sprintf(`
ceremony: {id: rr, operator: tester, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
  - {label: payments-rr, create: true, valid_for: 30d}
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - {name: alice, recipient: %s}
`, filepath.Join(e.dir, "rr"), id.Recipient()))
	if out, errOut, code := e.run(pin, "run", "--config", cfg); code != 0 {
		t.Fatalf("run: %d\n%s\n%s", code, out, errOut)
	}
	out := filepath.Join(e.dir, "rr")
	tr := filepath.Join(out, "transcript.jsonl")
	imp := eventWith(t, tr, "import", "label", "payments-rr")
	arn, mid := imp["kms_key_arn"].(string), imp["key_material_id"].(string)
	ctx := context.Background()
	kc, _ := awskms.New(ctx, awskms.Options{})
	ct, err := kc.Encrypt(ctx, arn, []byte("before the loss"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.DeleteMaterial(ctx, arn, ""); err != nil {
		t.Fatal(err)
	}
	if err := hsmtest.InitToken(os.Getenv("SOFTHSM2_CONF"), "rr2"); err != nil {
		t.Fatal(err)
	}
	recoverArgs := func(dir string, extra ...string) []string {
		return append([]string{"recover", "--escrow", filepath.Join(out, "escrow.json"), "--share", filepath.Join(out, "share-1-alice.age"),
			"--identity", idFile, "--token-label", "rr2", "--transcript", tr, "--fingerprint", sealFingerprint(t, tr),
			"--out", filepath.Join(e.dir, dir), "--reimport", "--valid-for", "60d"}, extra...)
	}
	untouched := func(dir string) {
		t.Helper()
		tok, err := hsm.Open(hsm.Config{TokenLabel: "rr2", PIN: []byte(hsmtest.PIN)})
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		if _, err := tok.FindAESKey("payments-rr", nil); !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Fatalf("a refused recover --reimport wrote the key to the token: %v", err)
		}
		if _, err := os.Stat(filepath.Join(e.dir, dir)); !os.IsNotExist(err) {
			t.Fatalf("a refused recover --reimport left %s", dir)
		}
	}

	_, stderr, code := e.run(pin, recoverArgs("r1", "--wrapping-algorithm", "RSAES_OAEP_SHA_256")...)
	if code != 1 || !strings.Contains(stderr, "cannot wrap with RSAES_OAEP_SHA_256 inside the HSM") || !strings.Contains(stderr, "--allow-host-wrap") {
		t.Fatalf("recover --reimport with an algorithm the token lacks: exit %d: %s", code, stderr)
	}
	untouched("r1")
	_, stderr, code = e.run(append(pin, "AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1"), recoverArgs("r2")...)
	if code != 1 || !strings.Contains(stderr, "KMS is not reachable") {
		t.Fatalf("recover --reimport with KMS unreachable: exit %d: %s", code, stderr)
	}
	untouched("r2")

	stdout, stderr, code := e.run(pin, recoverArgs("r3")...)
	if code != 0 || !strings.Contains(stdout, "imported again into "+arn) {
		t.Fatalf("recover --reimport with the defaults: exit %d\n%s\n%s", code, stdout, stderr)
	}
	ev := eventWith(t, filepath.Join(e.dir, "r3", "transcript.jsonl"), "reimport", "kms_key_arn", arn)
	if ev["key_material_id"] != mid || ev["key_material_id_before"] != mid || ev["in_hsm"] != true {
		t.Errorf("reimport event: %v", ev)
	}
	if pt, err := kc.Decrypt(ctx, arn, ct); err != nil || string(pt) != "before the loss" {
		t.Fatalf("old ciphertext after recover --reimport: %v", err)
	}
}

// sealFingerprint returns the signer fingerprint on a transcript's seal line,
// as the ceremony printed it for the witnesses to write down.
func sealFingerprint(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var seal struct {
		Fingerprint string `json:"fingerprint"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &seal); err != nil || seal.Fingerprint == "" {
		t.Fatalf("no seal fingerprint in %s: %v", path, err)
	}
	return seal.Fingerprint
}
