package main_test

import (
	"bytes"
	"crypto/aes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/miekg/pkcs11"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/internal/kmslocal"
)

// The crash tests kill the real binary (built with -tags crashtest, see
// transcripts/crashtest.go) with SIGKILL at chosen moments of a 3-key
// ceremony with a 2-of-3 escrow, run the same command again, and check the
// evidence from outside: verify --files, every share with verify-share, the
// drill, the token (one key per label), KMS (one key per label, none
// orphaned, nothing imported before the escrow) and one key check value per
// key everywhere.
//
// A kill point is either a transcript line count (the process kills itself
// once the transcript holds that many lines) or a KMS request (the loopback
// KMS, in this process, kills the binary just before handling it or just
// after handling it, before the answer goes out).

// killPoint says where to kill one run.
type killPoint struct {
	line    int           // kill once the transcript holds this many lines; -1: no line kill
	request int           // kill at this KMS request (0-based); -1: none
	after   bool          // at request: after KMS handled it (else before)
	delay   time.Duration // > 0: kill after this long, whatever is happening
	tear    int           // > 0: write half of this line (1: the header; tearSeal: the seal), then kill
	// op, when set, kills at the nth (from 1) request of that KMS
	// operation instead, before or after it (after).
	op   string
	nth  int
	name string
}

func (p killPoint) String() string { return p.name }

func lineKill(n int) killPoint {
	return killPoint{line: n, request: -1, name: fmt.Sprintf("line %d", n)}
}

func requestKill(i int, op string, after bool) killPoint {
	w := "before"
	if after {
		w = "after"
	}
	return killPoint{line: -1, request: i, after: after, name: fmt.Sprintf("%s %s (request %d)", w, op, i)}
}

func opKill(op string, nth int, after bool) killPoint {
	w := "before"
	if after {
		w = "after"
	}
	return killPoint{line: -1, request: -1, op: op, nth: nth, after: after, name: fmt.Sprintf("%s %s #%d", w, op, nth)}
}

// tearSeal is killPoint.tear for the seal line, whatever its number.
const tearSeal = 1 << 30

func tearKill(n int) killPoint {
	if n == tearSeal {
		return killPoint{line: -1, request: -1, tear: n, name: "torn seal line"}
	}
	return killPoint{line: -1, request: -1, tear: n, name: fmt.Sprintf("torn line %d", n)}
}

func timeKill(d time.Duration) killPoint {
	return killPoint{line: -1, request: -1, delay: d, name: fmt.Sprintf("after %v", d.Round(time.Millisecond))}
}

// kmsTap is the loopback KMS of one crash case: kmslocal with a state file
// (so the test can read the material it holds), counting requests, and
// killing the ceremony at the armed request.
type kmsTap struct {
	srv   *kmslocal.Server
	state string
	// transcript is checked at every ImportKeyMaterial: the escrow must be
	// recorded before any material reaches KMS.
	transcript string

	mu      sync.Mutex
	n       int
	ops     []string
	killAt  int
	killOp  string
	killOpN int
	// failOp, when set, answers its failOpN-th request with a
	// non-retryable KMS error instead of handling it (the run goes on).
	failOp   string
	failOpN  int
	opCount  map[string]int
	after    bool
	victim   *os.Process
	exited   chan struct{}
	problems []string
	// encrypted holds every ciphertext KMS returned, with its plaintext:
	// check decrypts them all at the end (old ciphertexts must decrypt).
	encrypted []ciphertext
	// imports are the ImportKeyMaterial requests KMS took.
	imports []imported
}

// imported is one ImportKeyMaterial KMS took: the key and the import type
// asked ("" for KMS's default, a key's first material).
type imported struct{ key, typ string }

// ciphertext is one Encrypt that KMS answered.
type ciphertext struct {
	key           string
	plain, sealed []byte
}

