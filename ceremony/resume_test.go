package ceremony

import (
	"bytes"
	"github.com/keyceremony/keyceremony/transcripts/events"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/transcripts"
)

// dyingUI fails the confirmation numbered failAt (1-based), as an operator
// who walks away or a process that dies at that point would.
type dyingUI struct {
	quietUI
	confirms, failAt int
}

func (u *dyingUI) Confirm(ctx context.Context, prompt, want string) (Confirmation, error) {
	u.confirms++
	if u.confirms == u.failAt {
		return Confirmation{}, errors.New("the process died here")
	}
	return Confirmation{}, nil
}

func resumeConfig(t *testing.T, out string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`
ceremony: {id: resume-test, operator: test, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
  - {label: one, create: true, valid_for: 30d}
  - {label: two, create: true, does_not_expire: true}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
`, out)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func steps(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if i := strings.Index(l, `"step":"`); i >= 0 {
			out = append(out, strings.SplitN(l[i+8:], `"`, 2)[0])
		}
	}
	return out
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

// TestResume stops a ceremony after the first key is imported and runs it
// again with the same config: it must go on where it stopped, generating,
// escrowing and importing nothing twice, and seal a transcript that verifies
// with every file it names.
func TestResume(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	out := filepath.Join(t.TempDir(), "out")
	cfg := resumeConfig(t, out)

	_, err := Run(context.Background(), cfg, &dyingUI{failAt: 3})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "import" || !se.Changed {
		t.Fatalf("first run: %v", err)
	}
	before := steps(t, filepath.Join(out, "transcript.jsonl"))
	if count(before, "import") != 1 {
		t.Fatalf("first run imported %d keys", count(before, "import"))
	}

	// A stray file the transcript does not name, as if the process died
	// right after writing it: moved aside, never overwritten.
	stray := filepath.Join(out, "signing-key.pem")
	if err := os.WriteFile(stray, []byte("half-written\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ui := &dyingUI{}
	res, err := Run(context.Background(), cfg, ui)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if ui.confirms != 1 {
		t.Errorf("resume asked %d confirmations, want 1 (key two only)", ui.confirms)
	}
	after := steps(t, res.Transcript)
	for step, want := range map[string]int{"generate-key": 2, "kms-key": 2, "escrow": 1, "wrap": 2, "import": 2, "check-import": 2, "resume": 1, "set-aside": 1, "failed": 1} {
		if got := count(after, step); got != want {
			t.Errorf("%d %q events, want %d: %v", got, step, want, after)
		}
	}
	for i := 1; i < len(after); i++ {
		if after[i] == "checkpoint" && after[i-1] == "checkpoint" {
			t.Fatalf("two checkpoints in a row: %v", after)
		}
	}
	if count(after, "checkpoint") < 8 {
		t.Errorf("only %d checkpoints: %v", count(after, "checkpoint"), after)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "unrecorded-1-signing-key.pem")); string(b) != "half-written\n" {
		t.Errorf("the stray file was not kept aside: %q", b)
	}
	data, _ := os.ReadFile(res.Transcript)
	if _, err := transcripts.VerifyBytes(data, transcripts.Options{Files: os.DirFS(out)}); err != nil {
		t.Fatalf("resumed transcript does not verify: %v", err)
	}
	if len(res.Keys) != 2 || res.Keys[0].KeyCheckValue == "" || res.Keys[1].KMSKeyARN == "" {
		t.Errorf("result keys %+v", res.Keys)
	}
	c, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range res.Keys {
		d, err := c.Describe(context.Background(), k.KMSKeyARN)
		if err != nil || d.State != "Enabled" {
			t.Errorf("key %s: %+v %v", k.Label, d, err)
		}
	}

	// Sealed: nothing to resume.
	if _, err := Run(context.Background(), cfg, &dyingUI{}); err == nil || !strings.Contains(err.Error(), "is complete") {
		t.Errorf("run of a sealed ceremony: %v", err)
	}
}

// TestResumeRefusals checks that a resume refuses, changing nothing, when
// the config changed, a recorded file changed, or the chain is broken; and
// that it cuts a torn last line.
func TestResumeRefusals(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	out := filepath.Join(t.TempDir(), "out")
	cfg := resumeConfig(t, out)
	if _, err := Run(context.Background(), cfg, &dyingUI{failAt: 2}); err == nil {
		t.Fatal("first run did not stop")
	}
	tpath := filepath.Join(out, "transcript.jsonl")
	orig, _ := os.ReadFile(tpath)

	// A change that contradicts what was done is refused.
	other := resumeConfig(t, out)
	other.Token.SigningKey, other.hash = "other", strings.Repeat("0", 64)
	if _, err := Run(context.Background(), other, &dyingUI{}); err == nil || !strings.Contains(err.Error(), "the config changed") || !strings.Contains(err.Error(), "token.signing_key cannot change") {
		t.Errorf("changed config: %v", err)
	}
	bundle := filepath.Join(out, "bundle-one.json")
	b, _ := os.ReadFile(bundle)
	os.WriteFile(bundle, append(b, ' '), 0o644)
	if _, err := Run(context.Background(), cfg, &dyingUI{}); err == nil || !strings.Contains(err.Error(), "bundle-one.json changed since it was recorded") {
		t.Errorf("changed bundle: %v", err)
	}
	os.WriteFile(bundle, b, 0o644)
	broken := strings.Replace(string(orig), `"label":"two"`, `"label":"tw0"`, 1)
	os.WriteFile(tpath, []byte(broken), 0o644)
	var ve *transcripts.VerifyError
	if _, err := Run(context.Background(), cfg, &dyingUI{}); !errors.As(err, &ve) {
		t.Errorf("broken chain: %v", err)
	}
	if now, _ := os.ReadFile(tpath); string(now) != broken {
		t.Error("a refused resume changed the transcript")
	}
	// A torn last line (the process died mid-write) is cut and recorded at
	// once, before a check that refuses the resume.
	os.WriteFile(tpath, append(orig, []byte(`{"type":"event","seq":`)...), 0o644)
	if _, err := Run(context.Background(), other, &dyingUI{}); err == nil || !strings.Contains(err.Error(), "the config changed") {
		t.Errorf("changed config after a torn line: %v", err)
	}
	if now, _ := os.ReadFile(tpath); !bytes.HasPrefix(now, orig) || !bytes.Contains(now[len(orig):], []byte(`"step":"torn-line","actor":"test","data":{"bytes":22,`)) {
		t.Errorf("the torn line was not recorded before the refusal: %s", now[len(orig):])
	}
	res, err := Run(context.Background(), cfg, &dyingUI{})
	if err != nil {
		t.Fatalf("resume after a torn line: %v", err)
	}
	data, _ := os.ReadFile(res.Transcript)
	if _, err := transcripts.VerifyBytes(data, transcripts.Options{Files: os.DirFS(out)}); err != nil {
		t.Fatal(err)
	}
}

// TestResumeIgnoresUnsignedEvents appends events with a valid hash chain
// but no checkpoint (what anyone who can write to out_dir could do): the
// resumed ceremony must not trust them, so a forged "escrow" does not skip
// the escrow.
func TestResumeIgnoresUnsignedEvents(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	out := filepath.Join(t.TempDir(), "out")
	cfg := resumeConfig(t, out)
	// Stop at the custodian's confirmation: keys generated, no escrow.
	if _, err := Run(context.Background(), cfg, &dyingUI{failAt: 1}); err == nil {
		t.Fatal("first run did not stop")
	}
	tpath := filepath.Join(out, "transcript.jsonl")
	r, err := transcripts.Reopen(tpath)
	if err != nil {
		t.Fatal(err)
	}
	forged := &events.Escrow{QuorumCheck: "ok", Keys: []events.EscrowKey{{Label: "one"}, {Label: "two"}}}
	if err := r.Writer.AppendStep(6, "mallory", forged); err != nil {
		t.Fatal(err)
	}
	r.Writer.Close()
	res, err := Run(context.Background(), cfg, &dyingUI{})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	after := steps(t, res.Transcript)
	if count(after, "escrow") != 2 {
		t.Fatalf("the forged escrow event was trusted: %v", after)
	}
	if _, err := os.Stat(filepath.Join(out, "escrow.json")); err != nil {
		t.Errorf("no escrow blob after the resume: %v", err)
	}
	data, _ := os.ReadFile(res.Transcript)
	if !strings.Contains(string(data), `"events_not_covered_by_a_checkpoint":2`) {
		t.Error("the resume event does not count the failed and the forged events")
	}
}

// TestResumeNoHeader: a transcript without one complete line (the process
// died creating it, before anything changed) is moved aside, recorded, and
// the ceremony starts over.
func TestResumeNoHeader(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	for _, torn := range []string{"", `{"type":"header","format":"keyceremony/tr`} {
		out := filepath.Join(t.TempDir(), "out")
		os.MkdirAll(out, 0o700)
		os.WriteFile(filepath.Join(out, "transcript.jsonl"), []byte(torn), 0o644)
		cfg := resumeConfig(t, out)
		res, err := Run(context.Background(), cfg, &dyingUI{})
		if err != nil {
			t.Fatalf("%q: %v", torn, err)
		}
		if aside, err := os.ReadFile(filepath.Join(out, "unrecorded-1-transcript.jsonl")); err != nil || string(aside) != torn {
			t.Errorf("%q: the old transcript was not kept: %q %v", torn, aside, err)
		}
		data, _ := os.ReadFile(res.Transcript)
		if !bytes.Contains(data, []byte(`"step":"set-aside","actor":"test","data":{"name":"transcript.jsonl","moved_to":"unrecorded-1-transcript.jsonl"`)) {
			t.Errorf("%q: the set-aside is not recorded", torn)
		}
		if _, err := transcripts.VerifyBytes(data, transcripts.Options{Files: os.DirFS(out)}); err != nil {
			t.Fatal(err)
		}
		// A fresh key: the tokens are shared by the cases.
		hsmtest.Setup(t, "ceremony")
	}
}
