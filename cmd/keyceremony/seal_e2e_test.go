package main_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
	"github.com/keyceremony/keyceremony/wrap"
)

// TestRSASeal runs a ceremony sealed with an RSA 3072 key (token.seal_algorithm:
// rsa-3072: neither module lacks P-256, so the config forces it; the probe
// alone decides otherwise) on SoftHSM and on NSS, and checks it everywhere a
// transcript is read: verify (pinned by key and by fingerprint, with files and
// witnesses), openssl, a resume after a kill (checkpoints), escrow
// verify-share, the drill, a recovery, and wrap + upload's check of an
// RSA-sealed transcript; then tampers with the seal.
func TestRSASeal(t *testing.T) {
	e := newE2E(t)
	if err := hsmtest.InitToken(os.Getenv("SOFTHSM2_CONF"), "target"); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := e.config("alice.key", id.String()+"\n")
	pinEnv := []string{"KEYCEREMONY_PIN=" + hsmtest.PIN}
	for _, tok := range []vendorToken{softhsmToken("ceremony"), nssToken(t)} {
		t.Run(tok.name, func(t *testing.T) {
			name := "rsa-" + tok.name
			out := filepath.Join(e.dir, name)
			tr := filepath.Join(out, "transcript.jsonl")
			pub := filepath.Join(out, "signing-key.pem")
			yaml := fmt.Sprintf(vendorYAML, name, out, strings.TrimRight(tok.yaml, "\n")+"\n  seal_algorithm: rsa-3072", wrap.RSAESOAEPSHA1, id.Recipient())
			cfg := e.config(name+".yaml", yaml)

			// Killed at line 8 (after the first checkpoints), then resumed:
			// the resume checks the RSA checkpoints it trusts.
			kill := binary(t, "keyceremony-crashtest", "run", "--config", cfg)
			kill.Env = append(append(os.Environ(), pinEnv...), "KEYCEREMONY_CRASHTEST_KILL_AT_LINE=8")
			if o, err := kill.CombinedOutput(); err == nil {
				t.Fatalf("the crashtest binary was not killed: %s", o)
			}
			stdout, stderr, code := e.run(pinEnv, "run", "--config", cfg)
			_, fp, ok := strings.Cut(stdout, "signer fingerprint: ")
			if code != 0 || !ok {
				t.Fatalf("ceremony: exit %d\n%s\n%s", code, stdout, stderr)
			}
			fp = strings.Fields(fp)[0]
			res, err := transcripts.VerifyBytes(mustRead(t, tr), transcripts.Options{Fingerprint: fp})
			if err != nil {
				t.Fatal(err)
			}
			if res.Seal.Algorithm != transcripts.SealRSA3072 || res.Header.SigningKey.Algorithm != transcripts.SealRSA3072 {
				t.Fatalf("seal %s, header %s", res.Seal.Algorithm, res.Header.SigningKey.Algorithm)
			}
			resumed, forced := false, ""
			for _, ev := range res.Events {
				switch d := ev.Data.(type) {
				case *events.Resume:
					resumed = true
				case *events.OpenToken:
					forced = d.SealAlgorithmForcedBy
					if !bytes.Contains(d.Probe, []byte(`"signing":"RSA 3072 (PKCS#1 v1.5, SHA-256)"`)) {
						t.Errorf("open-token probe: %s", d.Probe)
					}
				}
			}
			if !resumed || forced != "token.seal_algorithm: rsa-3072" {
				t.Errorf("resumed %v, forced by %q", resumed, forced)
			}

			for _, args := range [][]string{
				{"verify", "--pubkey", pub, "--files", out, "--json", tr},
				{"verify", "--fingerprint", fp, tr},
				{"escrow", "verify-share", "--share", filepath.Join(out, "share-1-alice.age"), "--identity", idFile, "--transcript", tr, "--fingerprint", fp},
			} {
				o, x, code := e.run(nil, args...)
				if code != 0 || args[0] == "verify" && !strings.Contains(o, transcripts.SealRSA3072) {
					t.Fatalf("%v: exit %d\n%s%s", args, code, o, x)
				}
			}
			if o, err := exec.Command("openssl", "dgst", "-sha256", "-verify", pub, "-signature", filepath.Join(out, "seal.sig"), filepath.Join(out, "seal.payload")).CombinedOutput(); err != nil || string(o) != "Verified OK\n" {
				t.Fatalf("openssl: %v: %s", err, o)
			}
			if o, err := exec.Command("openssl", "pkey", "-pubin", "-in", pub, "-noout", "-text").CombinedOutput(); err != nil || !strings.Contains(string(o), "Public-Key: (3072 bit)") || !strings.Contains(string(o), "Exponent: 65537") {
				t.Fatalf("openssl pkey: %v: %s", err, o)
			}

			// A witness signs the RSA seal's payload; verify checks it.
			wkey := filepath.Join(e.dir, name+"-witness")
			if o, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", wkey).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen: %v %s", err, o)
			}
			wpub, _ := os.ReadFile(wkey + ".pub")
			allowed := e.config(name+"-allowed", "alice namespaces=\"keyceremony\" "+string(wpub))
			if o, x, code := e.run(nil, "witness", "sign", "--key", wkey, "--name", "alice", "--pubkey", pub, tr); code != 0 {
				t.Fatalf("witness sign: exit %d\n%s%s", code, o, x)
			}
			if o, x, code := e.run(nil, "verify", "--fingerprint", fp, "--allowed-signers", allowed, "--witness", "alice", tr); code != 0 || !strings.Contains(o, "alice") {
				t.Fatalf("verify with the witness: exit %d\n%s%s", code, o, x)
			}

			// The drill and a recovery, rooted in the RSA-sealed transcript.
			stdout, stderr, code = e.run(nil, "recover", "--drill", "--share", filepath.Join(out, "share-1-alice.age"), "--identity", idFile, "--transcript", tr, "--fingerprint", fp, "--out", filepath.Join(e.dir, name+"-drill"))
			if code != 0 || !strings.Contains(stdout, "drill PASSED") {
				t.Fatalf("drill: exit %d\n%s\n%s", code, stdout, stderr)
			}
			if tok.name == "softhsm" {
				rec := filepath.Join(e.dir, name+"-recovery")
				args := append([]string{"recover", "--share", filepath.Join(out, "share-1-alice.age"), "--identity", idFile, "--transcript", tr, "--fingerprint", fp, "--out", rec, "--token-label", "target"}, tok.flags...)
				if stdout, stderr, code := e.run(pinEnv, args...); code != 0 || !strings.Contains(stdout, "kcv "+kcvOf(t, tr, "key-"+name)+" matches") {
					t.Fatalf("recover: exit %d\n%s\n%s", code, stdout, stderr)
				}
			}

			// wrap seals its transcript with the token's RSA key; upload
			// checks that transcript before it imports.
			kc, err := awskms.New(t.Context(), awskms.Options{})
			if err != nil {
				t.Fatal(err)
			}
			arn, err := kc.CreateKey(t.Context(), "rsa-seal", false)
			if err != nil {
				t.Fatal(err)
			}
			work := filepath.Join(e.dir, name+"-wrap")
			params := work + "-params.json"
			pin := e.fetchPinned(arn, string(wrap.RSAESOAEPSHA1), params)
			stdout, stderr, code = e.run(pinEnv, "wrap", "--config", cfg, "--params", params, "--wrapping-key-sha256", pin, "--out-dir", work)
			_, wfp, _ := strings.Cut(stdout, "signer fingerprint:")
			if wfp = strings.Fields(wfp + " -")[0]; code != 0 || wfp != fp {
				t.Fatalf("wrap: exit %d (signer %s, want %s)\n%s\n%s", code, wfp, fp, stdout, stderr)
			}
			if _, stderr, code := e.run(nil, "upload", "--bundle", filepath.Join(work, "bundle-key-"+name+".json"), "--transcript", filepath.Join(work, "transcript.jsonl"), "--fingerprint", fp, "--does-not-expire"); code != 0 {
				t.Fatalf("upload: exit %d: %s", code, stderr)
			}

			tamperRSASeal(t, e, out, fp)
		})
	}
}

