package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/wrap"
)

// TestSwappedParamsFile is the attack of issue 12: a params file carried
// into the room with the attacker's RSA key in place of KMS's. Unpinned, the
// offline ceremony wraps the new key to the attacker, who decrypts it; so an
// offline config must pin every wrapping key, and only a loudly named option
// (recorded in the transcript) lets a ceremony go without.
func TestSwappedParamsFile(t *testing.T) {
	a := newAirgap(t)
	work := t.TempDir()
	arn := a.createKey()
	good := filepath.Join(work, "params-good.json")
	goodHash := a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", good)

	// The attacker keeps the ARN and import token, and swaps the key.
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p, err := wrap.ParseParams(mustRead(t, good))
	if err != nil {
		t.Fatal(err)
	}
	p.PublicKey, _ = x509.MarshalPKIXPublicKey(&attacker.PublicKey)
	forged, _ := p.Marshal()
	swapped := filepath.Join(work, "params-swapped.json")
	os.WriteFile(swapped, forged, 0o644)
	sum := sha256.Sum256(p.PublicKey)
	swappedHash := hex.EncodeToString(sum[:])

	cfgText := func(out, pin, extra string) string {
		return fmt.Sprintf(`
ceremony: {id: swap-%[1]s, operator: tester, out_dir: %[1]s}
token: {label: ceremony}
%[4]s
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
keys:
  - {label: swap-%[1]s, params_file: %[2]s, %[3]s valid_for: 30d}
`, out, swapped, pin, extra)
	}
	cases := []struct {
		name, out, pin, extra, want string
		code                        int
	}{
		{"no pin", "nopin", "", "",
			"keyceremony: error: " + filepath.Join(work, "nopin.yaml") + ": keys[0].wrapping_key_sha256 must be set: pin the wrapping key's SHA-256 that params fetch printed, so that a swapped params file is refused (or set kms.insecure_unpinned_wrapping_key: true, at your own risk)", 1},
		{"pinned", "pinned", "wrapping_key_sha256: " + goodHash + ",", "",
			"keyceremony: error: wrapping key is not the pinned one: the wrapping key of keys[0].params_file " + swapped + " has sha256 " + swappedHash[:16] + "…, not the pinned " + goodHash[:16] + "…: they are not what params fetch wrote, or the pin was mistyped; fetch the parameters again", 1},
		{"option online", "online", "", "kms: {insecure_unpinned_wrapping_key: true}",
			"", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := cfgText(c.out, c.pin, c.extra)
			if c.name == "option online" {
				text = strings.Replace(text, "params_file: "+swapped+",", "create: true,", 1)
				c.want = "keyceremony: error: " + filepath.Join(work, c.out+".yaml") + ": kms.insecure_unpinned_wrapping_key applies only to an offline ceremony (keys[].params_file): remove it"
			}
			cfg := filepath.Join(work, c.out+".yaml")
			os.WriteFile(cfg, []byte(text), 0o600)
			stdout, stderr, code := a.offline(pin, "run", "--config", cfg)
			if code != c.code || firstLine(stderr) != c.want {
				t.Fatalf("exit %d, want %d\ngot:  %s\nwant: %s\n%s", code, c.code, firstLine(stderr), c.want, stdout)
			}
			if _, err := os.Stat(filepath.Join(work, c.out)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused run left its output directory (%v)", err)
			}
		})
	}

	// With the option, the ceremony goes ahead, warns, and the transcript
	// says the key was not pinned and who allowed it. The attacker's key
	// then recovers the material: exactly what the pin prevents.
	cfg := filepath.Join(work, "insecure.yaml")
	os.WriteFile(cfg, []byte(cfgText("insecure", "", "kms: {insecure_unpinned_wrapping_key: true}")), 0o600)
	stdout, stderr, code := a.offline(pin, "run", "--config", cfg)
	if code != 0 {
		t.Fatalf("insecure run: exit %d: %s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "WARNING: key \"swap-insecure\": the wrapping key of params-swapped.json (sha256 "+swappedHash+") is NOT pinned (kms.insecure_unpinned_wrapping_key)") {
		t.Errorf("no warning:\n%s", stderr)
	}
	out := filepath.Join(work, "insecure")
	ev := event(t, filepath.Join(out, "transcript.jsonl"), "fetch-params")
	if ev["wrapping_key_pinned"] != false || ev["unpinned_allowed_by"] != "kms.insecure_unpinned_wrapping_key" || ev["public_key_sha256"] != swappedHash {
		t.Errorf("fetch-params event does not record the missing pin: %v", ev)
	}
	kcv := event(t, filepath.Join(out, "transcript.jsonl"), "generate-key")["key_check_value"]
	b, err := wrap.ParseBundle(mustRead(t, filepath.Join(out, "bundle-swap-insecure.json")))
	if err != nil {
		t.Fatal(err)
	}
	material, err := rsa.DecryptOAEP(sha1.New(), nil, attacker, b.EncryptedKeyMaterial, nil)
	if err != nil {
		t.Fatalf("the attacker's key does not open the bundle: %v", err)
	}
	blk, _ := aes.NewCipher(material)
	zero := make([]byte, 16)
	blk.Encrypt(zero, zero)
	if got := hex.EncodeToString(zero[:3]); got != kcv {
		t.Fatalf("attacker recovered material with kcv %s, ceremony key %v", got, kcv)
	}

	// With the right pin and the right file, the ceremony runs and records
	// the pin.
	cfg = filepath.Join(work, "good.yaml")
	os.WriteFile(cfg, []byte(strings.Replace(cfgText("good", "wrapping_key_sha256: "+goodHash+",", ""), swapped, good, 1)), 0o600)
	if stdout, stderr, code := a.offline(pin, "run", "--config", cfg); code != 0 {
		t.Fatalf("pinned run: exit %d: %s%s", code, stdout, stderr)
	}
	if ev := event(t, filepath.Join(work, "good", "transcript.jsonl"), "fetch-params"); ev["wrapping_key_pinned"] != true || ev["unpinned_allowed_by"] != nil {
		t.Errorf("fetch-params event of a pinned run: %v", ev)
	}
}

