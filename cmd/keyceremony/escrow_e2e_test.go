package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
)

// escrowRig is the shared end-to-end harness (newE2E: SoftHSM token
// "ceremony", kmslocal) plus a second token "recovery" and helpers.
type escrowRig struct {
	*e2e
	t *testing.T
}

func newEscrowRig(t *testing.T) *escrowRig {
	t.Helper()
	e := newE2E(t)
	if err := hsmtest.InitToken(os.Getenv("SOFTHSM2_CONF"), "recovery"); err != nil {
		t.Fatal(err)
	}
	e.env = append(e.env, "KEYCEREMONY_PIN="+hsmtest.PIN)
	return &escrowRig{e2e: e, t: t}
}

func (r *escrowRig) mustRun(env []string, args ...string) string {
	r.t.Helper()
	out, errs, code := r.run(env, args...)
	if code != 0 {
		r.t.Fatalf("keyceremony %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (r *escrowRig) write(name, data string) string {
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// wantFail runs a command that must fail with code and a one-line error
// containing every want.
func (r *escrowRig) wantFail(code int, wants []string, env []string, args ...string) {
	r.t.Helper()
	_, errs, got := r.run(env, args...)
	if got != code {
		r.t.Errorf("keyceremony %s: exit %d, want %d\n%s", args[0], got, code, errs)
	}
	var first string
	for _, l := range strings.Split(errs, "\n") {
		if strings.HasPrefix(l, "keyceremony: error: ") {
			first = l
			break
		}
	}
	if first == "" {
		r.t.Errorf("keyceremony %s: no error line in %q", args[0], errs)
	}
	for _, w := range wants {
		if !strings.Contains(first, w) {
			r.t.Errorf("keyceremony %s: error %q lacks %q", args[0], first, w)
		}
	}
}

// TestEscrowEndToEnd: a ceremony imports a key with a 3-of-5 escrow; custodians
// check their shares alone; a drill passes without KMS; something is
// encrypted through KMS; the material is deleted in KMS and the token key
// destroyed; three custodians recover into a new token, the material is
// imported again with params fetch, wrap and upload, and the old ciphertext
// decrypts; then, lost once more, three others recover into a third token
// with recover --reimport, and it decrypts again.
func TestEscrowEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	r := newEscrowRig(t)
	ctx := context.Background()

	// Five custodians: three age X25519 keys, an SSH key, a passphrase.
	var recips []string
	idFiles := map[string]string{}
	for _, name := range []string{"alice", "dave", "erin"} {
		id, _ := age.GenerateX25519Identity()
		idFiles[name] = r.write(name+".key", id.String()+"\n")
		recips = append(recips, id.Recipient().String())
	}
	sshKey := filepath.Join(r.dir, "bob_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bob", "-f", sshKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	idFiles["bob"] = sshKey
	sshPub, _ := os.ReadFile(sshKey + ".pub")
	carolPass := r.write("carol.pass", "carol's long passphrase\n")

	out := filepath.Join(r.dir, "ceremony")
	cfgText := fmt.Sprintf(`
ceremony:
  id: escrow-e2e
  operator: tester
  out_dir: %s
token:
  label: ceremony
kms:
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_2048
keys:
  - label: payments
    id: "0a0b"
    create: true
    valid_for: 30d
escrow:
  threshold: 3
  armor: true
  custodians:
    - {name: alice, recipient: %s}
    - {name: bob, recipient: %q}
    - {name: carol, passphrase: true, passphrase_file: %s}
    - {name: dave, recipient: %s}
    - {name: erin, recipient: %s}
`, out, recips[0], strings.TrimSpace(string(sshPub)), carolPass, recips[1], recips[2])
	cfg := r.write("ceremony.yaml", cfgText)
	// Without an escrow section a ceremony refuses to start, changing nothing.
	noEscrow := r.write("no-escrow.yaml", cfgText[:strings.Index(cfgText, "escrow:")])
	r.wantFail(1, []string{"escrow must be set", "add an escrow section"}, nil, "run", "--config", noEscrow)
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a ceremony without escrow wrote its output directory")
	}
	_, stderr, code := r.run(nil, "run", "--config", cfg)
	if code != 0 {
		t.Fatalf("ceremony failed: %s", stderr)
	}
	share := func(i int, name string) string { return filepath.Join(out, fmt.Sprintf("share-%d-%s.age", i, name)) }
	blob := filepath.Join(out, "escrow.json")
	tr := filepath.Join(out, "transcript.jsonl")
	pub := filepath.Join(out, "signing-key.pem")

	// The escrow was made before the upload and every quorum was checked.
	trData, _ := os.ReadFile(tr)
	res, err := transcripts.Verify(bytes.NewReader(trData), nil)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	var escEv transcripts.Event
	for _, e := range res.Events {
		if e.Step == "checkpoint" {
			continue
		}
		steps = append(steps, e.Step)
		if e.Step == "escrow" {
			escEv = e
		}
	}
	if s := strings.Join(steps, " "); !strings.Contains(s, "fetch-params generate-key escrow wrap import") {
		t.Errorf("escrow is not between generate-key and the upload: %s", s)
	}
	if escEv.Data["subsets_checked"] != float64(10) || escEv.Data["quorum_check"] != "ok" || escEv.Data["threshold"] != float64(3) {
		t.Errorf("escrow event: %v", escEv.Data)
	}
	blobData, _ := os.ReadFile(blob)
	// No share value in the transcript or the blob; shares are armored.
	for i, name := range []string{"alice", "bob", "carol", "dave", "erin"} {
		data, _ := os.ReadFile(share(i+1, name))
		if !bytes.HasPrefix(data, []byte("-----BEGIN AGE ENCRYPTED FILE-----")) {
			t.Errorf("share of %s is not armored", name)
		}
		if name == "carol" {
			continue
		}
		key, _ := os.ReadFile(idFiles[name])
		ids, err := escrow.ParseIdentities(key)
		if err != nil {
			t.Fatal(err)
		}
		sh, err := escrow.OpenShare(data, name, ids...)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(trData, []byte(sh.Value)) || bytes.Contains(blobData, []byte(sh.Value)) {
			t.Errorf("the share value of %s is in the transcript or blob", name)
		}
	}

	t.Run("verify-share", func(t *testing.T) {
		for _, c := range []struct{ name, flag, file string }{
			{"alice", "--identity", idFiles["alice"]}, {"bob", "--identity", idFiles["bob"]}, {"carol", "--passphrase-file", carolPass},
		} {
			i := map[string]int{"alice": 1, "bob": 2, "carol": 3}[c.name]
			got := r.mustRun(nil, "escrow", "verify-share", "--share", share(i, c.name), c.flag, c.file, "--transcript", tr, "--pubkey", pub)
			if !strings.Contains(got, fmt.Sprintf("OK: share %d of 5 of custodian %q for ceremony escrow-e2e", i, c.name)) {
				t.Errorf("verify-share %s: %s", c.name, got)
			}
		}
		r.mustRun(nil, "escrow", "verify-share", "--share", share(4, "dave"), "--identity", idFiles["dave"], "--escrow", blob)
		r.wantFail(1, []string{share(1, "alice"), "does not open this share"}, nil,
			"escrow", "verify-share", "--share", share(1, "alice"), "--identity", idFiles["dave"], "--transcript", tr)
		r.wantFail(1, []string{share(3, "carol"), "does not open"}, nil,
			"escrow", "verify-share", "--share", share(3, "carol"), "--passphrase-file", r.write("wrong.pass", "not carol's passphrase"), "--transcript", tr)
		// A share of another ceremony, and a forged one, sealed to alice.
		other := forgeShare(t, "other-ceremony", nil, recips[0])
		r.wantFail(3, []string{"belongs to ceremony \"other-ceremony\", not \"escrow-e2e\""}, nil,
			"escrow", "verify-share", "--share", r.write("other.age", string(other)), "--identity", idFiles["alice"], "--transcript", tr)
		b, _ := escrow.ParseBlob(blobData)
		forged := forgeShare(t, "escrow-e2e", b.Commitments, recips[0])
		r.wantFail(3, []string{"forged.age", "fails the Feldman check"}, nil,
			"escrow", "verify-share", "--share", r.write("forged.age", string(forged)), "--identity", idFiles["alice"], "--escrow", blob)
		r.wantFail(2, []string{"one of --transcript"}, nil, "escrow", "verify-share", "--share", share(1, "alice"))
	})

	t.Run("drill", func(t *testing.T) {
		// AWS points at a closed port: a drill must not need KMS.
		env := []string{"AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1", "KEYCEREMONY_PIN=9999"}
		drillOut := filepath.Join(r.dir, "drill")
		got := r.mustRun(env, "recover", "--drill", "--escrow", blob, "--share", share(1, "alice"), "--share", share(2, "bob"), "--share", share(3, "carol"),
			"--identity", idFiles["alice"], "--identity", idFiles["bob"], "--passphrase-file", carolPass, "--transcript", tr, "--pubkey", pub, "--out", drillOut)
		if !strings.Contains(got, "drill PASSED") || !strings.Contains(got, "key payments (id 0a0b)") {
			t.Errorf("drill: %s", got)
		}
		d, _ := os.ReadFile(filepath.Join(drillOut, "transcript.jsonl"))
		dres, err := transcripts.Verify(bytes.NewReader(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		var pass bool
		for _, e := range dres.Events {
			if e.Step == "shares" {
				tok, _ := e.Data["token"].(map[string]any)
				if tok["label"] != "keyceremony-drill" || tok["scratch"] != true {
					t.Errorf("the drill did not use a scratch token: %v", e.Data)
				}
			}
			if e.Step == "drill" && e.Data["result"] == "pass" {
				pass = true
			}
			if e.Step == "recovery" && e.Data["original_transcript_sha256"] != evidence.Hash(trData) {
				t.Errorf("drill transcript does not refer to the original by hash: %v", e.Data)
			}
		}
		if !pass {
			t.Error("drill transcript has no passing drill event")
		}
		// A changed escrow blob fails the drill before any unwrap: each share
		// names the blob it was made with.
		tb, _ := escrow.ParseBlob(blobData)
		tb.Keys[0].WrappedKey[5] ^= 1
		tampered, _ := tb.Marshal()
		r.wantFail(3, []string{"recovery drill FAILED", "custodian \"alice\"", "was made with escrow blob sha256", "not tampered.json"}, env,
			"recover", "--drill", "--escrow", r.write("tampered.json", string(tampered)), "--share", share(1, "alice"), "--share", share(2, "bob"), "--share", share(4, "dave"),
			"--identity", idFiles["alice"], "--identity", idFiles["bob"], "--identity", idFiles["dave"], "--out", filepath.Join(r.dir, "drill-tampered"))
		// With the original transcript, the changed blob is refused up front.
		r.wantFail(1, []string{"is not the escrow blob the transcript of ceremony escrow-e2e recorded"}, env,
			"recover", "--drill", "--escrow", filepath.Join(r.dir, "tampered.json"), "--share", share(1, "alice"), "--identity", idFiles["alice"],
			"--transcript", tr, "--out", filepath.Join(r.dir, "drill-tampered2"))
		// A failing drill (too few shares) is recorded as a failure.
		failOut := filepath.Join(r.dir, "drill-fail")
		r.wantFail(3, []string{"recovery drill FAILED", "too few shares", "needs 3 of 5"}, env,
			"recover", "--drill", "--escrow", blob, "--share", share(1, "alice"), "--share", share(2, "bob"), "--identity", idFiles["alice"], "--identity", idFiles["bob"], "--out", failOut)
		if d, _ := os.ReadFile(filepath.Join(failOut, "transcript.jsonl")); !bytes.Contains(d, []byte(`"result":"fail"`)) {
			t.Errorf("failed drill not recorded: %s", d)
		}
	})

	// Encrypt through KMS, then lose the material everywhere.
	kc, err := awskms.New(ctx, awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var arn string
	for _, e := range res.Events {
		if e.Step == "import" {
			arn, _ = e.Data["kms_key_arn"].(string)
		}
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	ct, err := kc.Encrypt(ctx, arn, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.DeleteImportedKeyMaterial(ctx, arn); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Decrypt(ctx, arn, ct); err == nil {
		t.Fatal("decrypt works after the material was deleted")
	}
	tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.FindAESKey("payments", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.DestroyKey(k); err != nil {
		t.Fatal(err)
	}
	_ = tok.Close()

	t.Run("bad recoveries", func(t *testing.T) {
		o := func(n string) string { return filepath.Join(r.dir, n) }
		ids := []string{"--identity", idFiles["alice"], "--identity", idFiles["dave"], "--identity", idFiles["erin"]}
		base := append([]string{"recover", "--escrow", blob, "--token-label", "recovery"}, ids...)
		r.wantFail(1, []string{"too few shares: 2 distinct valid share(s) given, this escrow needs 3 of 5"}, nil,
			append(base, "--share", share(1, "alice"), "--share", share(4, "dave"), "--out", o("few"))...)
		r.wantFail(3, []string{share(4, "dave"), "is a duplicate of share 4 of custodian \"dave\""}, nil,
			append(base, "--share", share(1, "alice"), "--share", share(4, "dave"), "--share", share(4, "dave"), "--out", o("dup"))...)
		b, _ := escrow.ParseBlob(blobData)
		forged := r.write("forged2.age", string(forgeShare(t, "escrow-e2e", b.Commitments, recips[2])))
		r.wantFail(3, []string{"forged2.age", "custodian \"erin\"", "fails the Feldman check"}, nil,
			append(base, "--share", share(1, "alice"), "--share", share(4, "dave"), "--share", forged, "--out", o("forged"))...)
		r.wantFail(1, []string{share(2, "bob"), "sealed to an age or SSH key", "--identity"}, nil,
			"recover", "--escrow", blob, "--token-label", "recovery", "--share", share(2, "bob"), "--out", o("noid"))
		r.wantFail(1, []string{share(3, "carol"), "does not open"}, nil,
			append(base, "--share", share(3, "carol"), "--passphrase-file", r.write("bad.pass", "wrong passphrase!!"), "--out", o("badpass"))...)
		r.wantFail(2, []string{"exactly one of --token-label"}, nil, "recover", "--escrow", blob, "--share", share(1, "alice"), "--out", o("x"))
		for _, d := range []string{"few", "dup", "forged", "noid", "badpass"} {
			if _, err := os.Stat(o(d)); err == nil {
				t.Errorf("a refused recovery left %s behind", d)
			}
		}
	})

	decrypts := func(when string) {
		t.Helper()
		pt, err := kc.Decrypt(ctx, arn, ct)
		if err != nil {
			t.Fatalf("%s: the old ciphertext does not decrypt: %v", when, err)
		}
		if !bytes.Equal(pt, secret) {
			t.Fatalf("%s: the old ciphertext decrypts to something else", when)
		}
	}

	// Three custodians (bob, carol, erin) recover into a new token; the
	// material goes back into KMS with the air-gap commands.
	recOut := filepath.Join(r.dir, "recovery")
	got := r.mustRun(nil, "recover", "--escrow", blob, "--share", share(2, "bob"), "--share", share(3, "carol"), "--share", share(5, "erin"),
		"--identity", idFiles["bob"], "--identity", idFiles["erin"], "--passphrase-file", carolPass,
		"--token-label", "recovery", "--transcript", tr, "--pubkey", pub, "--out", recOut)
	if !strings.Contains(got, "key payments (id 0a0b): recovered into the token, kcv") || !strings.Contains(got, "shares used: bob, carol, erin") {
		t.Errorf("recover: %s", got)
	}
	if got := r.mustRun(nil, "verify", "--pubkey", filepath.Join(recOut, "signing-key.pem"), filepath.Join(recOut, "transcript.jsonl")); !strings.Contains(got, "OK") {
		t.Errorf("recovery transcript: %s", got)
	}
	params := filepath.Join(r.dir, "params.json")
	wrapDir := filepath.Join(r.dir, "rewrap")
	// The commands params fetch and wrap print, run as printed.
	got = r.mustRun(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", params)
	got = r.mustRun(nil, printed(t, got, "wrap", map[string]string{"LABEL": "payments", "TOKEN": "recovery", "DIR": wrapDir})...)
	r.mustRun(nil, printed(t, got, "upload", nil)...)
	decrypts("after recover + params fetch + wrap + upload")

	// Lost again: alice, carol and dave recover into a third token and
	// re-import in one command.
	if err := kc.DeleteImportedKeyMaterial(ctx, arn); err != nil {
		t.Fatal(err)
	}
	if err := hsmtest.InitToken(os.Getenv("SOFTHSM2_CONF"), "recovery2"); err != nil {
		t.Fatal(err)
	}
	got = r.mustRun(nil, "recover", "--escrow", blob, "--share", share(1, "alice"), "--share", share(3, "carol"), "--share", share(4, "dave"),
		"--identity", idFiles["alice"], "--identity", idFiles["dave"], "--passphrase-file", carolPass,
		"--token-label", "recovery2", "--transcript", tr, "--pubkey", pub, "--out", filepath.Join(r.dir, "recovery2"),
		"--reimport", "--wrapping-algorithm", "RSAES_OAEP_SHA_1", "--wrapping-key-spec", "RSA_2048", "--valid-for", "30d")
	if !strings.Contains(got, "imported again into "+arn) {
		t.Errorf("recover --reimport: %s", got)
	}
	decrypts("after recover --reimport")
	// The recovered key is a token key with the original label and id; a
	// second recovery into the same token refuses to overwrite it.
	r.wantFail(1, []string{"already holds a key labelled \"payments\""}, nil,
		"recover", "--escrow", blob, "--share", share(2, "bob"), "--share", share(3, "carol"), "--share", share(5, "erin"),
		"--identity", idFiles["bob"], "--identity", idFiles["erin"], "--passphrase-file", carolPass, "--token-label", "recovery", "--out", filepath.Join(r.dir, "again"))
	if _, err := os.Stat(filepath.Join(r.dir, "again")); err == nil {
		t.Error("a refused recovery left its output directory behind")
	}
}

// forgeShare seals to recipient a well-formed share of ceremony id: with
// commitments nil, of a fresh escrow; else claiming commitments but with a
// value that is not on their polynomial.
func forgeShare(t *testing.T, id string, commitments []string, recipient string) []byte {
	t.Helper()
	s, err := escrow.Split(rand.Reader, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := s.Share(5, id, "erin", "")
	if err != nil {
		t.Fatal(err)
	}
	if commitments != nil {
		sh.Commitments = commitments
	}
	rc, err := escrow.ParseRecipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	data, err := escrow.SealShare(sh, rc, false)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
