package main_test

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/wrap"
)

// The end-to-end tests build the real binaries once and run them against a
// throw-away SoftHSM token and the loopback KMS server (bin/kmslocal).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keyceremony-e2e-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, p := range []string{"keyceremony", "kmslocal"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, p), "../"+p).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", p, err, out)
			os.Exit(1)
		}
	}
	// The crash tests' binary: it can kill itself at a chosen transcript
	// line (transcripts/crashtest.go).
	out, err := exec.Command("go", "build", "-tags", "crashtest", "-o", filepath.Join(dir, "keyceremony-crashtest"), "../keyceremony").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build -tags crashtest: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type e2e struct {
	t   *testing.T
	dir string
	env []string
}

// newE2E makes a SoftHSM token labelled "ceremony" (PIN hsmtest.PIN) and
// starts kmslocal on a free loopback port. The test process's environment
// is pointed at both too, so the test can check results through the hsm
// package and the real AWS SDK.
func newE2E(t *testing.T) *e2e {
	t.Helper()
	return newE2EWith(t)
}

// newE2EWith is newE2E with extra kmslocal arguments.
func newE2EWith(t *testing.T, kmsArgs ...string) *e2e {
	t.Helper()
	hsmtest.Require(t)
	dir := t.TempDir()
	conf := hsmtest.Setup(t, "ceremony")
	ready := filepath.Join(dir, "kms.addr")
	kms := exec.Command(filepath.Join(binDir, "kmslocal"), append([]string{"--addr", "127.0.0.1:0", "--ready-file", ready}, kmsArgs...)...)
	var kmsLog bytes.Buffer
	kms.Stderr = &kmsLog
	if err := kms.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kms.Process.Kill()
		_ = kms.Wait()
		if t.Failed() {
			t.Logf("kmslocal log:\n%s", kmsLog.String())
		}
	})
	var addr []byte
	for i := 0; i < 200; i++ {
		addr, _ = os.ReadFile(ready)
		if len(addr) > 0 {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if len(addr) == 0 {
		t.Fatalf("kmslocal did not start: %s", kmsLog.String())
	}
	vars := map[string]string{
		"SOFTHSM2_CONF":               conf,
		"AWS_ENDPOINT_URL_KMS":        "http://" + strings.TrimSpace(string(addr)),
		"AWS_REGION":                  "eu-west-1",
		"AWS_ACCESS_KEY_ID":           "test",
		"AWS_SECRET_ACCESS_KEY":       "test",
		"AWS_CONFIG_FILE":             "/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
	e := &e2e{t: t, dir: dir}
	for k, v := range vars {
		t.Setenv(k, v)
		e.env = append(e.env, k+"="+v)
	}
	return e
}

// run runs the binary with the test's environment plus extraEnv, checked
// for secrets (runBinary).
func (e *e2e) run(extraEnv []string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := binary(e.t, "keyceremony", args...)
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir}, e.env...), extraEnv...)
	return runBinary(e.t, cmd)
}