// event returns the data of the first event named step in a transcript.
func event(t *testing.T, path, step string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(string(mustRead(t, path)), "\n") {
		var ev struct {
			Step string         `json:"step"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Step == step {
			return ev.Data
		}
	}
	t.Fatalf("no %s event in %s", step, path)
	return nil
}

// firstLine is the first line of s, without its newline.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// TestUploadVerifiesFirst: upload checks the bundle against the sealed
// transcript of its ceremony (signer pinned) before KMS sees it, takes the
// key check value and transcript hash for the description only from that
// transcript, and never shortens a key's expiry unless asked.
func TestUploadVerifiesFirst(t *testing.T) {
	a := newAirgap(t)
	work := t.TempDir()
	kcv := a.tokenKey("up")
	arn := a.createKey()
	params := filepath.Join(work, "params.json")
	stdout, errOut, code := a.run(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", params)
	if code != 0 {
		t.Fatalf("params fetch: %s", errOut)
	}
	outDir := filepath.Join(work, "out")
	stdout, errOut, code = a.offline(pin, printed(t, stdout, "wrap", map[string]string{"LABEL": "up", "TOKEN": "ceremony", "DIR": outDir})...)
	if code != 0 {
		t.Fatalf("wrap: %s", errOut)
	}
	upload := printed(t, stdout, "upload", nil)
	bundle, tr := filepath.Join(outDir, "bundle-up.json"), filepath.Join(outDir, "transcript.jsonl")
	fp := strings.Fields(strings.SplitN(stdout, "signer fingerprint:", 2)[1])[0]

	// The attacker's bundle: other material wrapped under the real KMS
	// public key with the real import token, and a made-up transcript hash.
	p, err := wrap.ParseParams(mustRead(t, params))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := p.RSAPublicKey()
	other := make([]byte, 32)
	rand.Read(other)
	enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, other, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := wrap.ParseBundle(mustRead(t, bundle))
	b.EncryptedKeyMaterial, b.TranscriptHash = enc, strings.Repeat("ab", 32)
	forged, _ := b.Marshal()
	forgedFile := filepath.Join(work, "bundle-up.json")
	os.WriteFile(forgedFile, forged, 0o644)

	refusals := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no transcript", []string{"upload", "--bundle", bundle, "--valid-for", "90d"}, 2,
			"keyceremony: error: upload needs --transcript FILE and --fingerprint HEX (or --pubkey PEM): the bundle is checked against the sealed transcript of its ceremony before KMS sees it (or, at your own risk, --insecure-unverified-bundle)"},
		{"no pinned signer", []string{"upload", "--bundle", bundle, "--transcript", tr, "--valid-for", "90d"}, 2,
			"keyceremony: error: upload needs --transcript FILE and --fingerprint HEX (or --pubkey PEM): the bundle is checked against the sealed transcript of its ceremony before KMS sees it (or, at your own risk, --insecure-unverified-bundle)"},
		{"forged bundle", []string{"upload", "--bundle", forgedFile, "--transcript", tr, "--fingerprint", fp, "--valid-for", "90d"}, 3,
			"keyceremony: error: " + forgedFile + ": the bundle (sha256 " + sha256Hex(forged)[:16] + "…) is not one the transcript of ceremony wrap-up recorded: it was changed or swapped on its way out; upload the bundle the ceremony wrote"},
		{"another signer", []string{"upload", "--bundle", bundle, "--transcript", tr, "--fingerprint", strings.Repeat("0", 64), "--valid-for", "90d"}, 4, ""},
		{"unverified and pinned", []string{"upload", "--bundle", bundle, "--transcript", tr, "--fingerprint", fp, "--insecure-unverified-bundle", "--valid-for", "90d"}, 2,
			"keyceremony: error: --insecure-unverified-bundle skips the transcript check: drop it, or drop --transcript, --pubkey and --fingerprint"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			_, errOut, code := a.run(nil, r.args...)
			if code != r.code || r.want != "" && firstLine(errOut) != r.want {
				t.Fatalf("exit %d, want %d\ngot:  %s\nwant: %s", code, r.code, firstLine(errOut), r.want)
			}
			if strings.Count(errOut, "\n") != 1 {
				t.Errorf("not one line: %s", errOut)
			}
			if st := a.keyState(arn); st != "PendingImport" {
				t.Fatalf("a refused upload changed the key: %s", st)
			}
		})
	}

	// The upload command wrap printed works as printed; the description
	// comes from the verified transcript, not from the bundle.
	stdout, errOut, code = a.run(nil, upload...)
	if code != 0 {
		t.Fatalf("printed upload %v: exit %d: %s", upload, code, errOut)
	}
	want := "key material description: keyceremony kcv " + kcv + " transcript sha256:" + sha256Hex(mustRead(t, tr)) + "\n"
	if !strings.Contains(stdout, want) {
		t.Errorf("upload output lacks %q:\n%s", want, stdout)
	}
	d, err := a.kms.Describe(context.Background(), arn)
	if err != nil || d.State != "Enabled" || d.ValidTo == nil {
		t.Fatalf("after upload: %+v %v", d, err)
	}

	// Uploading again with a shorter expiry is refused and changes nothing.
	shorter := []string{"upload", "--bundle", bundle, "--transcript", tr, "--fingerprint", fp, "--valid-for", "30d"}
	_, errOut, code = a.run(nil, shorter...)
	wantRE := regexp.MustCompile(`^keyceremony: error: the upload would shorten the key's expiry: KMS key ` + regexp.QuoteMeta(arn) + ` is Enabled and its material expires ` +
		regexp.QuoteMeta(d.ValidTo.UTC().Format(time.RFC3339)) + `; this upload would make it expire \S+: nothing was imported; to shorten it anyway add --allow-shorter-expiry\n$`)
	if code != 1 || !wantRE.MatchString(errOut) {
		t.Fatalf("shorter expiry: exit %d: %s", code, errOut)
	}
	if d2, _ := a.kms.Describe(context.Background(), arn); !d2.ValidTo.Equal(*d.ValidTo) {
		t.Fatalf("a refused upload changed ValidTo from %v to %v", d.ValidTo, d2.ValidTo)
	}
	// Asked for, it is done.
	if _, errOut, code = a.run(nil, append(shorter, "--allow-shorter-expiry")...); code != 0 {
		t.Fatalf("--allow-shorter-expiry: exit %d: %s", code, errOut)
	}
	if d2, _ := a.kms.Describe(context.Background(), arn); !d2.ValidTo.Before(*d.ValidTo) {
		t.Fatalf("ValidTo %v not shortened", d2.ValidTo)
	}

	// --insecure-unverified-bundle uploads what it is given (here, the
	// attacker's material into a fresh key) and says so.
	arn2 := a.createKey()
	p2 := filepath.Join(work, "params2.json")
	a.fetch(arn2, "RSAES_OAEP_SHA_1", "RSA_2048", p2)
	pp, _ := wrap.ParseParams(mustRead(t, p2))
	pub2, _ := pp.RSAPublicKey()
	enc2, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub2, other, nil)
	b.KeyARN, b.ImportToken, b.EncryptedKeyMaterial = pp.KeyARN, pp.ImportToken, enc2
	forged2, _ := b.Marshal()
	os.WriteFile(forgedFile, forged2, 0o644)
	stdout, errOut, code = a.run(nil, "upload", "--bundle", forgedFile, "--insecure-unverified-bundle", "--valid-for", "30d")
	if code != 0 || !strings.Contains(stdout, "key material description: keyceremony UNVERIFIED bundle: no transcript checked\n") ||
		firstLine(errOut) != "keyceremony: warning: --insecure-unverified-bundle: the bundle is NOT checked against its ceremony's transcript; KMS will bind the key to whatever material it holds" {
		t.Fatalf("unverified upload: exit %d: %s%s", code, stdout, errOut)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// slowKMS starts another kmslocal whose every answer takes latency, so that
// the binary stays alive long enough to be looked at from outside.
func slowKMS(t *testing.T, latency string) string {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "addr")
	cmd := exec.Command(filepath.Join(binDir, "kmslocal"), "--addr", "127.0.0.1:0", "--ready-file", ready, "--latency", latency)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 400; i++ {
		if b, _ := os.ReadFile(ready); len(b) > 0 {
			return "http://" + strings.TrimSpace(string(b))
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("kmslocal did not start")
	return ""
}

// procWatch records, while the process pid runs, every descendant it
// starts (with its argv and environment) until stop is closed.
type procWatch struct {
	mu   sync.Mutex
	seen map[int]string
}

func watchChildren(pid int, stop <-chan struct{}) *procWatch {
	w := &procWatch{seen: map[int]string{}}
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			stats, _ := filepath.Glob("/proc/[0-9]*/stat")
			for _, st := range stats {
				b, err := os.ReadFile(st)
				if err != nil {
					continue
				}
				f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
				if len(f) < 2 || f[1] != strconv.Itoa(pid) {
					continue
				}
				dir := filepath.Dir(st)
				cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
				environ, _ := os.ReadFile(filepath.Join(dir, "environ"))
				w.mu.Lock()
				w.seen[len(w.seen)] = string(cmdline) + "\x00" + string(environ)
				w.mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

// TestSecretsStayOut runs a ceremony and drills through the real binary
// and looks at them from outside while they run: once read, the PIN and a
// custodian's passphrase are in no argv, no environment block
// (/proc/PID/environ, the process's and every child's), no output; core
// dumps are off; a drill leaves no directory, and one killed mid-way leaves
// none of the recovered keys and is cleaned up by the next drill.
func TestSecretsStayOut(t *testing.T) {
	e := newE2E(t)
	const carolPass = "carol-passphrase-7f3k-never-in-env"
	var recips, ids []string
	for _, name := range []string{"alice", "bob"} {
		id, _ := age.GenerateX25519Identity()
		ids = append(ids, e.config(name+".key", id.String()+"\n"))
		recips = append(recips, id.Recipient().String())
	}
	out := filepath.Join(e.dir, "sec")
	cfg := e.config("sec.yaml", fmt.Sprintf(`
ceremony: {id: sec, operator: tester, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
  - {label: sec-key, create: true, valid_for: 30d}
  - {label: sec-key2, create: true, valid_for: 30d}
  - {label: sec-key3, create: true, valid_for: 30d}
escrow:
  threshold: 2
  custodians:
    - {name: alice, recipient: %s}
    - {name: bob, recipient: %s}
    - {name: carol, passphrase: true, passphrase_env: CAROL_PASS}
`, out, recips[0], recips[1]))
	slow := slowKMS(t, "300ms")
	secrets := []string{"KEYCEREMONY_PIN=" + hsmtest.PIN, carolPass}
	tmp := t.TempDir()
	start := func(extra []string, args ...string) (*exec.Cmd, *bytes.Buffer, io.ReadCloser) {
		cmd := binary(t, "keyceremony", args...)
		cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir, "TMPDIR=" + tmp, "KEYCEREMONY_CONTROL=visible"}, e.env...), extra...)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &stdout, stderr
	}
	env := []string{"KEYCEREMONY_PIN=" + hsmtest.PIN, "CAROL_PASS=" + carolPass, "AWS_ENDPOINT_URL_KMS=" + slow}

	// The ceremony, looked at once it talks to KMS (the PIN and the
	// passphrase are read by then).
	cmd, stdout, stderrPipe := start(env, "run", "--config", cfg)
	stop := make(chan struct{})
	children := watchChildren(cmd.Process.Pid, stop)
	var stderr strings.Builder
	looked := false
	sc := bufio.NewScanner(stderrPipe)
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		if looked || !strings.Contains(sc.Text(), "KMS: endpoint") {
			continue
		}
		looked = true
		dir := fmt.Sprintf("/proc/%d/", cmd.Process.Pid)
		environ, err := os.ReadFile(dir + "environ")
		if err != nil || !strings.Contains(string(environ), "KEYCEREMONY_CONTROL=visible") {
			t.Fatalf("cannot read the process's environment (the control): %v", err)
		}
		cmdline, _ := os.ReadFile(dir + "cmdline")
		for _, s := range secrets {
			if strings.Contains(string(environ), s) || strings.Contains(string(cmdline), s) {
				t.Errorf("%q is still in the running process's environment block or argv", s)
			}
		}
		limits, _ := os.ReadFile(dir + "limits")
		if !regexp.MustCompile(`(?m)^Max core file size\s+0\s+0\s`).Match(limits) {
			t.Errorf("core dumps are not off:\n%s", limits)
		}
	}
	err := cmd.Wait()
	close(stop)
	if err != nil || !looked {
		t.Fatalf("run: %v (looked: %v)\n%s%s", err, looked, stdout, stderr.String())
	}

	// A drill, with the PIN and the passphrase in its environment.
	fp := strings.Fields(strings.SplitN(stdout.String(), "signer fingerprint: ", 2)[1])[0]
	drill := func(outDir string) (*exec.Cmd, *bytes.Buffer, io.ReadCloser) {
		return start([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN, "CAROL_PASS=" + carolPass}, "recover", "--drill", "--escrow", filepath.Join(out, "escrow.json"),
			"--transcript", filepath.Join(out, "transcript.jsonl"), "--fingerprint", fp,
			"--share", filepath.Join(out, "share-1-alice.age"), "--share", filepath.Join(out, "share-2-bob.age"), "--identity", ids[0], "--identity", ids[1], "--out", outDir)
	}
	dcmd, dout, derr := drill(filepath.Join(e.dir, "drill1"))
	stop = make(chan struct{})
	dchildren := watchChildren(dcmd.Process.Pid, stop)
	dstderr, _ := io.ReadAll(derr)
	err = dcmd.Wait()
	close(stop)
	if err != nil || !strings.Contains(dout.String(), "drill PASSED") {
		t.Fatalf("drill: %v\n%s%s", err, dout, dstderr)
	}
	for _, w := range []*procWatch{children, dchildren} {
		w.mu.Lock()
		for _, c := range w.seen {
			for _, s := range secrets {
				if strings.Contains(c, s) {
					t.Errorf("a child process holds %q: %q", s, c)
				}
			}
		}
		w.mu.Unlock()
	}
	for _, s := range append(secrets, hsmtest.PIN) {
		if strings.Contains(stdout.String()+stderr.String()+dout.String()+string(dstderr), s) {
			t.Errorf("the output holds %q", s)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "keyceremony-drill-*")); len(left) != 0 {
		t.Fatalf("a drill left %v", left)
	}

	// A drill killed right after it recorded a recovered key leaves at
	// most the scratch signing key, never the recovered key; the next
	// drill removes what it left.
	var stale, killedOut string
	for try := 0; try < 20 && stale == ""; try++ {
		killedOut = filepath.Join(e.dir, fmt.Sprintf("killed%d", try))
		kcmd, _, kerr := drill(killedOut)
		go io.Copy(io.Discard, kerr)
		for i := 0; i < 5000; i++ {
			if b, _ := os.ReadFile(filepath.Join(killedOut, "transcript.jsonl")); bytes.Contains(b, []byte(`"step":"recover-key"`)) {
				_ = kcmd.Process.Signal(syscall.SIGKILL)
				break
			}
			time.Sleep(time.Millisecond)
		}
		_ = kcmd.Wait()
		if m, _ := filepath.Glob(filepath.Join(tmp, "keyceremony-drill-*")); len(m) > 0 {
			stale = m[0]
		}
	}
	if stale == "" {
		t.Fatal("no drill was killed after recovering a key")
	}
	if st, err := os.Stat(stale); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("scratch directory %s: %v %v", stale, st.Mode(), err)
	}
	// Each key the transcript shows recovered was on the token before its
	// event; the scratch signing key (at most 2 objects) comes after the
	// last of the 3 keys. Fewer objects than recorded keys: none of them
	// reached the token's files.
	recorded := bytes.Count(mustRead(t, filepath.Join(killedOut, "transcript.jsonl")), []byte(`"step":"recover-key"`))
	if n := objectFiles(t, stale); n >= recorded {
		t.Errorf("the killed drill recorded %d recovered keys and its token store holds %d objects: recovered keys reached its files", recorded, n)
	}
	dcmd, dout, derr = drill(filepath.Join(e.dir, "drill2"))
	dstderr, _ = io.ReadAll(derr)
	if err := dcmd.Wait(); err != nil || !strings.Contains(string(dstderr), "removed the scratch directory of a drill that did not finish: "+stale+"\n") {
		t.Fatalf("next drill: %v\n%s%s", err, dout, dstderr)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "keyceremony-drill-*")); len(left) != 0 {
		t.Fatalf("after the next drill: %v", left)
	}
}