func (k *kmsTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	k.mu.Lock()
	i := k.n
	k.n++
	k.ops = append(k.ops, op)
	k.opCount[op]++
	hit := i == k.killAt || k.killOp == op && k.opCount[op] == k.killOpN
	fail := k.failOp == op && k.opCount[op] == k.failOpN
	after, victim, exited := k.after, k.victim, k.exited
	k.mu.Unlock()
	if op == "ImportKeyMaterial" {
		data, _ := os.ReadFile(k.transcript)
		if !bytes.Contains(data, []byte(`"step":"escrow"`)) {
			k.mu.Lock()
			k.problems = append(k.problems, "ImportKeyMaterial before the transcript records the escrow")
			k.mu.Unlock()
		}
	}
	if fail {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"KMSInvalidStateException","message":"injected by the test"}`)
		return
	}
	kill := func() {
		if victim != nil {
			_ = victim.Kill()
			<-exited
		}
	}
	if hit && !after {
		kill()
		http.Error(w, "killed", http.StatusServiceUnavailable)
		return
	}
	var body []byte
	if op == "Encrypt" || op == "ImportKeyMaterial" {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec := httptest.NewRecorder()
	k.srv.ServeHTTP(rec, r)
	if op == "ImportKeyMaterial" && rec.Code == http.StatusOK {
		var in struct{ KeyId, ImportType string }
		_ = json.Unmarshal(body, &in)
		k.mu.Lock()
		k.imports = append(k.imports, imported{in.KeyId, in.ImportType})
		k.mu.Unlock()
	}
	if op == "Encrypt" && rec.Code == http.StatusOK {
		var in struct {
			KeyId     string
			Plaintext []byte
		}
		var out struct{ CiphertextBlob []byte }
		if json.Unmarshal(body, &in) == nil && json.Unmarshal(rec.Body.Bytes(), &out) == nil {
			k.mu.Lock()
			k.encrypted = append(k.encrypted, ciphertext{in.KeyId, in.Plaintext, out.CiphertextBlob})
			k.mu.Unlock()
		}
	}
	if hit {
		// Handled: kill the ceremony, and only then let the answer go.
		kill()
		w.WriteHeader(rec.Code)
		return
	}
	for h, v := range rec.Header() {
		w.Header()[h] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// call sends KMS one request from the test itself (not counted, never
// killing anything) and decodes its answer into out.
func (k *kmsTap) call(op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("X-Amz-Target", "TrentService."+op)
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=00")
	rec := httptest.NewRecorder()
	k.srv.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		return fmt.Errorf("%s: %d %s", op, rec.Code, rec.Body.Bytes())
	}
	return json.Unmarshal(rec.Body.Bytes(), out)
}

// decryptAll asks KMS to decrypt every ciphertext it returned to the
// ceremony's runs, killed or not, and returns the first failure.
func (k *kmsTap) decryptAll() error {
	k.mu.Lock()
	cts := slices.Clone(k.encrypted)
	k.mu.Unlock()
	for _, ct := range cts {
		var out struct{ Plaintext []byte }
		if err := k.call("Decrypt", map[string]any{"CiphertextBlob": ct.sealed}, &out); err != nil || !bytes.Equal(out.Plaintext, ct.plain) {
			return fmt.Errorf("a ciphertext of KMS key %s made during the ceremony no longer decrypts: %v", ct.key, err)
		}
	}
	if len(cts) == 0 {
		return errors.New("no Encrypt reached KMS: the ceremony never checked a key")
	}
	return nil
}

// crashCase is one ceremony killed and resumed: its own token, KMS and
// out_dir.
type crashCase struct {
	t      *testing.T
	name   string
	dir    string
	out    string
	cfg    string
	token  string
	env    []string
	kms    *kmsTap
	ids    []string // custodian identity files
	labels []string
	kills  int // runs killed (a kill point past the run's end kills none)
}

// crashCustodians are the escrow's three custodians (any two recover),
// made once per test run.
type crashCustodians struct {
	names, recipients, idFiles []string
}

func newCrashCustodians(t *testing.T) *crashCustodians {
	dir := t.TempDir()
	c := &crashCustodians{names: []string{"alice", "bob", "carol"}}
	for _, n := range c.names {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, n+".key")
		if err := os.WriteFile(p, []byte(id.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.recipients = append(c.recipients, id.Recipient().String())
		c.idFiles = append(c.idFiles, p)
	}
	return c
}

// crashShape is the ceremony a crash test kills: how many keys, how many
// the online steps work on at once (kms.parallel), and the loopback KMS's
// latency (so that concurrent requests overlap).
type crashShape struct {
	keys     int
	parallel int
	latency  time.Duration
	// tokenParallel is token.parallel (keys generated at once, each in a
	// session of its own); 0 leaves the default.
	tokenParallel int
}

// serialShape is the 3-key ceremony one key at a time, on the token and
// in KMS: a crash point is a transcript line, no other key's request in
// flight.
var serialShape = crashShape{keys: 3, parallel: 1, tokenParallel: 1}

// parallelShape is a 6-key ceremony whose keys are generated at once (the
// default token.parallel) and whose online steps work on 3 keys at once,
// each KMS request taking 30 ms: kills land while other keys' generation
// or requests are in flight and while a group commit signs for several.
var parallelShape = crashShape{keys: 6, parallel: 3, latency: 30 * time.Millisecond}

func (sh crashShape) String() string {
	tp := "default"
	if sh.tokenParallel > 0 {
		tp = fmt.Sprint(sh.tokenParallel)
	}
	return fmt.Sprintf("%d keys, token.parallel %s, kms.parallel %d, KMS latency %v", sh.keys, tp, sh.parallel, sh.latency)
}

// labels are the shape's key labels, the first three as they always were.
func (sh crashShape) labels() []string {
	out := []string{"payments", "archive", "reports"}
	for i := 4; i <= sh.keys; i++ {
		out = append(out, fmt.Sprintf("key-%d", i))
	}
	return out[:sh.keys]
}

// config is the ceremony's YAML: the keys' expiries take turns (valid_for,
// does_not_expire, valid_to), with a 2-of-3 escrow.
func (sh crashShape) config(name string, cu *crashCustodians) string {
	validTo := time.Now().Add(200 * 24 * time.Hour).UTC().Format("2006-01-02T15:04:05Z")
	var b strings.Builder
	fmt.Fprintf(&b, "ceremony:\n  id: %s\n  operator: tester\n  out_dir: out\ntoken:\n  label: %s\n", name, name)
	if sh.tokenParallel > 0 {
		fmt.Fprintf(&b, "  parallel: %d\n", sh.tokenParallel)
	}
	fmt.Fprintf(&b, "kms:\n  wrapping_algorithm: RSAES_OAEP_SHA_1\n  wrapping_key_spec: RSA_2048\n  parallel: %d\nkeys:\n", sh.parallel)
	for i, l := range sh.labels() {
		expiry := []string{"valid_for: 30d", "does_not_expire: true", "valid_to: " + validTo}[i%3]
		fmt.Fprintf(&b, "  - label: %s\n    create: true\n    %s\n", l, expiry)
	}
	b.WriteString("escrow:\n  threshold: 2\n  custodians:\n")
	for i, n := range cu.names {
		fmt.Fprintf(&b, "    - {name: %s, recipient: %s}\n", n, cu.recipients[i])
	}
	return b.String()
}

// newCrashCase makes a fresh token (in the test's SoftHSM store), a fresh
// loopback KMS and a config in a new directory, for the serial shape.
func newCrashCase(t *testing.T, conf string, cu *crashCustodians, n int) *crashCase {
	return newShapedCase(t, conf, cu, n, serialShape)
}

// newShapedCase is newCrashCase for a ceremony of shape sh.
func newShapedCase(t *testing.T, conf string, cu *crashCustodians, n int, sh crashShape) *crashCase {
	dir := t.TempDir()
	name := fmt.Sprintf("crash-%03d", n)
	if err := hsmtest.InitToken(conf, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd := exec.Command("softhsm2-util", "--delete-token", "--token", name)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		_ = cmd.Run()
	})
	c := &crashCase{t: t, name: name, dir: dir, out: filepath.Join(dir, "out"), token: name, ids: cu.idFiles,
		labels: sh.labels()}
	c.cfg = filepath.Join(dir, "ceremony.yaml")
	if err := os.WriteFile(c.cfg, []byte(sh.config(name, cu)), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "kms-state.json")
	srv, err := kmslocal.Open(kmslocal.Options{StateFile: state, PoolSize: -1, Latency: sh.latency})
	if err != nil {
		t.Fatal(err)
	}
	c.kms = &kmsTap{srv: srv, state: state, transcript: filepath.Join(c.out, "transcript.jsonl"), killAt: -1, opCount: map[string]int{}}
	hs := httptest.NewServer(c.kms)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	c.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"SOFTHSM2_CONF=" + conf,
		"KEYCEREMONY_PIN=" + hsmtest.PIN,
		"AWS_ENDPOINT_URL_KMS=" + hs.URL,
		"AWS_REGION=eu-west-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
	}
	return c
}

// runResult is how one run of the binary ended.
type runResult struct {
	code   int
	killed bool
	stderr string
}

// run runs the ceremony (the crashtest binary) once, killing it at p.
func (c *crashCase) run(p killPoint) runResult {
	return c.runArgs(p, "run", "--config", c.cfg)
}

// runArgs runs the crashtest binary with args once, killing it at p; its
// stdout and stderr both go to runResult.stderr.
func (c *crashCase) runArgs(p killPoint, args ...string) runResult {
	cmd := binary(c.t, "keyceremony-crashtest", args...)
	cmd.Dir = c.dir
	cmd.Env = slices.Clone(c.env)
	if p.line >= 0 {
		cmd.Env = append(cmd.Env, "KEYCEREMONY_CRASHTEST_KILL_AT_LINE="+strconv.Itoa(p.line))
	}
	if p.tear == tearSeal {
		cmd.Env = append(cmd.Env, "KEYCEREMONY_CRASHTEST_TEAR_LINE=seal")
	} else if p.tear > 0 {
		cmd.Env = append(cmd.Env, "KEYCEREMONY_CRASHTEST_TEAR_LINE="+strconv.Itoa(p.tear))
	}
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	exited := make(chan struct{})
	c.kms.mu.Lock()
	c.kms.killAt, c.kms.after, c.kms.exited, c.kms.victim = p.request, p.after, exited, nil
	c.kms.killOp, c.kms.killOpN, c.kms.opCount = p.op, p.nth, map[string]int{}
	c.kms.n = 0
	if err := cmd.Start(); err != nil {
		c.kms.mu.Unlock()
		c.t.Fatal(err)
	}
	c.kms.victim = cmd.Process
	c.kms.mu.Unlock()
	var timer *time.Timer
	if p.delay > 0 {
		timer = time.AfterFunc(p.delay, func() { _ = cmd.Process.Kill() })
	}
	err := cmd.Wait()
	close(exited)
	if timer != nil {
		timer.Stop()
	}
	c.kms.mu.Lock()
	c.kms.killAt, c.kms.killOp, c.kms.victim = -1, "", nil
	c.kms.mu.Unlock()
	res := runResult{stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			res.killed = true
		}
	} else if err != nil {
		c.t.Fatal(err)
	}
	return res
}

// keyceremony runs the ordinary binary and returns its error line, or "".
func (c *crashCase) keyceremony(args ...string) error {
	cmd := binary(c.t, "keyceremony", args...)
	cmd.Dir = c.dir
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("keyceremony %s: %v: %s", args[0], err, firstErrorLine(string(out)))
	}
	return nil
}

func firstErrorLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "keyceremony: error: ") {
			return l
		}
	}
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// check checks the evidence a finished ceremony left, from outside. It
// returns the first problem found.
func (c *crashCase) check() error {
	tr := filepath.Join(c.out, "transcript.jsonl")
	pub := filepath.Join(c.out, "signing-key.pem")
	if err := c.keyceremony("verify", "--pubkey", pub, "--files", c.out, tr); err != nil {
		return err
	}
	names := []string{"alice", "bob", "carol"}
	for i, n := range names {
		share := filepath.Join(c.out, fmt.Sprintf("share-%d-%s.age", i+1, n))
		if err := c.keyceremony("escrow", "verify-share", "--share", share, "--identity", c.ids[i], "--transcript", tr, "--pubkey", pub); err != nil {
			return fmt.Errorf("share of %s: %w", n, err)
		}
	}
	drill := filepath.Join(c.dir, "drill")
	if err := c.keyceremony("recover", "--drill", "--escrow", filepath.Join(c.out, "escrow.json"),
		"--share", filepath.Join(c.out, "share-1-alice.age"), "--share", filepath.Join(c.out, "share-3-carol.age"),
		"--identity", c.ids[0], "--identity", c.ids[2], "--transcript", tr, "--pubkey", pub, "--out", drill); err != nil {
		return err
	}
	c.kms.mu.Lock()
	problems := slices.Clone(c.kms.problems)
	c.kms.mu.Unlock()
	if len(problems) > 0 {
		return errors.New(problems[0])
	}
	tokenKCV, err := c.tokenKCVs()
	if err != nil {
		return err
	}
	if err := c.checkKMS(tr, tokenKCV); err != nil {
		return err
	}
	if err := c.kms.decryptAll(); err != nil {
		return err
	}
	// One key check value per key everywhere: the ceremony's transcript,
	// the drill's, the bundles and the escrow blob; and every key in the
	// escrow and recovered by the drill.
	files := []string{filepath.Join(c.out, "escrow.json"), filepath.Join(drill, "transcript.jsonl"), tr}
	for _, l := range c.labels {
		files = append(files, filepath.Join(c.out, "bundle-"+l+".json"))
	}
	for i, f := range files {
		seen, err := checkKCVs(f, tokenKCV)
		if err != nil {
			return err
		}
		for _, l := range c.labels {
			if i < 2 && !seen[l] {
				return fmt.Errorf("%s does not name key %s with its check value", f, l)
			}
		}
	}
	return nil
}

// tokenKCVs checks the token holds exactly one AES key per label and
// returns their check values.
func (c *crashCase) tokenKCVs() (map[string]string, error) {
	tok, err := hsm.Open(hsm.Config{TokenLabel: c.token, PIN: []byte(hsmtest.PIN)})
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	out := map[string]string{}
	for _, l := range c.labels {
		k, err := tok.FindAESKey(l, nil) // fails on none and on several
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		kcv, err := tok.CheckValue(k)
		if err != nil {
			return nil, err
		}
		out[l] = hex.EncodeToString(kcv)
	}
	tok.Close()
	// And no other secret key: none made and left unrecorded. A key
	// generation cut short by a kill can leave an object with no label and
	// no id (SoftHSM writes it in steps): the last run must have told the
	// operator of each left, in its open-token event.
	all, err := tokenSecretKeys(c.token)
	if err != nil {
		return nil, err
	}
	unnamed := slices.DeleteFunc(slices.Clone(all), func(k string) bool { return k != `"" (id )` })
	if len(all)-len(unnamed) != len(c.labels) {
		return nil, fmt.Errorf("token %s holds %d secret keys, the ceremony made %d: %s", c.token, len(all), len(c.labels), strings.Join(all, ", "))
	}
	if told := c.toldUnnamed(); len(unnamed) > told {
		return nil, fmt.Errorf("token %s holds %d secret keys with no label and no id, the last open-token event records %d", c.token, len(unnamed), told)
	}
	return out, nil
}

// toldUnnamed is the unnamed_secret_keys of the ceremony's last open-token
// event: how many keys with no label and no id the operator was told of.
func (c *crashCase) toldUnnamed() int {
	told := 0
	lines, _ := transcriptLines(filepath.Join(c.out, "transcript.jsonl"))
	for _, l := range lines {
		if d, _ := l["data"].(map[string]any); l["step"] == "open-token" {
			n, _ := d["unnamed_secret_keys"].(float64)
			told = int(n)
		}
	}
	return told
}

// tokenSecretKeys lists every secret key on the token (label and CKA_ID),
// through PKCS#11 itself.
func tokenSecretKeys(token string) ([]string, error) {
	var out []string
	err := tokenSession(token, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		if err := p.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY)}); err != nil {
			return err
		}
		hs, _, err := p.FindObjects(sh, 1000)
		_ = p.FindObjectsFinal(sh)
		if err != nil {
			return err
		}
		for _, h := range hs {
			a, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("%q (id %x)", a[0].Value, a[1].Value))
		}
		return nil
	})
	return out, err
}

// tokenDebris puts on the token a secret key with no label and no id.
func tokenDebris(token string) error {
	return tokenSession(token, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		_, err := p.CreateObject(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, make([]byte, 32)),
		})
		return err
	})
}

// tokenSession runs f in a read-write session logged in to the token,
// through PKCS#11 itself (not package hsm).
func tokenSession(token string, f func(*pkcs11.Ctx, pkcs11.SessionHandle) error) error {
	p := pkcs11.New(hsmtest.Module)
	if p == nil {
		return fmt.Errorf("cannot load %s", hsmtest.Module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return err
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return err
	}
	for _, slot := range slots {
		if ti, err := p.GetTokenInfo(slot); err != nil || strings.TrimRight(ti.Label, " ") != token {
			continue
		}
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return err
		}
		defer p.CloseSession(sh)
		if err := p.Login(sh, pkcs11.CKU_USER, hsmtest.PIN); err != nil {
			return err
		}
		return f(p, sh)
	}
	return fmt.Errorf("no token %q", token)
}

// kmsStateKey is what the test reads of a kmslocal state file's key.
type kmsStateKey struct {
	ID              string            `json:"id"`
	Enabled         bool              `json:"enabled"`
	Material        []byte            `json:"material"`
	ExpirationModel string            `json:"expirationModel"`
	ValidTo         *time.Time        `json:"validTo"`
	Previous        []kmsMaterial     `json:"previousMaterial"`
	Pending         *kmsMaterial      `json:"pendingMaterial"`
	Rotations       int               `json:"onDemandRotations"`
	DeletionDate    *time.Time        `json:"deletionDate"`
	Tags            map[string]string `json:"tags"`
}

// kmsMaterial is what the test reads of a key's earlier or pending
// material in a kmslocal state file.
type kmsMaterial struct {
	Material []byte `json:"material"`
}

// checkKMS checks KMS holds exactly one key per label, each named by the
// transcript, holding the token key's material, and no other key.
func (c *crashCase) checkKMS(tr string, tokenKCV map[string]string) error {
	data, err := os.ReadFile(c.kms.state)
	if err != nil {
		return err
	}
	var st struct {
		Keys []kmsStateKey `json:"keys"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	arns := map[string]string{}            // key ID -> label, from the transcript
	imports := map[string]map[string]any{} // label -> its last import event's data
	lines, err := transcriptLines(tr)
	if err != nil {
		return err
	}
	for _, l := range lines {
		d, _ := l["data"].(map[string]any)
		label, _ := d["label"].(string)
		switch l["step"] {
		case "kms-key":
			arn, _ := d["kms_key_arn"].(string)
			arns[arn[strings.LastIndexByte(arn, '/')+1:]] = label
		case "import":
			imports[label] = d
		}
	}
	if len(st.Keys) != len(c.labels) {
		var ids []string
		for _, k := range st.Keys {
			ids = append(ids, k.ID+"("+arns[k.ID]+")")
		}
		return fmt.Errorf("KMS holds %d keys, want %d: %s (orphans have no label)", len(st.Keys), len(c.labels), strings.Join(ids, ", "))
	}
	seen := map[string]bool{}
	for _, k := range st.Keys {
		label := arns[k.ID]
		if label == "" {
			return fmt.Errorf("KMS key %s is not named by the transcript: an orphan", k.ID)
		}
		if seen[label] {
			return fmt.Errorf("KMS holds two keys for %s", label)
		}
		seen[label] = true
		if k.Material == nil {
			return fmt.Errorf("KMS key %s (%s) has no material", k.ID, label)
		}
		// Found by tag too: the tags a resume looks for.
		if k.Tags["keyceremony:ceremony-id"] != c.name || k.Tags["keyceremony:label"] != label || len(k.Tags["keyceremony:nonce"]) != 32 {
			return fmt.Errorf("KMS key %s (%s) has tags %v, want the ceremony ID, the label and a nonce", k.ID, label, k.Tags)
		}
		if got := kcv(k.Material); got != tokenKCV[label] {
			return fmt.Errorf("KMS key %s (%s) holds material with check value %s, the token key has %s", k.ID, label, got, tokenKCV[label])
		}
		// Imported once as new material: no rotation, nothing pending.
		if len(k.Previous) > 0 || k.Pending != nil || k.Rotations != 0 {
			return fmt.Errorf("KMS key %s (%s) holds more than one material: %d previous, pending %v, %d rotations", k.ID, label, len(k.Previous), k.Pending != nil, k.Rotations)
		}
		if !k.Enabled || k.DeletionDate != nil {
			return fmt.Errorf("KMS key %s (%s) is not Enabled (enabled %v, deletion date %v)", k.ID, label, k.Enabled, k.DeletionDate)
		}
		// The expiry KMS holds is the one the transcript's import records.
		imp := imports[label]
		if imp == nil {
			return fmt.Errorf("the transcript records no import of %s", label)
		}
		model, _ := imp["expiration_model"].(string)
		vt, _ := imp["valid_to"].(string)
		var want, got time.Time
		if vt != "" {
			want, _ = time.Parse(time.RFC3339Nano, vt)
		}
		if k.ValidTo != nil {
			got = *k.ValidTo
		}
		if model != k.ExpirationModel || !want.Equal(got) || vt != "" && want.IsZero() {
			return fmt.Errorf("KMS key %s (%s) has expiry %s %v, the transcript's import records %s %s", k.ID, label, k.ExpirationModel, got, model, vt)
		}
	}
	return nil
}

