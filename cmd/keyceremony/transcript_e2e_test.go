package main_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/hsm"
)

// sealedPIN is distinctive so that a leak cannot hide among other bytes.
const sealedPIN = "pin-9Qx7-Zk42-wV"

// TestTranscriptEvidence runs one ceremony through the binary on a token
// with its own PIN, then checks its evidence the ways a witness or an
// auditor would: openssl, ssh-keygen, keyceremony verify with each option,
// the script, and a scan of everything it wrote for secrets.
func TestTranscriptEvidence(t *testing.T) {
	e := newE2E(t)
	for _, tool := range []string{"softhsm2-util", "openssl", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: make deps", tool)
		}
	}
	if out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "sealed", "--pin", sealedPIN, "--so-pin", "so-"+sealedPIN).CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	// Alice, the custodian, has an identity of the test's own, so that the
	// secret scan can open her share.
	alice, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(fmt.Sprintf(ceremonyYAML, "ev"), "label: ceremony", "label: sealed", 1)
	yaml = strings.Replace(yaml, "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", alice.Recipient().String(), 1)
	if !strings.Contains(yaml, alice.Recipient().String()) {
		t.Fatal("the e2e config's custodian changed: update this test")
	}
	cfg := e.config("ev.yaml", yaml)
	var outputs []string // every stdout and stderr, for the secret scan
	run := func(env []string, args ...string) (string, string, int) {
		o, x, code := e.run(env, args...)
		outputs = append(outputs, o, x)
		return o, x, code
	}
	stdout, stderr, code := run([]string{"KEYCEREMONY_PIN=" + sealedPIN}, "run", "--config", cfg)
	if code != 0 {
		t.Fatalf("run exited %d\n%s\n%s", code, stdout, stderr)
	}
	out := filepath.Join(e.dir, "ev")
	tr := filepath.Join(out, "transcript.jsonl")
	pub := filepath.Join(out, "signing-key.pem")
	words := between(stderr, "seal words, to read aloud and write down: ", "\n")
	if len(strings.Fields(words)) != 16 {
		t.Fatalf("run did not show 16 seal words: %q\n%s", words, stderr)
	}

	t.Run("openssl verifies the seal", func(t *testing.T) {
		o, err := exec.Command("openssl", "dgst", "-sha256", "-verify", pub, "-signature", filepath.Join(out, "seal.sig"), filepath.Join(out, "seal.payload")).CombinedOutput()
		if err != nil || !strings.Contains(string(o), "Verified OK") {
			t.Fatalf("openssl: %v: %s", err, o)
		}
		// The README's chain check, with coreutils and jq.
		if _, err := exec.LookPath("jq"); err != nil {
			t.Skip("jq not installed")
		}
		chain := `cd "$1" && diff <(head -n -1 transcript.jsonl | while IFS= read -r l; do printf %s "$l" | sha256sum | cut -c1-64; done) <(jq -r .prev transcript.jsonl | tail -n +2) && grep -qx "last_line_sha256: $(tail -n 1 transcript.jsonl | jq -r .prev)" seal.payload && echo chain OK`
		if o, err := exec.Command("bash", "-c", chain, "chain", out).CombinedOutput(); err != nil || !strings.Contains(string(o), "chain OK") {
			t.Fatalf("shell chain check: %v: %s", err, o)
		}
		broken := filepath.Join(e.dir, "broken")
		os.MkdirAll(broken, 0o755)
		data := mustRead(t, tr)
		os.WriteFile(filepath.Join(broken, "transcript.jsonl"), bytes.Replace(data, []byte(`"created":true`), []byte(`"created":false`), 1), 0o644)
		os.WriteFile(filepath.Join(broken, "seal.payload"), mustRead(t, filepath.Join(out, "seal.payload")), 0o644)
		if o, err := exec.Command("bash", "-c", chain, "chain", broken).CombinedOutput(); err == nil {
			t.Fatalf("shell chain check passed a changed transcript: %s", o)
		}
	})

	t.Run("binary", func(t *testing.T) {
		// The transcript, keyceremony version and the script name the same
		// binary hash; verify --expect-binary holds the transcript to it.
		o, x, code := run(nil, "version", "--json")
		var v struct {
			Build struct {
				BinarySHA256 string `json:"binary_sha256"`
			}
			Words string `json:"binary_sha256_words"`
		}
		if err := json.Unmarshal([]byte(o), &v); code != 0 || err != nil || len(v.Build.BinarySHA256) != 64 {
			t.Fatalf("version --json exited %d: %v\n%s%s", code, err, o, x)
		}
		sum := sha256.Sum256(mustRead(t, filepath.Join(binDir, "keyceremony")))
		if hex.EncodeToString(sum[:]) != v.Build.BinarySHA256 {
			t.Fatalf("version reports sha256 %s, the file's is %x", v.Build.BinarySHA256, sum)
		}
		if o, _, _ := run(nil, "version"); !strings.Contains(o, "sha256:   "+v.Build.BinarySHA256+"\n") || !strings.Contains(o, "  1. "+strings.Join(strings.Fields(v.Words)[:4], " ")+"\n") {
			t.Errorf("version does not print the hash and its words in groups:\n%s", o)
		}
		if o, _, _ := run(nil, "script", "--config", cfg); !strings.Contains(o, v.Build.BinarySHA256[:8]+" "+v.Build.BinarySHA256[8:16]) {
			t.Errorf("script does not show the binary hash:\n%s", o)
		}
		o, x, code = run(nil, "verify", "--pubkey", pub, "--expect-binary", strings.ToUpper(v.Build.BinarySHA256), tr)
		if code != 0 || !strings.Contains(o, "binary: sha256 "+v.Build.BinarySHA256+" (") || !strings.Contains(o, "binary: matches --expect-binary") {
			t.Fatalf("verify --expect-binary with the right hash exited %d:\n%s%s", code, o, x)
		}
		other := strings.Repeat("ab", 32)
		o, x, code = run(nil, "verify", "--pubkey", pub, "--expect-binary", other, tr)
		want := "keyceremony: error: " + tr + ": the transcript was written by binary sha256 " + v.Build.BinarySHA256 + ", not the expected " + other + ": compare SHA256SUMS with keyceremony version on the ceremony laptop\n"
		if code != 9 || x != want || o != "" {
			t.Fatalf("verify --expect-binary with another hash: exit %d\nstdout %q\nstderr %q\nwant %q", code, o, x, want)
		}
		o, _, code = run(nil, "verify", "--pubkey", pub, "--expect-binary", other, "--json", tr)
		if code != 9 || !strings.Contains(o, `"ok": false`) || !strings.Contains(o, `"binary_sha256": "`+v.Build.BinarySHA256+`"`) {
			t.Fatalf("verify --json --expect-binary with another hash: exit %d\n%s", code, o)
		}
		if _, x, code = run(nil, "verify", "--expect-binary", "abc", tr); code != 2 || !strings.Contains(x, "--expect-binary must be 64 hex digits") {
			t.Fatalf("verify --expect-binary abc: exit %d %s", code, x)
		}
	})

	t.Run("script", func(t *testing.T) {
		o, x, code := run(nil, "script", "--config", cfg)
		var h struct {
			ScriptSHA256 string `json:"script_sha256"`
			Script       []struct {
				No int    `json:"no"`
				ID string `json:"id"`
			} `json:"script"`
		}
		data, _ := os.ReadFile(tr)
		if err := json.Unmarshal(bytes.SplitN(data, []byte("\n"), 2)[0], &h); err != nil {
			t.Fatal(err)
		}
		n := len(h.Script)
		if code != 0 || n < 8 || !strings.Contains(o, fmt.Sprintf("## Step %d: Seal the transcript on the token", n)) || !strings.Contains(o, "- [ ] Done. Initials:") {
			t.Fatalf("script exited %d (%d steps in the header): %s %s", code, n, o, x)
		}
		if sum := sha256.Sum256([]byte(o)); hex.EncodeToString(sum[:]) != h.ScriptSHA256 {
			t.Fatalf("printed script's sha256 %x is not the header's %s", sum, h.ScriptSHA256)
		}
		// Every script step has an event of its number (verify checks it
		// too); the custodians step, which records nothing else, a
		// step-done.
		have := map[int]bool{}
		var done []string
		for _, line := range bytes.Split(data, []byte("\n")) {
			var ev struct {
				StepNo int    `json:"step_no"`
				Step   string `json:"step"`
				Data   struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			if json.Unmarshal(line, &ev) == nil && ev.StepNo > 0 {
				have[ev.StepNo] = true
				if ev.Step == "step-done" {
					done = append(done, ev.Data.ID)
				}
			}
		}
		for _, st := range h.Script {
			if !have[st.No] {
				t.Errorf("no event for script step %d %s", st.No, st.ID)
			}
		}
		if strings.Join(done, " ") != "custodians" {
			t.Errorf("step-done events for %v, want only custodians", done)
		}
		if _, x, code := run(nil, "script"); code != 2 || !strings.Contains(x, "--config") {
			t.Fatalf("script without --config: exit %d %s", code, x)
		}
	})

	t.Run("verify json", func(t *testing.T) {
		o, x, code := run(nil, "verify", "--pubkey", pub, "--files", out, "--json", tr)
		var r struct {
			OK           bool   `json:"ok"`
			Words        string `json:"words"`
			FilesChecked bool   `json:"files_checked"`
			Files        []struct {
				File string `json:"file"`
			} `json:"files"`
		}
		if err := json.Unmarshal([]byte(o), &r); err != nil || code != 0 || !r.OK || !r.FilesChecked || r.Words != words {
			t.Fatalf("verify exit %d: %v\n%s%s", code, err, o, x)
		}
		named := map[string]bool{}
		for _, f := range r.Files {
			named[f.File] = true
		}
		for _, f := range []string{"params-payments-ev.json", "params-archive-ev.json", "bundle-payments-ev.json", "bundle-archive-ev.json", "signing-key.pem"} {
			if !named[f] {
				t.Errorf("transcript does not name %s with its sha256", f)
			}
		}
	})

	t.Run("failures have their exit codes", func(t *testing.T) {
		copyDir := filepath.Join(e.dir, "copy")
		if err := os.CopyFS(copyDir, os.DirFS(out)); err != nil {
			t.Fatal(err)
		}
		bundle := filepath.Join(copyDir, "bundle-archive-ev.json")
		os.Chmod(bundle, 0o644)
		if err := os.WriteFile(bundle, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, x, code := run(nil, "verify", "--files", copyDir, tr); code != 6 || !strings.Contains(x, "bundle-archive-ev.json") {
			t.Errorf("replaced bundle: exit %d: %s", code, x)
		}
		o, x, code := run(nil, "verify", "--fingerprint", strings.Repeat("0", 64), "--json", tr)
		var r struct {
			OK    bool   `json:"ok"`
			Class string `json:"class"`
			Line  int    `json:"line"`
			Field string `json:"field"`
			Exit  int    `json:"exit_code"`
		}
		if err := json.Unmarshal([]byte(o), &r); err != nil || code != 4 || r.OK || r.Class != "signature" || r.Exit != 4 || r.Field != "fingerprint" || r.Line < 2 {
			t.Errorf("wrong fingerprint: exit %d %+v: %s %s", code, r, o, x)
		}
		broken := filepath.Join(copyDir, "transcript.jsonl")
		os.Chmod(broken, 0o644)
		os.WriteFile(broken, bytes.Replace(mustRead(t, tr), []byte(`"created":true`), []byte(`"created":false`), 1), 0o644)
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"verify", "--fingerprint", "xyz", tr}, 2, "64 hex digits"},
			{[]string{"verify", "--pubkey", pub, "--fingerprint", strings.Repeat("0", 64), tr}, 2, "not both"},
			{[]string{"verify", "--witness", "alice", tr}, 2, "--allowed-signers"},
			{[]string{"verify", "--files", filepath.Join(e.dir, "nope"), tr}, 1, "not a directory"},
			{[]string{"verify", tr, tr}, 2, "exactly one"},
			{[]string{"verify", "--pubkey", cfg, tr}, 1, "not a PEM PUBLIC KEY"},
			{[]string{"witness", "sign", "--key", pub, "--name", "../x", tr}, 2, "--name"},
			{[]string{"witness", "sign", "--key", pub, tr}, 2, "--name"},
			{[]string{"witness", "verify", tr}, 2, "subcommand"},
			{[]string{"witness", "sign", "--key", pub, "--name", "mallory", broken}, 3, "refusing to witness"},
			{[]string{"witness", "sign", "--key", pub, "--name", "mallory", tr}, 1, "SSH key"},
			{[]string{"verify", broken}, 3, `field "prev"`},
		} {
			_, x, code := run(nil, tc.args...)
			if code != tc.code || !strings.Contains(x, tc.want) || strings.Count(strings.TrimSpace(x), "\n") > 1 {
				t.Errorf("%v: exit %d, want %d with %q: %s", tc.args, code, tc.code, tc.want, x)
			}
		}
		if _, err := os.Stat(filepath.Join(copyDir, "witness-mallory.sig")); err == nil {
			t.Error("witness sign wrote a signature for a broken transcript")
		}
	})

	t.Run("witnesses", func(t *testing.T) {
		dir := t.TempDir()
		alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
		for _, k := range []struct{ path, typ string }{{alice, "ed25519"}, {bob, "ecdsa"}} {
			if o, err := exec.Command("ssh-keygen", "-q", "-t", k.typ, "-N", "", "-f", k.path).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen: %v %s", err, o)
			}
		}
		allowed := filepath.Join(dir, "allowed_signers")
		var as bytes.Buffer
		for _, w := range []struct{ name, path string }{{"alice", alice}, {"bob", bob}} {
			k, _ := os.ReadFile(w.path + ".pub")
			fmt.Fprintf(&as, "%s namespaces=\"keyceremony\" %s", w.name, k)
		}
		os.WriteFile(allowed, as.Bytes(), 0o644)

		// Alice signs with keyceremony, Bob with ssh-keygen.
		o, x, code := run(nil, "witness", "sign", "--key", alice, "--name", "alice", "--pubkey", pub, tr)
		if code != 0 || !strings.Contains(o, words) {
			t.Fatalf("witness sign exit %d: %s %s", code, o, x)
		}
		if _, x, code := run(nil, "witness", "sign", "--key", alice, "--name", "alice", tr); code != 1 || !strings.Contains(x, "exists") {
			t.Errorf("second signature by alice: exit %d: %s", code, x)
		}
		payload := filepath.Join(out, "seal.payload")
		if o, err := exec.Command("ssh-keygen", "-Y", "sign", "-n", "keyceremony", "-f", bob, payload).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -Y sign: %v %s", err, o)
		}
		if err := os.Rename(payload+".sig", filepath.Join(out, "witness-bob.sig")); err != nil {
			t.Fatal(err)
		}
		o, x, code = run(nil, "verify", "--pubkey", pub, "--allowed-signers", allowed, "--witness", "alice", "--witness", "bob", tr)
		if code != 0 || !strings.Contains(o, "witness: alice") || !strings.Contains(o, "witness: bob") {
			t.Fatalf("verify with witnesses: exit %d: %s %s", code, o, x)
		}
		// ssh-keygen checks Alice's keyceremony-made signature.
		cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "alice", "-n", "keyceremony", "-s", filepath.Join(out, "witness-alice.sig"))
		cmd.Stdin = bytes.NewReader(mustRead(t, payload))
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -Y verify: %v %s", err, o)
		}
		if _, x, code := run(nil, "verify", "--allowed-signers", allowed, "--witness", "carol", tr); code != 7 || !strings.Contains(x, "carol") {
			t.Errorf("missing witness: exit %d: %s", code, x)
		}
		// A witness whose key is not listed for their name.
		os.WriteFile(allowed, bytes.Replace(as.Bytes(), []byte("bob "), []byte("robert "), 1), 0o644)
		if _, x, code := run(nil, "verify", "--allowed-signers", allowed, tr); code != 7 || !strings.Contains(x, "bob") {
			t.Errorf("unlisted witness: exit %d: %s", code, x)
		}
		// Issue 17: armour markers sharing their dashes made verify panic.
		os.WriteFile(allowed, as.Bytes(), 0o644)
		dashes := filepath.Join(out, "witness-mallory.sig")
		if err := os.WriteFile(dashes, []byte("-----BEGIN SSH SIGNATURE-----END SSH SIGNATURE-----"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, x, code = run(nil, "verify", "--allowed-signers", allowed, tr)
		os.Remove(dashes)
		// A line ssh-keygen cannot read is skipped, as ssh-keygen skips it,
		// with a warning naming it.
		os.WriteFile(allowed, append(append([]byte("carol namespaces=keyceremony "), mustRead(t, alice+".pub")...), as.Bytes()...), 0o644)
		if _, x, code := run(nil, "verify", "--allowed-signers", allowed, "--witness", "alice", "--witness", "bob", tr); code != 0 ||
			!strings.Contains(x, "keyceremony: warning: "+allowed+" line 1 ignored, as ssh-keygen ignores it: bad options: missing start quote\n") {
			t.Errorf("unreadable allowed-signers line: exit %d: %s", code, x)
		}
		if want := "malformed ssh signature: the file does not start with the line -----BEGIN SSH SIGNATURE-----\n"; code != 7 ||
			!strings.HasPrefix(x, "keyceremony: error: ") || !strings.Contains(x, "witness mallory") || !strings.HasSuffix(x, want) || strings.Count(x, "\n") != 1 {
			t.Errorf("shared dashes: exit %d: %q, want 7 and one line ending %q", code, x, want)
		}
	})

	t.Run("no secret in anything written", func(t *testing.T) {
		// share-N-NAME.age files hold shares sealed to their custodians:
		// the scan below proves no share is there in clear.
		material := keyMaterial(t, "payments-ev")
		defer clear(material)
		archive := keyMaterial(t, "archive-ev")
		defer clear(archive)
		// Alice's share and, with threshold 1, the escrow KEK it recovers.
		sh, err := escrow.OpenShare(mustRead(t, filepath.Join(out, "share-1-alice.age")), "alice", alice)
		if err != nil {
			t.Fatal(err)
		}
		shareValue, err := hex.DecodeString(sh.Value)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := escrow.ParseBlob(mustRead(t, filepath.Join(out, "escrow.json")))
		if err != nil {
			t.Fatal(err)
		}
		kek, err := blob.Public().Recover([]*escrow.Share{sh})
		if err != nil {
			t.Fatal(err)
		}
		defer clear(kek)
		needles := map[string][]byte{}
		for name, secret := range map[string][]byte{"PIN": []byte(sealedPIN), "payments key": material, "archive key": archive, "share": shareValue, "escrow KEK": kek} {
			// Every run of this test is checked for them again when it
			// ends (binary), its outputs and files as they were written.
			keepSecret(e.t, name, secret, true)
			for form, b := range encodings(secret) {
				needles[name+" ("+form+")"] = b
			}
		}
		scanned := 0
		err = filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if rel, _ := filepath.Rel(e.dir, p); strings.HasPrefix(rel, "softhsm") || strings.Contains(rel, "tokens") {
				return nil // the token store itself
			}
			scanned++
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for what, n := range needles {
				if bytes.Contains(b, n) {
					t.Errorf("%s holds the %s", p, what)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range outputs {
			for what, n := range needles {
				if bytes.Contains([]byte(o), n) {
					t.Errorf("output %d holds the %s", i, what)
				}
			}
		}
		if scanned < 9 {
			t.Fatalf("scanned only %d files", scanned)
		}
		t.Logf("scanned %d files and %d outputs for %d forms of the PIN, the key material, the share and the escrow KEK", scanned, len(outputs), len(needles))
	})
}

// keyMaterial recovers a generated key's bytes for comparison, by wrapping
// it on the token to a throw-away RSA key.
func keyMaterial(t *testing.T, label string) []byte {
	t.Helper()
	tok, err := hsm.Open(hsm.Config{TokenLabel: "sealed", PIN: []byte(sealedPIN)})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	k, err := tok.FindAESKey(label, nil)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := tok.WrapOAEP(k, &rk.PublicKey, crypto.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rsa.DecryptOAEP(sha1.New(), nil, rk, ct, nil)
	if err != nil || len(m) != 32 {
		t.Fatalf("recovered %d bytes: %v", len(m), err)
	}
	return m
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