// objectFiles counts the SoftHSM files of key objects under dir (not the
// token's own token.object).
func objectFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && filepath.Ext(p) == ".object" && filepath.Base(p) != "token.object" {
			n++
		}
		return nil
	})
	return n
}

// TestURIWithPIN: a PKCS#11 URI carrying a PIN (as a path or a query
// attribute, in a config or on the command line) is refused with one line
// that does not repeat it, and nothing is created.
func TestURIWithPIN(t *testing.T) {
	e := newE2E(t)
	const pinValue = "S3CR3TPIN77"
	for i, uri := range []string{
		"pkcs11:token=ceremony;pin-value=" + pinValue,
		"pkcs11:token=ceremony?pin-value=" + pinValue,
		"pkcs11:token=ceremony;pin-value" + pinValue,
		"pkcs11:token=ceremony;pin%2Dvalue=" + pinValue,
		pinValue + ":token=ceremony",
	} {
		cfg := e.config(fmt.Sprintf("uri%d.yaml", i), strings.Replace(strings.Replace(fmt.Sprintf(ceremonyYAML, fmt.Sprintf("uri%d", i)),
			"  label: ceremony\n", "  uri: \""+uri+"\"\n", 1), "threshold: 1\n", "threshold: 1\n  allow_single_custodian: true\n", 1))
		for _, args := range [][]string{
			{"run", "--config", cfg},
			{"recover", "--escrow", cfg, "--share", cfg, "--token-uri", uri, "--out", filepath.Join(e.dir, fmt.Sprintf("uri%d", i)), "--transcript", cfg, "--insecure-unpinned"},
		} {
			stdout, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, args...)
			if code != 1 && code != 2 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "keyceremony: error: ") {
				t.Errorf("%s %q: exit %d, want one error line:\n%s%s", args[0], uri, code, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, pinValue) {
				t.Errorf("%s %q: the output repeats the PIN: %s%s", args[0], uri, stdout, stderr)
			}
			if _, err := os.Stat(filepath.Join(e.dir, fmt.Sprintf("uri%d", i))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s %q: created its output directory", args[0], uri)
			}
		}
	}
	// As a path or a query attribute, exactly.
	for _, sep := range []string{";", "?"} {
		cfg := e.config("q.yaml", strings.Replace(fmt.Sprintf(ceremonyYAML, "q"), "  label: ceremony\n", "  uri: \"pkcs11:token=ceremony"+sep+"pin-value="+pinValue+"\"\n", 1))
		_, stderr, code := e.run(nil, "run", "--config", cfg)
		if want := "keyceremony: error: " + cfg + ": token.uri: pkcs11 URI contains pin-value: never put a PIN in a URI; use a PIN file, the PIN environment variable or the prompt\n"; code != 1 || stderr != want {
			t.Errorf("exit %d\ngot:  %swant: %s", code, stderr, want)
		}
	}
}