func kcv(material []byte) string {
	b, _ := aes.NewCipher(material)
	var out [16]byte
	b.Encrypt(out[:], make([]byte, 16))
	return hex.EncodeToString(out[:3])
}

func transcriptLines(path string) ([]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// checkKCVs checks every object in a JSON (or JSON lines) file that names a
// key (label or key_label) and a key check value names that key's one check
// value, and returns the labels it found so.
func checkKCVs(path string, want map[string]string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var walk func(v any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case map[string]any:
			kcv, _ := v["key_check_value"].(string)
			label, _ := v["label"].(string)
			if kcv != "" && label != "" && want[label] != "" && !strings.EqualFold(kcv, want[label]) {
				return fmt.Errorf("%s names check value %s for key %s, the token key's is %s", filepath.Base(path), kcv, label, want[label])
			}
			if kcv != "" && label != "" {
				seen[label] = true
			}
			for _, x := range v {
				if err := walk(x); err != nil {
					return err
				}
			}
		case []any:
			for _, x := range v {
				if err := walk(x); err != nil {
					return err
				}
			}
		}
		return nil
	}
	found := false
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte{'\n'}) {
		var v any
		if json.Unmarshal(l, &v) != nil {
			// A bundle or the escrow blob is one indented document.
			if err := json.Unmarshal(data, &v); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if strings.HasPrefix(filepath.Base(path), "bundle-") {
				// A bundle names its key by file name.
				m, _ := v.(map[string]any)
				label := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "bundle-"), ".json")
				if m != nil && m["key_check_value"] != nil {
					m["label"] = label
				}
			}
			return seen, walk(v)
		}
		if err := walk(v); err != nil {
			return nil, err
		}
		found = true
	}
	if !found {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return seen, nil
}