func (e *e2e) config(name, body string) string {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

const ceremonyYAML = `
ceremony:
  id: e2e-%[1]s
  operator: tester
  out_dir: %[1]s
token:
  label: ceremony
kms:
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_2048
keys:
  - label: payments-%[1]s
    create: true
    valid_for: 30d
  - label: archive-%[1]s
    create: true
    does_not_expire: true
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - name: alice
      recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
`

func TestCeremonyEndToEnd(t *testing.T) {
	e := newE2E(t)
	cfg := e.config("c.yaml", fmt.Sprintf(ceremonyYAML, "one"))
	start := time.Now()
	stdout, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg)
	if code != 0 {
		t.Fatalf("run exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	out := filepath.Join(e.dir, "one")
	for _, f := range []string{"transcript.jsonl", "signing-key.pem", "bundle-payments-one.json", "bundle-archive-one.json", "params-payments-one.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}

	// The binary verifies its own transcript against the pinned key.
	vout, verr, code := e.run(nil, "verify", "--pubkey", filepath.Join(out, "signing-key.pem"), filepath.Join(out, "transcript.jsonl"))
	if code != 0 || !strings.Contains(vout, "OK: transcript of ceremony e2e-one") {
		t.Fatalf("verify exited %d: %s %s", code, vout, verr)
	}
	// Nobody was asked to confirm anything, and the evidence says so.
	for _, want := range []string{"confirmation: share receipt of alice: not asked (non-interactive)\n",
		"confirmation: import of payments-one: not asked (non-interactive)\n", "confirmation: import of archive-one: not asked (non-interactive)\n"} {
		if !strings.Contains(vout, want) {
			t.Errorf("verify output lacks %q:\n%s", want, vout)
		}
	}
	if strings.Contains(string(mustRead(t, filepath.Join(out, "transcript.jsonl"))), `"receipt":"confirmed"`) {
		t.Error("the transcript claims a receipt nobody gave")
	}

	// The transcript's key check values match the token's and the bundles'.
	data, _ := os.ReadFile(filepath.Join(out, "transcript.jsonl"))
	res, err := transcripts.Verify(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	kcvs := map[string]string{}
	// The online steps work on several keys at once, so the events of
	// different keys may interleave within a script step: compare each
	// step's events as a sorted group, and each key's own events in order.
	var steps, group []string
	perKey := map[string][]string{}
	lastNo := -1
	flush := func() { slices.Sort(group); steps = append(steps, group...); group = nil }
	for _, ev := range res.Events {
		if ev.Step == "step-done" || ev.Step == "checkpoint" {
			continue // TestTranscriptEvidence and the resume tests check them
		}
		if ev.StepNo != lastNo {
			flush()
			lastNo = ev.StepNo
		}
		group = append(group, ev.Step)
		if l := eventLabel(ev.Data); l != "" && ev.Step != "open-token" && ev.Step != "signing-key" {
			perKey[l] = append(perKey[l], ev.Step)
		}
		if g, ok := ev.Data.(*events.GenerateKey); ok {
			kcvs[g.Label] = g.KeyCheckValue
		}
		// Where KMS is: the endpoint and Region the ceremony talked to.
		if k, ok := ev.Data.(*events.KMSKey); ok && (k.Endpoint != os.Getenv("AWS_ENDPOINT_URL_KMS") || k.Region != "eu-west-1") {
			t.Errorf("kms-key event does not record the endpoint and Region: %+v", k)
		}
	}
	flush()
	wantSteps := "open-token config kms-key kms-key kms-key-intent kms-key-intent fetch-params fetch-params generate-key generate-key generate-key-intent generate-key-intent escrow wrap wrap import import check-import check-import files signing-key"
	if got := strings.Join(steps, " "); got != wantSteps {
		t.Errorf("transcript steps (sorted within each script step):\n got %s\nwant %s", got, wantSteps)
	}
	for _, l := range []string{"payments-one", "archive-one"} {
		want := "kms-key-intent kms-key fetch-params generate-key-intent generate-key wrap import check-import"
		if got := strings.Join(perKey[l], " "); got != want {
			t.Errorf("events of key %s:\n got %s\nwant %s", l, got, want)
		}
	}
	tok, err := hsm.Open(hsm.Config{TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	kc, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"payments-one", "archive-one"} {
		k, err := tok.FindAESKey(label, nil)
		if err != nil {
			t.Fatal(err)
		}
		kcv, _ := tok.CheckValue(k)
		if fmt.Sprintf("%x", kcv) != kcvs[label] {
			t.Errorf("%s: token kcv %x, transcript %s", label, kcv, kcvs[label])
		}
		bb, _ := os.ReadFile(filepath.Join(out, "bundle-"+label+".json"))
		b, err := wrap.ParseBundle(bb)
		if err != nil {
			t.Fatal(err)
		}
		if b.KeyCheckValue != kcvs[label] {
			t.Errorf("%s: bundle kcv %s, transcript %s", label, b.KeyCheckValue, kcvs[label])
		}
		// KMS, asked through the real SDK, agrees on state and expiry.
		d, err := kc.Describe(context.Background(), b.KeyARN)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != "Enabled" {
			t.Errorf("%s: KMS state %s", label, d.State)
		}
		if label == "payments-one" {
			want := start.Add(30 * 24 * time.Hour)
			if d.ValidTo == nil || d.ValidTo.Sub(want).Abs() > time.Minute {
				t.Errorf("%s: ValidTo %v, want about %v", label, d.ValidTo, want)
			}
		} else if d.ValidTo != nil || d.ExpirationModel != "KEY_MATERIAL_DOES_NOT_EXPIRE" {
			t.Errorf("%s: expiration %s %v", label, d.ExpirationModel, d.ValidTo)
		}
		cout, cerr, code := e.run(nil, "check-key", "--key", b.KeyARN)
		if code != 0 || !strings.Contains(cout, "encrypt then decrypt through KMS: ok") {
			t.Errorf("check-key exited %d: %s %s", code, cout, cerr)
		}
	}

	// No secret in any file the ceremony wrote, nor in its output.
	entries, _ := os.ReadDir(out)
	for _, ent := range entries {
		b, _ := os.ReadFile(filepath.Join(out, ent.Name()))
		if bytes.Contains(b, []byte(`"`+hsmtest.PIN+`"`)) || bytes.Contains(b, []byte("PIN=")) {
			t.Errorf("%s contains the PIN", ent.Name())
		}
	}
	if !strings.Contains(stderr, "KMS: endpoint "+os.Getenv("AWS_ENDPOINT_URL_KMS")+", Region eu-west-1\n") {
		t.Errorf("the run does not say where KMS is:\n%s", stderr)
	}
	if strings.Contains(stdout+stderr, "KEYCEREMONY_PIN="+hsmtest.PIN) {
		t.Error("output contains the PIN")
	}

	// Running the same ceremony again refuses to touch the evidence.
	_, stderr2, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg)
	if code == 0 || !strings.Contains(stderr2, "is complete (its transcript is sealed)") {
		t.Errorf("second run exited %d: %s", code, stderr2)
	}
	after, _ := os.ReadFile(filepath.Join(out, "transcript.jsonl"))
	if !bytes.Equal(after, data) {
		t.Error("second run changed the transcript")
	}
	// The same keys in a new ceremony: refused, a ceremony never reuses a key.
	body, _ := os.ReadFile(cfg)
	again := e.config("again.yaml", strings.Replace(string(body), "out_dir: one", "out_dir: again", 1))
	_, stderr3, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", again)
	if code != 1 || !strings.Contains(stderr3, `already holds a key labelled "payments-one"`) {
		t.Errorf("run with an existing label exited %d: %s", code, stderr3)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "again")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused run left an output directory")
	}
}

// TestRunBadInput checks that each kind of bad input gives exactly one
// error line, in the operator's words (the step as the script numbers it,
// never an internal id), saying what to do, and changes nothing: no file,
// no token key, no KMS key (counted before and after each run). In a want, <*> stands for one value that
// changes from run to run (a time, a serial, a slot).
func TestRunBadInput(t *testing.T) {
	e := newE2E(t)
	good := fmt.Sprintf(ceremonyYAML, "bad")
	pinEnv := []string{"KEYCEREMONY_PIN=1234"}
	tests := []struct {
		name string
		cfg  string
		env  []string
		args []string
		want string
	}{
		{"wrong PIN", good, []string{"KEYCEREMONY_PIN=7391"}, nil, `step 2 (open the token and log in): wrong PIN for token "ceremony": nothing was changed; try again with the user PIN`},
		{"missing module", good, pinEnv, []string{"--module", "/nonexistent/libnothing.so"}, "step 2 (open the token and log in): pkcs11 module not found: /nonexistent/libnothing.so does not exist: install the module's package or set token.module / --module / $KEYCEREMONY_PKCS11_MODULE"},
		{"unknown token", strings.Replace(good, "label: ceremony", "label: no-such-token", 1), pinEnv, nil, `step 2 (open the token and log in): token not found: no token with label "no-such-token" in /usr/lib/softhsm/libsofthsm2.so (the default: no token.module, --module, module-path or $KEYCEREMONY_PKCS11_MODULE named one) (tokens present: "ceremony" (serial <*>, slot <*>, SoftHSM project SoftHSM v2)): check the token selection and the module, or initialize a token with the module's own tool`},
		{"no PIN", good, nil, nil, "step 2 (open the token and log in): no PIN available: stdin is not a terminal: set KEYCEREMONY_PIN or token.pin_file"},
		{"PIN file that never ends", strings.Replace(good, "label: ceremony", "label: ceremony\n  pin_file: /dev/zero", 1), nil, nil, "step 2 (open the token and log in): failed to read the PIN file named by token.pin_file: /dev/zero holds more than 65536 bytes: it is not a PIN or passphrase file"},
		{"unknown config field", strings.Replace(good, "operator: tester", "operater: tester", 1), pinEnv, nil, filepath.Join(e.dir, "unknown-config-field.yaml") + `: invalid config: line 4: unknown field "operater" in ceremony (check its spelling against the README's Config section)`},
		{"valid_to in the past", strings.Replace(good, "valid_for: 30d", "valid_to: 2020-01-01T00:00:00Z", 1), pinEnv, nil, "keys[0].valid_to 2020-01-01T00:00:00Z is in the past (now <*>): choose a later time, or use valid_for"},
		{"valid_to before the import", strings.Replace(good, "valid_for: 30d", "valid_to: "+time.Now().Add(10*time.Minute).UTC().Format(time.RFC3339), 1), pinEnv, nil, "keys[0].valid_to <*> is less than 1h0m0s from now, before the import will happen: choose a later time, or use valid_for"},
		{"valid_to beyond 365 days", strings.Replace(good, "valid_for: 30d", "valid_to: "+time.Now().Add(400*24*time.Hour).UTC().Format(time.RFC3339), 1), pinEnv, nil, "keys[0].valid_to <*> is more than 365 days from now, the most KMS allows: choose an earlier time"},
		{"one KMS key twice", strings.Replace(strings.Replace(good, "create: true\n    valid_for", "kms_key_id: arn:aws:kms:eu-west-1:111122223333:key/0b0e5a9c-3c3e-4a53-9a0e-2f1f2c1d0e0f\n    valid_for", 1), "create: true\n    does_not", "kms_key_id: 0b0e5a9c-3c3e-4a53-9a0e-2f1f2c1d0e0f\n    does_not", 1), pinEnv, nil,
			filepath.Join(e.dir, "one-KMS-key-twice.yaml") + `: keys[1].kms_key_id "0b0e5a9c-3c3e-4a53-9a0e-2f1f2c1d0e0f" is used twice (keys[0] names it too): each key needs its own`},
		{"one CKA_ID twice", strings.Replace(strings.Replace(good, "create: true\n    valid_for", "id: 0a1b\n    create: true\n    valid_for", 1), "create: true\n    does_not", "id: 0A1B\n    create: true\n    does_not", 1), pinEnv, nil, filepath.Join(e.dir, "one-CKA_ID-twice.yaml") + `: keys[1].id "0A1B" is used twice (keys[0] names it too): each key needs its own`},
		{"one params file twice", strings.ReplaceAll(good, "create: true", "params_file: p.json"), pinEnv, nil, filepath.Join(e.dir, "one-params-file-twice.yaml") + `: keys[1].params_file "p.json" is used twice (keys[0] names it too): each key needs its own`},
		{"out_dir not writable", strings.Replace(good, "out_dir: bad", "out_dir: /proc/bad", 1), pinEnv, nil, "cannot create the ceremony directory /proc/bad (mkdir /proc/bad: no such file or directory): choose a directory you can write to"},
		{"unknown KMS key", strings.Replace(good, "create: true\n    valid_for", "kms_key_id: arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000\n    valid_for", 1), pinEnv, nil,
			"step 3 (create or check the KMS keys): failed to describe arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000: NotFoundException: Key 'arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000' does not exist (no such key in this account and Region: check the key ARN and the Region)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.config(strings.ReplaceAll(tt.name, " ", "-")+".yaml", tt.cfg)
			kmsBefore := kmsKeyCount(t)
			stdout, stderr, code := e.run(tt.env, append([]string{"run", "--config", cfg}, tt.args...)...)
			if n := kmsKeyCount(t); n != kmsBefore {
				t.Errorf("KMS holds %d keys, %d before the refused run", n, kmsBefore)
			}
			if code != 1 {
				t.Fatalf("exit code %d, want 1\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if strings.HasPrefix(l, "keyceremony: error:") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 {
				t.Fatalf("want exactly one error line, got:\n%s", stderr)
			}
			want := "^" + strings.ReplaceAll(regexp.QuoteMeta("keyceremony: error: "+tt.want), "<\\*>", `[^ ()]+`) + "$"
			if !regexp.MustCompile(want).MatchString(errLines[0]) {
				t.Errorf("error:\n got %s\nwant keyceremony: error: %s", errLines[0], tt.want)
			}
			if strings.Contains(stderr, "7391") {
				t.Errorf("stderr contains the PIN: %s", stderr)
			}
			if _, err := os.Stat(filepath.Join(e.dir, "bad")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed run left the output directory behind (%v)", err)
			}
		})
	}
	// Nothing was generated on the token.
	noTokenKey(t, "payments-bad").Close()
}

func TestVerifyTampered(t *testing.T) {
	e := newE2E(t)
	cfg := e.config("c.yaml", fmt.Sprintf(ceremonyYAML, "tamper"))
	if _, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg); code != 0 {
		t.Fatalf("run: %s", stderr)
	}
	out := filepath.Join(e.dir, "tamper")
	data, _ := os.ReadFile(filepath.Join(out, "transcript.jsonl"))
	bad := bytes.Replace(data, []byte(`"created":true`), []byte(`"created":false`), 1)
	if bytes.Equal(bad, data) {
		t.Fatal("test did not change the transcript")
	}
	p := filepath.Join(e.dir, "tampered.jsonl")
	os.WriteFile(p, bad, 0o644)
	_, stderr, code := e.run(nil, "verify", "--pubkey", filepath.Join(out, "signing-key.pem"), p)
	// The line after the changed one no longer chains to it.
	next := bytes.Count(data[:bytes.Index(data, []byte(`"created":true`))], []byte("\n")) + 2
	if code != 3 || !strings.Contains(stderr, fmt.Sprintf("transcript line %d: field \"prev\"", next)) {
		t.Errorf("tampered transcript: exit %d: %s", code, stderr)
	}
	var m map[string]any
	_ = json.Unmarshal(bytes.Split(data, []byte("\n"))[0], &m)
	if m["ceremony_id"] != "e2e-tamper" {
		t.Errorf("header %v", m)
	}
}

// eventLabel is the label an event's data names, if any.
func eventLabel(d events.Data) string {
	var v struct {
		Label string `json:"label"`
	}
	b, _ := json.Marshal(d)
	_ = json.Unmarshal(b, &v)
	return v.Label
}