// TestWrapPinRecorded: wrap's transcript says whether the wrapping key was
// pinned; without a pin it goes ahead only with the loudly named flag,
// warns, and records who allowed it.
func TestWrapPinRecorded(t *testing.T) {
	a := newAirgap(t)
	work := t.TempDir()
	a.tokenKey("wp")
	arn := a.createKey()
	params := filepath.Join(work, "params.json")
	pinHash := a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", params)
	for _, c := range []struct {
		name  string
		flags []string
		want  map[string]any
	}{
		{"pinned", []string{"--wrapping-key-sha256", pinHash}, map[string]any{"wrapping_key_pinned": true, "unpinned_allowed_by": nil}},
		{"unpinned", []string{"--insecure-unpinned-wrapping-key"}, map[string]any{"wrapping_key_pinned": false, "unpinned_allowed_by": "--insecure-unpinned-wrapping-key"}},
	} {
		out := filepath.Join(work, c.name)
		stdout, stderr, code := a.offline(pin, append([]string{"wrap", "--params", params, "--key", "wp", "--token", "ceremony", "--out-dir", out}, c.flags...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s%s", c.name, code, stdout, stderr)
		}
		warning := "keyceremony: warning: the wrapping key (sha256 " + pinHash + ") is NOT pinned (--insecure-unpinned-wrapping-key): compare it with what params fetch printed\n"
		if strings.Contains(stderr, warning) != (c.name == "unpinned") {
			t.Errorf("%s: warning shown: %v\n%s", c.name, !strings.Contains(stderr, warning), stderr)
		}
		ev := event(t, filepath.Join(out, "transcript.jsonl"), "params")
		for k, v := range c.want {
			if ev[k] != v {
				t.Errorf("%s: params event %s = %v, want %v", c.name, k, ev[k], v)
			}
		}
	}
}