// crashPoint kills a ceremony at each point in turn (the resume of a
// killed run is killed at the next point), then resumes it with the same
// command and checks the evidence. It returns "" when everything holds.
func crashPoint(t *testing.T, conf string, cu *crashCustodians, n int, points ...killPoint) string {
	msg, _ := crashCasePoint(t, conf, cu, n, points...)
	return msg
}

// crashCasePoint is crashPoint, returning the case too.
func crashCasePoint(t *testing.T, conf string, cu *crashCustodians, n int, points ...killPoint) (string, *crashCase) {
	c := newCrashCase(t, conf, cu, n)
	msg := c.killAndResume(points)
	return msg, c
}

func (c *crashCase) killAndResume(points []killPoint) string {
	tornAt := 0
	for i, p := range points {
		r := c.run(p)
		if !r.killed {
			if r.code != 0 {
				return fmt.Sprintf("run %d (to be killed at %s) exited %d: %s", i+1, p, r.code, firstErrorLine(r.stderr))
			}
			return c.checkMsg() // finished before the kill point
		}
		c.kills++
		if p.tear > 0 && tornAt == 0 {
			tornAt = p.tear
		}
	}
	r := c.run(killPoint{line: -1, request: -1})
	if r.code != 0 || r.killed {
		return fmt.Sprintf("resume exited %d: %s", r.code, firstErrorLine(r.stderr))
	}
	if tornAt > 0 {
		if err := c.checkTorn(tornAt); err != nil {
			return err.Error()
		}
	}
	return c.checkMsg()
}

