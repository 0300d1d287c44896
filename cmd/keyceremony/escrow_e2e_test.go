package main_test

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/wrap"
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

// wantExact runs a command that must fail with code and exactly the error
// line want, on one line, changing nothing in dirs (which must not exist
// afterwards when they did not before).
func (r *escrowRig) wantExact(code int, want string, env []string, args ...string) {
	r.t.Helper()
	_, errs, got := r.run(env, args...)
	if got != code {
		r.t.Errorf("keyceremony %s: exit %d, want %d\n%s", args[0], got, code, errs)
	}
	var lines []string
	for _, l := range strings.Split(errs, "\n") {
		if strings.HasPrefix(l, "keyceremony: error: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || lines[0] != "keyceremony: error: "+want {
		r.t.Errorf("keyceremony %s:\n got %q\nwant %q", args[0], lines, "keyceremony: error: "+want)
	}
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

	// Five custodians: two age X25519 keys, a post-quantum age key (erin),
	// an SSH key encrypted with a passphrase (bob), a passphrase (carol).
	var recips []string
	idFiles := map[string]string{}
	for _, name := range []string{"alice", "dave"} {
		id, _ := age.GenerateX25519Identity()
		idFiles[name] = r.write(name+".key", id.String()+"\n")
		recips = append(recips, id.Recipient().String())
	}
	pq, _ := age.GenerateHybridIdentity()
	idFiles["erin"] = r.write("erin.key", pq.String()+"\n")
	recips = append(recips, pq.Recipient().String())
	sshKey := filepath.Join(r.dir, "bob_ed25519")
	const bobKeyPassphrase = "bob's ssh key passphrase"
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", bobKeyPassphrase, "-C", "bob", "-f", sshKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	bobKeyPass := r.write("bob-key.pass", bobKeyPassphrase+"\n")
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
	// Threshold 1 lets any one custodian recover alone: only when asked.
	single := r.write("single.yaml", strings.Replace(cfgText, "threshold: 3", "threshold: 1", 1))
	r.wantExact(1, single+": escrow.threshold 1 lets any one custodian recover every key alone: raise it, or set escrow.allow_single_custodian: true", nil, "run", "--config", single)
	// One key for two custodians (as keys: another comment is the same
	// key), and a weak passphrase, are refused before anything changes.
	sameKey := r.write("same-key.yaml", strings.Replace(cfgText, "{name: dave, recipient: "+recips[1]+"}",
		fmt.Sprintf("{name: dave, recipient: %q}", strings.Replace(strings.TrimSpace(string(sshPub)), " bob", " dave@laptop", 1)), 1))
	r.wantExact(1, sameKey+": escrow.custodians[3].recipient is the same key as custodian \"bob\"'s: each custodian holds their own key, or one person holds two shares", nil, "run", "--config", sameKey)
	weak := r.write("weak.yaml", strings.Replace(cfgText, carolPass, r.write("weak.pass", "carolcarol2026\n"), 1))
	r.wantExact(1, "step 1 (check the escrow custodians): escrow.custodians[2]: the passphrase of custodian \"carol\" is too easy to guess (about 31 bits, at least 50 needed: it repeats or runs characters, or is built on common words, the custodian's name or the ceremony id): choose another, such as five random words", nil, "run", "--config", weak)
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused ceremony wrote its output directory")
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
	for _, e := range res.Events {
		if e.Step != "checkpoint" {
			steps = append(steps, e.Step)
		}
	}
	if s := strings.Join(steps, " "); !strings.Contains(s, "fetch-params generate-key-intent generate-key escrow wrap import") {
		t.Errorf("escrow is not between generate-key and the upload: %s", s)
	}
	if e := res.Escrow(); e.SubsetsChecked != 10 || e.QuorumCheck != "ok" || e.Threshold != 3 {
		t.Errorf("escrow event: %+v", e)
	}
	blobData, _ := os.ReadFile(blob)
	// The pins the witnesses wrote down.
	fp, words := res.Seal.Fingerprint, res.Seal.Words
	pinned := []string{"--transcript", tr, "--fingerprint", fp}
	// Share files are for their custodians only.
	for i, name := range []string{"alice", "bob", "carol", "dave", "erin"} {
		if st, err := os.Stat(share(i+1, name)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("share file of %s: %v, mode %v, want 0600", name, err, st.Mode().Perm())
		}
	}
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
		ids, err := escrow.ParseIdentities(key, func(ssh.PublicKey) ([]byte, error) { return []byte(bobKeyPassphrase), nil })
		if err != nil {
			t.Fatal(err)
		}
		sh, err := escrow.OpenShare(data, name, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(trData, []byte(sh.Value)) || bytes.Contains(blobData, []byte(sh.Value)) {
			t.Errorf("the share value of %s is in the transcript or blob", name)
		}
	}

	// The evidence archive does not need the share files: they are handed
	// to the custodians. One that is there must be the one recorded.
	t.Run("archive without shares", func(t *testing.T) {
		archive := filepath.Join(r.dir, "archive")
		if err := os.MkdirAll(archive, 0o700); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(out)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "share-") || e.IsDir() {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(out, e.Name()))
			_ = os.WriteFile(filepath.Join(archive, e.Name()), b, 0o644)
		}
		got := r.mustRun(nil, "verify", "--pubkey", pub, "--files", archive, tr)
		if !strings.Contains(got, "; 5 share file(s) not here (held by their custodians)") {
			t.Errorf("verify --files without the shares: %s", got)
		}
		r.write("archive/share-2-bob.age", "not bob's share")
		r.wantFail(6, []string{"file share-2-bob.age is not the file the transcript names"}, nil, "verify", "--pubkey", pub, "--files", archive, tr)
	})

	t.Run("verify-share", func(t *testing.T) {
		vs := func(i int, name string, rest ...string) []string {
			return append([]string{"escrow", "verify-share", "--share", share(i, name)}, rest...)
		}
		got := r.mustRun(nil, vs(1, "alice", "--identity", idFiles["alice"], "--transcript", tr, "--fingerprint", fp)...)
		if !strings.HasPrefix(got, "OK: share 1 of 5 of custodian \"alice\" for ceremony escrow-e2e") || !strings.Contains(got, "pinned by: signer fingerprint "+fp) {
			t.Errorf("verify-share alice: %s", got)
		}
		// The seal words typed back, in any case and spacing.
		got = r.mustRun(nil, vs(2, "bob", "--identity", idFiles["bob"], "--passphrase-file", bobKeyPass, "--transcript", tr, "--seal-words", "  "+strings.ToUpper(words)+" ")...)
		if !strings.HasPrefix(got, "OK: share 2 of 5 of custodian \"bob\"") || !strings.Contains(got, "pinned by: seal words typed back") {
			t.Errorf("verify-share bob: %s", got)
		}
		// A key file beside the transcript pins, but proves nothing.
		got = r.mustRun(nil, vs(3, "carol", "--passphrase-file", carolPass, "--transcript", tr, "--pubkey", pub)...)
		if !strings.HasPrefix(got, "NOT CONFIRMED: share 3 of 5 of custodian \"carol\"") || !strings.Contains(got, "not confirmed: keyceremony cannot tell whether that file is genuine") {
			t.Errorf("verify-share carol with --pubkey: %s", got)
		}
		// An unpinned transcript is refused unless trusted explicitly.
		r.wantExact(2, "escrow verify-share needs the signer of "+tr+" pinned: --fingerprint HEX or --seal-words \"…\" as the witnesses wrote them down (or --insecure-unpinned, which proves nothing)", nil,
			vs(4, "dave", "--identity", idFiles["dave"], "--transcript", tr)...)
		got = r.mustRun(nil, vs(4, "dave", "--identity", idFiles["dave"], "--transcript", tr, "--insecure-unpinned")...)
		if !strings.HasPrefix(got, "NOT CONFIRMED: share 4 of 5") || !strings.Contains(got, "pinned by: nothing (--insecure-unpinned)") {
			t.Errorf("verify-share --insecure-unpinned: %s", got)
		}
		// Another signer, other seal words.
		other := strings.Repeat("ab", 32)
		r.wantExact(4, fmt.Sprintf("%s: transcript line %d: field \"fingerprint\": signed by another key than the pinned one (expected abababababababab…, found %s…)", tr, res.EventCount+2, fp[:16]), nil,
			vs(1, "alice", "--identity", idFiles["alice"], "--transcript", tr, "--fingerprint", other)...)
		r.wantFail(4, []string{tr + ": transcript line", "the seal words given are not this transcript's"}, nil,
			vs(1, "alice", "--identity", idFiles["alice"], "--transcript", tr, "--seal-words", "aardvark absurd")...)
		r.wantFail(1, []string{share(1, "alice"), "does not open this share"}, nil,
			vs(1, "alice", "--identity", idFiles["dave"], "--transcript", tr, "--fingerprint", fp)...)
		r.wantFail(1, []string{share(3, "carol"), "does not open"}, nil,
			vs(3, "carol", "--passphrase-file", r.write("wrong.pass", "not carol's passphrase"), "--transcript", tr, "--fingerprint", fp)...)
		// A share of another ceremony, and a forged one, sealed to alice.
		otherSh := forgeShare(t, "other-ceremony", nil, recips[0])
		r.wantFail(3, []string{"belongs to ceremony \"other-ceremony\", not \"escrow-e2e\""}, nil,
			"escrow", "verify-share", "--share", r.write("other.age", string(otherSh)), "--identity", idFiles["alice"], "--transcript", tr, "--fingerprint", fp)
		b, _ := escrow.ParseBlob(blobData)
		forged := forgeShare(t, "escrow-e2e", b.Commitments, recips[0])
		r.wantFail(3, []string{"forged.age", "fails the Feldman check"}, nil,
			"escrow", "verify-share", "--share", r.write("forged.age", string(forged)), "--identity", idFiles["alice"], "--transcript", tr, "--fingerprint", fp)
		// Alice's share re-sealed to bob under bob's name: its index is
		// alice's, and the transcript binds the index to her.
		relabelled := r.write("relabelled.age", string(relabel(t, share(1, "alice"), idFiles["alice"], "bob", string(sshPub))))
		r.wantExact(3, "share 1 of custodian \"bob\" ("+relabelled+"): names custodian \"bob\", but the transcript gave share 1 to \"alice\": the share was relabelled; use alice's own share file", nil,
			"escrow", "verify-share", "--share", relabelled, "--identity", idFiles["bob"], "--passphrase-file", bobKeyPass, "--transcript", tr, "--fingerprint", fp)
		// Alice's share made a v1 share (without the blob it carries):
		// the transcript records that this escrow's shares are v2.
		v1 := r.write("v1.age", string(reseal(t, share(1, "alice"), idFiles["alice"], recips[0], func(sh *escrow.Share) { sh.Format, sh.Escrow = escrow.ShareFormatV1, nil })))
		r.wantExact(3, "share 1 of custodian \"alice\" ("+v1+"): is a keyceremony/share/v1 share, but the transcript recorded keyceremony/share/v2 shares for this escrow: it is not the share file the custodian was given", nil,
			"escrow", "verify-share", "--share", v1, "--identity", idFiles["alice"], "--transcript", tr, "--fingerprint", fp)
		r.wantExact(2, "escrow verify-share takes --share FILE and --transcript FILE, with the transcript's signer pinned (--fingerprint HEX or --seal-words \"…\")", nil,
			"escrow", "verify-share", "--share", share(1, "alice"))
	})

	t.Run("drill", func(t *testing.T) {
		// AWS points at a closed port: a drill must not need KMS.
		env := []string{"AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1", "KEYCEREMONY_PIN=9999"}
		drillOut := filepath.Join(r.dir, "drill")
		got := r.mustRun(env, append([]string{"recover", "--drill", "--escrow", blob, "--share", share(1, "alice"), "--share", share(2, "bob"), "--share", share(3, "carol"),
			"--identity", idFiles["alice"], "--identity", idFiles["bob"], "--passphrase-file", bobKeyPass, "--passphrase-file", carolPass, "--out", drillOut}, pinned...)...)
		bobFp, _ := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", sshKey+".pub").Output()
		if f := strings.Fields(string(bobFp)); len(f) < 2 || !strings.Contains(got, "  share of bob opened by ssh-ed25519 "+f[1]+"\n") || !strings.Contains(got, "  share of carol opened by passphrase\n") {
			t.Errorf("drill output does not say which identity opened which share (bob's key %s): %s", bobFp, got)
		}
		if !strings.Contains(got, "drill PASSED") || !strings.Contains(got, "key payments (id 0a0b)") || !strings.Contains(got, "pinned by:   signer fingerprint "+fp) {
			t.Errorf("drill: %s", got)
		}
		d, _ := os.ReadFile(filepath.Join(drillOut, "transcript.jsonl"))
		dres, err := transcripts.Verify(bytes.NewReader(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		var pass bool
		for _, e := range dres.Events {
			switch d := e.Data.(type) {
			case *events.Shares:
				if d.Token.Label != "keyceremony-drill" || !d.Token.Scratch {
					t.Errorf("the drill did not use a scratch token: %+v", d)
				}
				// Which identity opened which share.
				var opened []string
				for _, u := range d.Used {
					opened = append(opened, u.Custodian+":"+u.OpenedBy)
				}
				if got := strings.Join(opened, " "); got != "alice:x25519 bob:ssh-ed25519 carol:passphrase" {
					t.Errorf("shares opened by %s", got)
				}
			case *events.Drill:
				pass = pass || d.Result == "pass"
			case *events.Recovery:
				if d.OriginalTranscriptSHA256 != evidence.Hash(trData) || d.PinnedBy != "signer fingerprint "+fp || d.PinConfirmed == nil || !*d.PinConfirmed {
					t.Errorf("drill transcript does not record the original and its pin: %+v", d)
				}
			}
		}
		if !pass {
			t.Error("drill transcript has no passing drill event")
		}
		// Any three custodians with their shares alone: no escrow.json.
		got = r.mustRun(env, append([]string{"recover", "--drill", "--share", share(1, "alice"), "--share", share(4, "dave"), "--share", share(5, "erin"),
			"--identity", idFiles["alice"], "--identity", idFiles["dave"], "--identity", idFiles["erin"], "--out", filepath.Join(r.dir, "drill-shares-only")}, pinned...)...)
		if !strings.Contains(got, "drill PASSED") || !strings.Contains(got, "key payments (id 0a0b)") {
			t.Errorf("drill from the shares alone: %s", got)
		}
		if d, _ := os.ReadFile(filepath.Join(r.dir, "drill-shares-only", "transcript.jsonl")); !bytes.Contains(d, []byte(`"escrow_file":"carried by the shares"`)) {
			t.Errorf("the drill does not record where the escrow came from: %s", d)
		}
		// escrow.json re-serialised (compact, CRLF) still recovers: its hash
		// is taken over its canonical form.
		var compact bytes.Buffer
		if err := json.Compact(&compact, blobData); err != nil {
			t.Fatal(err)
		}
		reser := r.write("reserialised.json", strings.ReplaceAll(compact.String(), ",", ",\r\n"))
		got = r.mustRun(env, append([]string{"recover", "--drill", "--escrow", reser, "--share", share(1, "alice"), "--share", share(4, "dave"), "--share", share(5, "erin"),
			"--identity", idFiles["alice"], "--identity", idFiles["dave"], "--identity", idFiles["erin"], "--out", filepath.Join(r.dir, "drill-reserialised")}, pinned...)...)
		if !strings.Contains(got, "drill PASSED") {
			t.Errorf("drill with a re-serialised escrow.json: %s", got)
		}
		// Pinned only by the key file beside the transcript: every key
		// recovers, but the drill does not claim to have passed.
		got = r.mustRun(env, "recover", "--drill", "--escrow", blob, "--share", share(1, "alice"), "--share", share(2, "bob"), "--share", share(4, "dave"),
			"--identity", idFiles["alice"], "--identity", idFiles["bob"], "--passphrase-file", bobKeyPass, "--identity", idFiles["dave"], "--transcript", tr, "--pubkey", pub, "--out", filepath.Join(r.dir, "drill-pubkey"))
		if strings.Contains(got, "PASSED") || !strings.HasPrefix(got, "drill NOT CONFIRMED: every key recovered, but the original transcript was pinned by public key file signing-key.pem") {
			t.Errorf("drill pinned by a key file: %s", got)
		}
		// Without the transcript and a pin, nothing happens.
		noPin := filepath.Join(r.dir, "drill-nopin")
		r.wantExact(2, "recover needs --transcript ORIGINAL with its signer pinned (--fingerprint HEX or --seal-words \"…\" from the witnesses' notes); --insecure-unpinned goes on without proof", env,
			"recover", "--drill", "--escrow", blob, "--share", share(1, "alice"), "--identity", idFiles["alice"], "--out", noPin)
		r.wantExact(2, "recover needs the signer of "+tr+" pinned: --fingerprint HEX or --seal-words \"…\" as the witnesses wrote them down (or --insecure-unpinned, which proves nothing)", env,
			"recover", "--drill", "--escrow", blob, "--share", share(1, "alice"), "--identity", idFiles["alice"], "--transcript", tr, "--out", noPin)
		if _, err := os.Stat(noPin); err == nil {
			t.Error("a refused drill left its output directory behind")
		}
		// A changed escrow blob is refused up front.
		tb, _ := escrow.ParseBlob(blobData)
		tb.Keys[0].WrappedKey[5] ^= 1
		tampered, _ := tb.Marshal()
		tamperedOut := filepath.Join(r.dir, "drill-tampered")
		r.wantFail(3, []string{"tampered.json is not the escrow blob the transcript of ceremony escrow-e2e recorded"}, env,
			append([]string{"recover", "--drill", "--escrow", r.write("tampered.json", string(tampered)), "--share", share(1, "alice"), "--identity", idFiles["alice"],
				"--out", tamperedOut}, pinned...)...)
		if _, err := os.Stat(tamperedOut); err == nil {
			t.Error("a refused drill left its output directory behind")
		}
		// A relabelled share fails the drill.
		relabelled := r.write("relabelled2.age", string(relabel(t, share(1, "alice"), idFiles["alice"], "bob", string(sshPub))))
		r.wantExact(3, "recovery drill FAILED: share 1 of custodian \"bob\" ("+relabelled+"): names custodian \"bob\", but the transcript gave share 1 to \"alice\": the share was relabelled; use alice's own share file", env,
			append([]string{"recover", "--drill", "--escrow", blob, "--share", relabelled, "--share", share(4, "dave"), "--share", share(5, "erin"),
				"--identity", idFiles["bob"], "--passphrase-file", bobKeyPass, "--identity", idFiles["dave"], "--identity", idFiles["erin"], "--out", filepath.Join(r.dir, "drill-relabelled")}, pinned...)...)
		// Alice's share re-sealed to dave: dave would hold two shares. It
		// opens with dave's key, which is not the key the transcript sealed
		// share 1 to.
		resealed := r.write("resealed.age", string(relabel(t, share(1, "alice"), idFiles["alice"], "alice", recips[1])))
		r.wantFail(3, []string{"recovery drill FAILED: share 1 of custodian \"alice\" (" + resealed + "): was opened by age1", "but the transcript sealed share 1 to alice's x25519 key: it was re-sealed to another custodian and counts for no one"}, env,
			append([]string{"recover", "--drill", "--escrow", blob, "--share", resealed, "--share", share(4, "dave"), "--share", share(5, "erin"),
				"--identity", idFiles["dave"], "--identity", idFiles["erin"], "--out", filepath.Join(r.dir, "drill-resealed")}, pinned...)...)
		r.wantFail(3, []string{"was opened by age1", "but the transcript sealed share 1 to alice's x25519 key"}, nil,
			"escrow", "verify-share", "--share", resealed, "--identity", idFiles["dave"], "--transcript", tr, "--fingerprint", fp)
		// A failing drill (too few shares) is recorded as a failure.
		failOut := filepath.Join(r.dir, "drill-fail")
		r.wantFail(3, []string{"recovery drill FAILED", "too few shares", "needs 3 of 5"}, env,
			append([]string{"recover", "--drill", "--escrow", blob, "--share", share(1, "alice"), "--share", share(2, "bob"), "--identity", idFiles["alice"], "--identity", idFiles["bob"], "--passphrase-file", bobKeyPass, "--out", failOut}, pinned...)...)
		if d, _ := os.ReadFile(filepath.Join(failOut, "transcript.jsonl")); !bytes.Contains(d, []byte(`"result":"fail"`)) {
			t.Errorf("failed drill not recorded: %s", d)
		}
	})

	// The attack of issue 13: a second ceremony with the same id, sealed to
	// the real custodians' public keys, gives an escrow.json and shares that
	// agree with each other, with a key the attacker knows.
	t.Run("forged ceremony", func(t *testing.T) {
		env := []string{"AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1", "KEYCEREMONY_PIN=9999"}
		fdir := filepath.Join(r.dir, "forged-ceremony")
		forgedKCV := forgeCeremony(t, blobData, fdir, []string{recips[0], strings.TrimSpace(string(sshPub)), "", recips[1], recips[2]})
		fshare := func(i int, name string) string { return filepath.Join(fdir, fmt.Sprintf("share-%d-%s.age", i, name)) }
		args := []string{"recover", "--drill", "--share", fshare(1, "alice"), "--share", fshare(2, "bob"), "--share", fshare(4, "dave"),
			"--identity", idFiles["alice"], "--identity", idFiles["bob"], "--passphrase-file", bobKeyPass, "--identity", idFiles["dave"]}
		out := func(n string) []string { return []string{"--out", filepath.Join(r.dir, n)} }
		// The forged files, swapped into place, against the real transcript.
		r.wantFail(3, []string{filepath.Join(fdir, "escrow.json") + " is not the escrow blob the transcript of ceremony escrow-e2e recorded"}, env,
			slices.Concat(args, []string{"--escrow", filepath.Join(fdir, "escrow.json")}, pinned, out("f1"))...)
		// The forged shares alone, carrying the forged blob.
		r.wantFail(3, []string{"recovery drill FAILED: the escrow blob carried by share-1-alice.age is not the escrow blob the transcript of ceremony escrow-e2e recorded"}, env,
			slices.Concat(args, pinned, out("f5"))...)
		// The forged shares with the real escrow.json.
		r.wantFail(3, []string{"custodian \"alice\"", "belongs to another escrow of ceremony \"escrow-e2e\" (its commitments differ)"}, env,
			slices.Concat(args, []string{"--escrow", blob}, pinned, out("f2"))...)
		// Without a transcript it is refused; forced, it recovers the
		// attacker's key, and says that this proves nothing.
		r.wantFail(2, []string{"recover needs --transcript ORIGINAL with its signer pinned"}, env,
			slices.Concat(args, []string{"--escrow", filepath.Join(fdir, "escrow.json")}, out("f3"))...)
		got := r.mustRun(env, slices.Concat(args, []string{"--escrow", filepath.Join(fdir, "escrow.json"), "--insecure-unpinned"}, out("f4"))...)
		if strings.Contains(got, "PASSED") || !strings.Contains(got, "drill NOT CONFIRMED") || !strings.Contains(got, "kcv "+forgedKCV) {
			t.Errorf("forged drill without a transcript: %s", got)
		}
		for _, d := range []string{"f1", "f3"} {
			if _, err := os.Stat(filepath.Join(r.dir, d)); err == nil {
				t.Errorf("a refused drill left %s behind", d)
			}
		}
	})

	// Encrypt through KMS, then lose the material everywhere.
	kc, err := awskms.New(ctx, awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var arn string
	for _, e := range res.Events {
		if d, ok := e.Data.(*events.Import); ok {
			arn = d.KMSKeyARN
		}
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	ct, err := kc.Encrypt(ctx, arn, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.DeleteMaterial(ctx, arn, ""); err != nil {
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
		base := slices.Concat([]string{"recover", "--escrow", blob, "--token-label", "recovery"}, ids, pinned)
		r.wantFail(1, []string{"too few shares: 2 distinct valid share(s) given, this escrow needs 3 of 5"}, nil,
			append(base, "--share", share(1, "alice"), "--share", share(4, "dave"), "--out", o("few"))...)
		r.wantFail(3, []string{share(4, "dave"), "is a duplicate of share 4 of custodian \"dave\""}, nil,
			append(base, "--share", share(1, "alice"), "--share", share(4, "dave"), "--share", share(4, "dave"), "--out", o("dup"))...)
		b, _ := escrow.ParseBlob(blobData)
		forged := r.write("forged2.age", string(forgeShare(t, "escrow-e2e", b.Commitments, recips[2])))
		r.wantFail(3, []string{"forged2.age", "custodian \"erin\"", "fails the Feldman check"}, nil,
			append(base, "--share", share(1, "alice"), "--share", share(4, "dave"), "--share", forged, "--out", o("forged"))...)
		r.wantFail(1, []string{share(2, "bob"), "sealed to an age or SSH key", "--identity"}, nil,
			append([]string{"recover", "--escrow", blob, "--token-label", "recovery", "--share", share(2, "bob"), "--out", o("noid")}, pinned...)...)
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
		"--identity", idFiles["bob"], "--identity", idFiles["erin"], "--passphrase-file", bobKeyPass, "--passphrase-file", carolPass,
		"--token-label", "recovery", "--transcript", tr, "--seal-words", words, "--out", recOut)
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
	if err := kc.DeleteMaterial(ctx, arn, ""); err != nil {
		t.Fatal(err)
	}
	if err := hsmtest.InitToken(os.Getenv("SOFTHSM2_CONF"), "recovery2"); err != nil {
		t.Fatal(err)
	}
	got = r.mustRun(nil, "recover", "--escrow", blob, "--share", share(1, "alice"), "--share", share(3, "carol"), "--share", share(4, "dave"),
		"--identity", idFiles["alice"], "--identity", idFiles["dave"], "--passphrase-file", carolPass,
		"--token-label", "recovery2", "--transcript", tr, "--fingerprint", fp, "--out", filepath.Join(r.dir, "recovery2"),
		"--reimport", "--wrapping-algorithm", "RSAES_OAEP_SHA_1", "--wrapping-key-spec", "RSA_2048", "--valid-for", "30d")
	if !strings.Contains(got, "imported again into "+arn) {
		t.Errorf("recover --reimport: %s", got)
	}
	decrypts("after recover --reimport")
	// The recovered key is a token key with the original label and id; a
	// second recovery into the same token refuses to overwrite it.
	r.wantFail(1, []string{"already holds a key labelled \"payments\""}, nil,
		"recover", "--escrow", blob, "--share", share(2, "bob"), "--share", share(3, "carol"), "--share", share(5, "erin"),
		"--identity", idFiles["bob"], "--identity", idFiles["erin"], "--passphrase-file", bobKeyPass, "--passphrase-file", carolPass, "--token-label", "recovery", "--out", filepath.Join(r.dir, "again"),
		"--transcript", tr, "--fingerprint", fp)
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

// relabel opens the share in file with identity file id, renames its
// custodian to name and seals it to recipient: what a custodian could do to
// pass their share off as another's.
func relabel(t *testing.T, file, id, name, recipient string) []byte {
	t.Helper()
	return reseal(t, file, id, recipient, func(sh *escrow.Share) { sh.Custodian = name })
}

// reseal opens the share in file with identity file id, changes it with
// edit and seals it to recipient.
func reseal(t *testing.T, file, id, recipient string, edit func(*escrow.Share)) []byte {
	t.Helper()
	data, _ := os.ReadFile(file)
	key, _ := os.ReadFile(id)
	ids, err := escrow.ParseIdentities(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := escrow.OpenShare(data, file, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	edit(sh)
	rc, err := escrow.ParseRecipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	out, err := escrow.SealShare(sh, rc, false)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// forgeCeremony writes into dir what a second ceremony with the real one's
// id and custodians would make: escrow.json (the real blob's keys and
// labels, wrapped under a new KEK, with a key the attacker chose) and a
// share per custodian sealed to their real public recipient ("" for a
// passphrase custodian: sealed to a passphrase the attacker chose). It
// returns the forged key's check value.
func forgeCeremony(t *testing.T, realBlob []byte, dir string, recipients []string) string {
	t.Helper()
	b, err := escrow.ParseBlob(realBlob)
	if err != nil {
		t.Fatal(err)
	}
	s, err := escrow.Split(rand.Reader, b.Threshold, b.Shares)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := s.KEK(b.CeremonyID)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kcv, _ := escrow.CheckValue(key)
	b.Commitments, b.KEKCheckValue = s.Commitments, mustKCV(t, kek)
	for i := range b.Keys {
		if b.Keys[i].WrappedKey, err = wrap.KeyWrapPad(kek, key); err != nil {
			t.Fatal(err)
		}
		b.Keys[i].KeyCheckValue = kcv
	}
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "escrow.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, c := range b.Custodians {
		sh, err := s.Share(i+1, b.CeremonyID, c.Name, evidence.Hash(data))
		if err != nil {
			t.Fatal(err)
		}
		pb, err := escrow.ParseBlob(data)
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Carry(pb); err != nil {
			t.Fatal(err)
		}
		var rc *escrow.Recipient
		if recipients[i] == "" {
			rc, err = escrow.PassphraseRecipient([]byte("the attacker's passphrase"))
		} else {
			rc, err = escrow.ParseRecipient(recipients[i])
		}
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := escrow.SealShare(sh, rc, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("share-%d-%s.age", i+1, c.Name)), sealed, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return kcv
}

func mustKCV(t *testing.T, key []byte) string {
	t.Helper()
	kcv, err := escrow.CheckValue(key)
	if err != nil {
		t.Fatal(err)
	}
	return kcv
}