// tamperRSASeal changes the sealed evidence in out and checks that verify
// and openssl refuse each change with the exact message and exit code.
func tamperRSASeal(t *testing.T, e *e2e, out, fp string) {
	t.Helper()
	good := mustRead(t, filepath.Join(out, "transcript.jsonl"))
	lines := bytes.Split(bytes.TrimSuffix(good, []byte("\n")), []byte("\n"))
	n := len(lines)
	sealLine := lines[n-1]
	_, b64, _ := bytes.Cut(sealLine, []byte(`"signature":"`))
	b64, _, _ = bytes.Cut(b64, []byte(`"`))
	sig, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(sig) != 384 {
		t.Fatalf("seal signature: %d bytes, %v", len(sig), err)
	}
	sig[100] ^= 1
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		line []byte
		code int
		want string
	}{
		{"a signature byte", bytes.Replace(sealLine, b64, []byte(base64.StdEncoding.EncodeToString(sig)), 1), 4,
			fmt.Sprintf(`transcript line %d: field "signature": signature does not verify`, n)},
		{"the algorithm", bytes.Replace(sealLine, []byte(`"algorithm":"`+transcripts.SealRSA3072+`"`), []byte(`"algorithm":"`+transcripts.SealECDSAP256+`"`), 1), 4,
			fmt.Sprintf(`transcript line %d: field "algorithm": is not the algorithm of the seal's public_key (expected %s, found %s)`, n, transcripts.SealRSA3072, transcripts.SealECDSAP256)},
	} {
		if bytes.Equal(c.line, sealLine) {
			t.Fatalf("%s: nothing changed", c.name)
		}
		bad := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".jsonl")
		if err := os.WriteFile(bad, append(bytes.Join(append(lines[:n-1:n-1], c.line), []byte("\n")), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := e.run(nil, "verify", "--fingerprint", fp, bad)
		if want := "keyceremony: error: " + bad + ": " + c.want + "\n"; code != c.code || stderr != want || stdout != "" {
			t.Errorf("%s changed: exit %d\nstdout %q\nstderr %q\nwant   %q", c.name, code, stdout, stderr, want)
		}
	}
	// openssl refuses the changed signature file too.
	badSig := filepath.Join(dir, "seal.sig")
	os.WriteFile(badSig, sig, 0o644)
	if o, err := exec.Command("openssl", "dgst", "-sha256", "-verify", filepath.Join(out, "signing-key.pem"), "-signature", badSig, filepath.Join(out, "seal.payload")).CombinedOutput(); err == nil || !strings.Contains(string(o), "Verification failure") {
		t.Errorf("openssl verified a changed RSA signature: %v %s", err, o)
	}
}