// checkTorn checks the resume after a kill in the middle of writing line n
// did what the README says: a torn header (nothing changed yet) is moved
// aside as unrecorded-1-transcript.jsonl and the ceremony starts over; a
// torn later line is cut and recorded in a torn-line event.
func (c *crashCase) checkTorn(n int) error {
	lines, err := transcriptLines(filepath.Join(c.out, "transcript.jsonl"))
	if err != nil {
		return err
	}
	for _, l := range lines {
		d, _ := l["data"].(map[string]any)
		switch {
		case n == 1 && l["step"] == "set-aside" && d["name"] == "transcript.jsonl" && d["moved_to"] == "unrecorded-1-transcript.jsonl":
			aside, err := os.ReadFile(filepath.Join(c.out, "unrecorded-1-transcript.jsonl"))
			if err != nil || !bytes.HasPrefix(aside, []byte(`{"type":"header"`)) || bytes.Contains(aside, []byte("\n")) {
				return fmt.Errorf("the torn header was not kept as unrecorded-1-transcript.jsonl: %q %v", aside, err)
			}
			return nil
		case n > 1 && l["step"] == "torn-line":
			return nil
		}
	}
	if n == 1 {
		return errors.New("killed while writing the header: the resume did not record moving the torn transcript aside")
	}
	return fmt.Errorf("killed while writing line %d: the resume recorded no torn-line event", n)
}

