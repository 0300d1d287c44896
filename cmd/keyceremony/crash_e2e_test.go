package main_test

import (
	"bytes"
	"crypto/aes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	if !hit {
		k.srv.ServeHTTP(w, r)
		return
	}
	// Handle it, kill the ceremony, and only then let the answer go.
	rec := httptest.NewRecorder()
	k.srv.ServeHTTP(rec, r)
	kill()
	w.WriteHeader(rec.Code)
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

const crashYAML = `
ceremony:
  id: %[1]s
  operator: tester
  out_dir: out
token:
  label: %[1]s
kms:
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_2048
  parallel: 1 # a crash point is a transcript line: no other key's request in flight
keys:
  - label: payments
    create: true
    valid_for: 30d
  - label: archive
    create: true
    does_not_expire: true
  - label: reports
    create: true
    valid_to: %[2]s
escrow:
  threshold: 2
  custodians:
    - {name: alice, recipient: %[3]s}
    - {name: bob, recipient: %[4]s}
    - {name: carol, recipient: %[5]s}
`

// newCrashCase makes a fresh token (in the test's SoftHSM store), a fresh
// loopback KMS and a config in a new directory.
func newCrashCase(t *testing.T, conf string, cu *crashCustodians, n int) *crashCase {
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
		labels: []string{"payments", "archive", "reports"}}
	validTo := time.Now().Add(200 * 24 * time.Hour).UTC().Format("2006-01-02T15:04:05Z")
	c.cfg = filepath.Join(dir, "ceremony.yaml")
	body := fmt.Sprintf(crashYAML, name, validTo, cu.recipients[0], cu.recipients[1], cu.recipients[2])
	if err := os.WriteFile(c.cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "kms-state.json")
	srv, err := kmslocal.Open(kmslocal.Options{StateFile: state, PoolSize: -1})
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
	cmd := binary(c.t, "keyceremony-crashtest", "run", "--config", c.cfg)
	cmd.Dir = c.dir
	cmd.Env = slices.Clone(c.env)
	if p.line >= 0 {
		cmd.Env = append(cmd.Env, "KEYCEREMONY_CRASHTEST_KILL_AT_LINE="+strconv.Itoa(p.line))
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
	// One key check value per key everywhere: the ceremony's transcript,
	// the drill's, the bundles and the escrow blob.
	for _, f := range []string{tr, filepath.Join(drill, "transcript.jsonl"), filepath.Join(c.out, "escrow.json"),
		filepath.Join(c.out, "bundle-payments.json"), filepath.Join(c.out, "bundle-archive.json"), filepath.Join(c.out, "bundle-reports.json")} {
		if err := checkKCVs(f, tokenKCV); err != nil {
			return err
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
	return out, nil
}

// kmsStateKey is what the test reads of a kmslocal state file's key.
type kmsStateKey struct {
	ID       string            `json:"id"`
	Material []byte            `json:"material"`
	Tags     map[string]string `json:"tags"`
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
	arns := map[string]string{} // key ID -> label, from the transcript
	lines, err := transcriptLines(tr)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if l["step"] != "kms-key" {
			continue
		}
		d, _ := l["data"].(map[string]any)
		arn, _ := d["kms_key_arn"].(string)
		label, _ := d["label"].(string)
		arns[arn[strings.LastIndexByte(arn, '/')+1:]] = label
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
// value.
func checkKCVs(path string, want map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var walk func(v any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case map[string]any:
			kcv, _ := v["key_check_value"].(string)
			label, _ := v["label"].(string)
			if kcv != "" && label != "" && want[label] != "" && !strings.EqualFold(kcv, want[label]) {
				return fmt.Errorf("%s names check value %s for key %s, the token key's is %s", filepath.Base(path), kcv, label, want[label])
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
				return fmt.Errorf("%s: %w", path, err)
			}
			if strings.HasPrefix(filepath.Base(path), "bundle-") {
				// A bundle names its key by file name.
				m, _ := v.(map[string]any)
				label := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "bundle-"), ".json")
				if m != nil && m["key_check_value"] != nil {
					m["label"] = label
				}
			}
			found = true
			return walk(v)
		}
		if err := walk(v); err != nil {
			return err
		}
		found = true
	}
	if !found {
		return fmt.Errorf("%s is empty", path)
	}
	return nil
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
	for i, p := range points {
		r := c.run(p)
		if !r.killed {
			if r.code != 0 {
				return fmt.Sprintf("run %d (to be killed at %s) exited %d: %s", i+1, p, r.code, firstErrorLine(r.stderr))
			}
			return c.checkMsg() // finished before the kill point
		}
	}
	r := c.run(killPoint{line: -1, request: -1})
	if r.code != 0 || r.killed {
		return fmt.Sprintf("resume exited %d: %s", r.code, firstErrorLine(r.stderr))
	}
	return c.checkMsg()
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
	hsmtest.Require(t)
	conf, err := hsmtest.SetupDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	cu = newCrashCustodians(t)
	c := newCrashCase(t, conf, cu, 0)
	start := time.Now()
	r := c.run(killPoint{line: -1, request: -1})
	took = time.Since(start)
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
	c.kms.mu.Lock()
	ops = slices.Clone(c.kms.ops)
	c.kms.mu.Unlock()
	return conf, cu, len(tl), ops, took
}