func (c *crashCase) checkMsg() string {
	if err := c.check(); err != nil {
		return err.Error()
	}
	return ""
}

// crashEnv sets up what every crash test needs: SoftHSM, custodians, and a
// clean run to count the transcript lines and KMS requests of a ceremony.
func crashEnv(t *testing.T) (conf string, cu *crashCustodians, lines int, ops []string, took time.Duration) {
	e := newSweepEnv(t, serialShape)
	return e.conf, e.cu, e.lines, e.ops, e.took
}

// sweepEnv is a crash sweep's SoftHSM store, custodians, and what a clean
// run of its shape of ceremony did.
type sweepEnv struct {
	t     *testing.T
	shape crashShape
	conf  string
	cu    *crashCustodians
	lines int              // transcript lines of a clean run
	clean []map[string]any // and the lines themselves
	ops   []string         // its KMS requests, in the order they came
	took  time.Duration    // how long it ran
	next  int              // the next case's number (its token's name)
	kills int              // runs killed so far
}

// crashStore makes the test's SoftHSM store (its SOFTHSM2_CONF) and the
// escrow's custodians.
func crashStore(t *testing.T) (conf string, cu *crashCustodians) {
	hsmtest.Require(t)
	conf, err := hsmtest.SetupDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	return conf, newCrashCustodians(t)
}

func newSweepEnv(t *testing.T, sh crashShape) *sweepEnv {
	conf, cu := crashStore(t)
	e := &sweepEnv{t: t, shape: sh, conf: conf, cu: cu, next: 1}
	c := newShapedCase(t, conf, e.cu, 0, sh)
	start := time.Now()
	r := c.run(killPoint{line: -1, request: -1})
	e.took = time.Since(start)
	if r.code != 0 {
		t.Fatalf("clean run exited %d:\n%s", r.code, r.stderr)
	}
	if err := c.check(); err != nil {
		t.Fatalf("clean run: %v", err)
	}
	tl, err := transcriptLines(filepath.Join(c.out, "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	e.lines, e.clean = len(tl), tl
	c.kms.mu.Lock()
	e.ops = slices.Clone(c.kms.ops)
	c.kms.mu.Unlock()
	return e
}

// boundaries lists every kill point of the shape's ceremony: after every
// transcript line, in the middle of writing every line, and just before
// and just after every KMS request (by its index when one key at a time,
// else as the nth request of its operation: concurrent requests come in
// any order). The first are those make test always tries: the header and
// the seal line torn (a torn seal was taken for a seal, and the resume
// refused the ceremony).
func (e *sweepEnv) boundaries() []killPoint {
	points := []killPoint{tearKill(tearSeal), tearKill(1)}
	for l := 0; l <= e.lines; l++ {
		points = append(points, lineKill(l))
	}
	for l := 2; l <= e.lines; l++ {
		points = append(points, tearKill(l))
	}
	if e.shape.parallel == 1 {
		for i, op := range e.ops {
			points = append(points, requestKill(i, op, false), requestKill(i, op, true))
		}
		return points
	}
	count := map[string]int{}
	for _, op := range e.ops {
		count[op]++
		points = append(points, opKill(op, count[op], false), opKill(op, count[op], true))
	}
	return points
}

// random returns a kill point chosen by rng: a line, a torn line, a KMS
// request, or a moment within a clean run's time.
func (e *sweepEnv) random(rng *rand.Rand) killPoint {
	switch rng.IntN(4) {
	case 0:
		return lineKill(rng.IntN(e.lines + 1))
	case 1:
		return tearKill(1 + rng.IntN(e.lines))
	case 2:
		i := rng.IntN(len(e.ops))
		if e.shape.parallel == 1 {
			return requestKill(i, e.ops[i], rng.IntN(2) == 1)
		}
		return opKill(e.ops[i], 1+countBefore(e.ops, i), rng.IntN(2) == 1)
	}
	return timeKill(time.Duration(rng.Int64N(int64(e.took))))
}

// countBefore is how many of ops[:i] are ops[i]'s operation.
func countBefore(ops []string, i int) int {
	n := 0
	for _, op := range ops[:i] {
		if op == ops[i] {
			n++
		}
	}
	return n
}

// try kills a new ceremony of the shape at each of points in turn, resumes
// it, and returns what went wrong ("" when nothing did).
func (e *sweepEnv) try(points ...killPoint) string {
	c := newShapedCase(e.t, e.conf, e.cu, e.next, e.shape)
	e.next++
	msg := c.killAndResume(points)
	e.kills += c.kills
	return msg
}

// crashSeed is CRASH_SEED, or a new seed; it is logged so that a failure
// can be replayed.
func crashSeed(t *testing.T) uint64 {
	seed, _ := strconv.ParseUint(os.Getenv("CRASH_SEED"), 10, 64)
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("CRASH_SEED=%d", seed)
	return seed
}

// sweep tries points, each on a new ceremony, and reports. With
// CRASH_SWEEP=1 (make crash) it tries them all; else (make test) the first
// must of them and a sample of the others, short in all, drawn with the
// logged CRASH_SEED. CRASH_SHARD=i/n
// tries only every nth point from the ith (to split a long sweep), and
// CRASH_ONLY only the points it names, as the log names them, separated by
// commas (to replay a failure: CRASH_SWEEP=1 CRASH_ONLY='torn line 7').
func (e *sweepEnv) sweep(name string, points []killPoint, must, short int) {
	t := e.t
	all := len(points)
	if os.Getenv("CRASH_SWEEP") == "" && len(points) > short {
		rng := rand.New(rand.NewPCG(crashSeed(t), 1))
		rest := points[must:]
		rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
		points = points[:short]
	}
	if only := os.Getenv("CRASH_ONLY"); only != "" {
		points = slices.DeleteFunc(points, func(p killPoint) bool { return !slices.Contains(strings.Split(only, ","), p.name) })
	}
	if sh := os.Getenv("CRASH_SHARD"); sh != "" {
		var i, n int
		if _, err := fmt.Sscanf(sh, "%d/%d", &i, &n); err != nil || n < 1 || i < 0 || i >= n {
			t.Fatalf("CRASH_SHARD=%q: want i/n with 0 <= i < n", sh)
		}
		var mine []killPoint
		for k := i; k < len(points); k += n {
			mine = append(mine, points[k])
		}
		points = mine
	}
	t.Logf("%s: %s; clean ceremony: %d transcript lines, %d KMS requests in %v: %s", name, e.shape, e.lines, len(e.ops), e.took.Round(time.Millisecond), strings.Join(e.ops, " "))
	var failed []string
	for _, p := range points {
		if msg := e.try(p); msg != "" {
			failed = append(failed, fmt.Sprintf("killed at %s: %s", p, msg))
		}
	}
	t.Logf("%s: %d kill points tried (of %d), %d killed a run, %d passed", name, len(points), all, e.kills, len(points)-len(failed))
	for _, f := range failed {
		t.Error(f)
	}
}

// TestCrashBoundaries kills a 3-key ceremony with a 2-of-3 escrow, one key
// at a time, after every transcript line, in the middle of writing each
// line, and just before and just after every KMS request, resumes it with
// the same command, and checks the evidence. make test tries a seeded
// sample, make crash (CRASH_SWEEP=1) every point.
func TestCrashBoundaries(t *testing.T) {
	if testing.Short() {
		t.Skip("crash sweep")
	}
	e := newSweepEnv(t, serialShape)
	e.sweep("crash boundaries", e.boundaries(), 2, 30)
}

// TestCrashParallel is TestCrashBoundaries for a 6-key ceremony whose
// online steps work on 3 keys at once against a KMS with latency: kills
// land while other keys' requests are in flight and inside a group commit.
func TestCrashParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("crash sweep")
	}
	e := newSweepEnv(t, parallelShape)
	e.sweep("crash parallel", e.boundaries(), 2, 16)
}