// TestCrashBoundaries kills a 3-key ceremony with a 2-of-3 escrow after
// every transcript line and just before and just after every KMS request,
// resumes it with the same command, and checks the evidence.
func TestCrashBoundaries(t *testing.T) {
	if testing.Short() {
		t.Skip("crash sweep")
	}
	conf, cu, lines, ops, _ := crashEnv(t)
	var points []killPoint
	for l := 0; l <= lines; l++ {
		points = append(points, lineKill(l))
	}
	for i, op := range ops {
		points = append(points, requestKill(i, op, false), requestKill(i, op, true))
	}
	t.Logf("clean ceremony: %d transcript lines, %d KMS requests: %s", lines, len(ops), strings.Join(ops, " "))
	var failed []string
	for i, p := range points {
		if msg := crashPoint(t, conf, cu, i+1, p); msg != "" {
			failed = append(failed, fmt.Sprintf("killed at %s: %s", p, msg))
		}
	}
	t.Logf("crash boundaries: %d kill points tried, %d passed", len(points), len(points)-len(failed))
	for _, f := range failed {
		t.Error(f)
	}
}

// TestCrashRandom (make crash) kills ceremonies at random moments: random
// lines, random KMS requests, random times, and a resume killed again.
// CRASH_RANDOM sets the number of cases (at least 200 for make crash),
// CRASH_SEED the seed.
func TestCrashRandom(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CRASH_RANDOM"))
	if n <= 0 {
		t.Skip("set CRASH_RANDOM=N (make crash) to kill N ceremonies at random moments")
	}
	seed, _ := strconv.ParseUint(os.Getenv("CRASH_SEED"), 10, 64)
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("CRASH_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	conf, cu, lines, ops, clean := crashEnv(t)
	random := func() killPoint {
		switch rng.IntN(3) {
		case 0:
			return lineKill(rng.IntN(lines + 1))
		case 1:
			i := rng.IntN(len(ops))
			return requestKill(i, ops[i], rng.IntN(2) == 1)
		}
		return timeKill(time.Duration(rng.Int64N(int64(clean))))
	}
	var failed []string
	kills := 0
	for i := 0; i < n; i++ {
		points := []killPoint{random()}
		if i%2 == 1 { // a double kill: the resume is killed too
			points = append(points, random())
		}
		kills += len(points)
		if msg := crashPoint(t, conf, cu, i+1, points...); msg != "" {
			failed = append(failed, fmt.Sprintf("killed at %v: %s", points, msg))
		}
	}
	t.Logf("crash random: %d cases (%d kills asked), %d passed", n, kills, n-len(failed))
	for _, f := range failed {
		t.Error(f)
	}
}

// TestTwoRunsOneDirectory starts a ceremony, pauses it at
// transcript line 3, 6, 16 and 20, and meanwhile runs run, wrap and recover
// on the same directory: each gets a one-line error naming the process that
// holds the directory, and changes nothing. The first run then finishes and
// its evidence checks.
func TestTwoRunsOneDirectory(t *testing.T) {
	hsmtest.Require(t)
	conf, err := hsmtest.SetupDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	cu := newCrashCustodians(t)
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