// TestCrashRandom (make crash) kills ceremonies of both shapes at random
// moments: random lines, torn lines, KMS requests, random times, and every
// other one's resume killed again. CRASH_RANDOM sets the number of cases
// per shape, CRASH_SEED the seed.
func TestCrashRandom(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CRASH_RANDOM"))
	if n <= 0 {
		t.Skip("set CRASH_RANDOM=N (make crash) to kill N ceremonies at random moments")
	}
	rng := rand.New(rand.NewPCG(crashSeed(t), 0))
	for _, sh := range []crashShape{serialShape, parallelShape} {
		e := newSweepEnv(t, sh)
		var failed []string
		kills := 0
		for i := 0; i < n; i++ {
			points := []killPoint{e.random(rng)}
			if i%2 == 1 { // a double kill: the resume is killed too
				points = append(points, e.random(rng))
			}
			kills += len(points)
			if msg := e.try(points...); msg != "" {
				failed = append(failed, fmt.Sprintf("killed at %v: %s", points, msg))
			}
		}
		t.Logf("crash random (%s): %d cases (%d kills asked, %d runs killed), %d passed", sh, n, kills, e.kills, n-len(failed))
		for _, f := range failed {
			t.Error(f)
		}
	}
}

// TestTwoRunsOneDirectory starts a ceremony, pauses it at
// transcript line 3, 6, 16 and 20, and meanwhile runs run, wrap and recover
// on the same directory: each gets a one-line error naming the process that
// holds the directory, and changes nothing. The first run then finishes and
// its evidence checks.
func TestTwoRunsOneDirectory(t *testing.T) {
	conf, cu := crashStore(t)
	for i, line := range []int{3, 6, 16, 20} {
		t.Run(fmt.Sprintf("line %d", line), func(t *testing.T) {
			c := newCrashCase(t, conf, cu, 900+i)
			first := binary(t, "keyceremony-crashtest", "run", "--config", c.cfg)
			first.Dir = c.dir
			pause := filepath.Join(c.dir, "paused")
			first.Env = append(slices.Clone(c.env), "KEYCEREMONY_CRASHTEST_PAUSE_AT_LINE="+strconv.Itoa(line), "KEYCEREMONY_CRASHTEST_PAUSE_FILE="+pause)
			var firstOut bytes.Buffer
			first.Stdout, first.Stderr = &firstOut, &firstOut
			if err := first.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = first.Process.Kill() }()
			waitFile(t, pause)
			before := snapshot(t, c.out, c.kms.state)
			want := fmt.Sprintf("is in use by process %d (keyceremony run, since ", first.Process.Pid)
			for _, args := range [][]string{
				{"run", "--config", c.cfg},
				{"wrap", "--params", "params-payments.json", "--wrapping-key-sha256", strings.Repeat("0", 64), "--key", "payments", "--token", c.token, "--out-dir", c.out},
				{"recover", "--drill", "--escrow", filepath.Join(c.out, "escrow.json"), "--share", "share-1-alice.age", "--identity", c.ids[0], "--out", c.out},
			} {
				cmd := binary(t, "keyceremony", args...)
				cmd.Dir, cmd.Env = c.dir, c.env
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 {
					t.Errorf("second %s: %v, want exit 1\n%s", args[0], err, out)
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if len(lines) != 1 || !strings.HasPrefix(lines[0], "keyceremony: error: ceremony directory "+c.out+" "+want) {
					t.Errorf("second %s: want one line %q…, got:\n%s", args[0], want, out)
				}
			}
			if after := snapshot(t, c.out, c.kms.state); after != before {
				t.Errorf("a refused second run changed something:\nbefore %s\nafter  %s", before, after)
			}
			if err := os.Remove(pause); err != nil {
				t.Fatal(err)
			}
			if err := first.Wait(); err != nil {
				t.Fatalf("first run: %v\n%s", err, firstOut.String())
			}
			if err := c.check(); err != nil {
				t.Error(err)
			}
		})
	}
}

// waitFile waits until the paused process makes file.
func waitFile(t *testing.T, file string) {
	for i := 0; i < 1200; i++ {
		if _, err := os.Stat(file); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the first run did not pause (no %s)", file)
}

// snapshot describes every file of dir (name, size, mode, SHA-256) and the
// KMS state.
func snapshot(t *testing.T, dir, kmsState string) string {
	var b strings.Builder
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(entries, nil) {
		p := kmsState
		if e != nil {
			p = filepath.Join(dir, e.Name())
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(&b, "%s absent; ", filepath.Base(p))
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		fmt.Fprintf(&b, "%s %d %v %x; ", filepath.Base(p), len(data), fi.Mode(), sha256.Sum256(data))
	}
	return b.String()
}

// TestCrashAdoption kills a ceremony right after KMS created a key and
// right after the intent to generate a token key was signed (so the key is
// made, and nothing records it): the resume finds the KMS key by its tags
// and the token key by label and id, and adopts both, asking nobody to
// destroy anything.
func TestCrashAdoption(t *testing.T) {
	conf, cu, _, ops, _ := crashEnv(t)
	second := slices.Index(ops, "CreateKey") + 1
	// The line count just after the generate-key event of the second key,
	// whose intent a checkpoint signed before the first key was made, from
	// a clean run's transcript: killed there, the key exists and no
	// checkpoint covers its event.
	c := newCrashCase(t, conf, cu, 800)
	if r := c.run(killPoint{line: -1, request: -1}); r.code != 0 {
		t.Fatal(r.stderr)
	}
	lines, err := transcriptLines(filepath.Join(c.out, "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	intent, signed, gen := -1, false, -1
	for i, l := range lines {
		d, _ := l["data"].(map[string]any)
		switch {
		case l["step"] == "generate-key-intent" && d["label"] == "archive":
			intent = i
		case l["step"] == "checkpoint" && intent >= 0 && gen < 0:
			signed = true
		case l["step"] == "generate-key" && d["label"] == "archive":
			gen = i + 1 // 1-based: the file holds the event line
		}
	}
	if intent < 0 || !signed || gen < 0 || gen >= len(lines) || lines[gen]["step"] == "checkpoint" {
		t.Fatalf("no generate-key-intent for archive, signed, then its generate-key with no checkpoint right after, in the clean run")
	}
	for i, tt := range []struct {
		p          killPoint
		step, want string
	}{
		{requestKill(second, "CreateKey", true), "kms-key", "found by its tags"},
		{lineKill(gen), "generate-key", "found on the token by label and id"},
	} {
		msg, c := crashCasePoint(t, conf, cu, 810+i, tt.p)
		if msg != "" {
			t.Errorf("killed at %s: %s", tt.p, msg)
		}
		lines, _ := transcriptLines(filepath.Join(c.out, "transcript.jsonl"))
		adopted := false
		for _, l := range lines {
			d, _ := l["data"].(map[string]any)
			a, _ := d["adopted"].(string)
			adopted = adopted || l["step"] == tt.step && l["actor"] == "tester" && strings.HasPrefix(a, tt.want)
		}
		if !adopted {
			t.Errorf("killed at %s: the transcript does not record the adoption (a %s event adopted %q…)", tt.p, tt.step, tt.want)
		}
	}
}

// TestCrashUnnamedKey kills a ceremony while it generates its keys and
// leaves on the token what SoftHSM leaves when a SIGKILL lands inside
// C_GenerateKey (it writes a new object in steps, its label and id last):
// a secret key with no label and no id. The resume cannot know whose it
// is; it must not use it, and must tell the operator, on the screen and in
// its open-token event, then finish; the evidence checks as always.
func TestCrashUnnamedKey(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and resumes a ceremony")
	}
	e := newSweepEnv(t, serialShape)
	c := newShapedCase(t, e.conf, e.cu, 1, serialShape)
	gen := -1
	for i, l := range e.clean {
		if l["step"] == "generate-key" {
			gen = i + 1 // killed once the file holds it: no checkpoint covers it
			break
		}
	}
	if gen < 0 {
		t.Fatal("the clean run has no generate-key event")
	}
	if r := c.run(lineKill(gen)); !r.killed {
		t.Fatalf("not killed after line %d: exit %d: %s", gen, r.code, r.stderr)
	}
	if err := tokenDebris(c.token); err != nil {
		t.Fatal(err)
	}
	r := c.run(killPoint{line: -1, request: -1})
	if r.code != 0 {
		t.Fatalf("resume exited %d: %s", r.code, r.stderr)
	}
	want := fmt.Sprintf("      token %q holds 1 secret key with no label and no id: a key generation cut short (the process died while the token wrote the key) leaves such an object; this ceremony does not use it: check and destroy it with the token's own tools (the open-token event records the count)\n", c.token)
	if !strings.Contains(r.stderr, want) {
		t.Errorf("the resume does not say, as one line:\n%s\nit said:\n%s", want, r.stderr)
	}
	if err := c.check(); err != nil {
		t.Error(err)
	}
}
