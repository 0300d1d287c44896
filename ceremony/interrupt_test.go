package ceremony

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/transcripts"
)

// stopUI asks to stop when the step named at reports item n of its keys, or
// answers the confirmation numbered stopConfirm with the TUI's stop.
type stopUI struct {
	quietUI
	at          string
	n           int
	step        string
	stop        bool
	confirms    int
	stopConfirm int
}

func (u *stopUI) StepStarted(i, n int, s Step) { u.step = s.ID }
func (u *stopUI) Progress(done, total int) {
	if u.step == u.at && done == u.n {
		u.stop = true
	}
}
func (u *stopUI) StopRequested() bool { return u.stop }
func (u *stopUI) Confirm(ctx context.Context, prompt, want string) (Confirmation, error) {
	u.confirms++
	if u.confirms == u.stopConfirm {
		return Confirmation{}, fmt.Errorf("%w at the question", ErrInterrupted)
	}
	return Confirmation{Typed: true}, nil
}

func stepNo(id string) int {
	for _, s := range Steps() {
		if s.ID == id {
			return s.No
		}
	}
	return 0
}

// TestStopBetweenKeys stops a ceremony that generates one key at a time
// (token.parallel 1) after the first of two keys was generated: the second
// is not generated, the stop is the last event, signed, and the status read
// from the transcript says what was done; run again, the ceremony completes
// without generating the first key twice.
func TestStopBetweenKeys(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	out := filepath.Join(t.TempDir(), "out")
	cfg := resumeConfig(t, out)
	cfg.Token.Parallel = 1

	_, err := Run(context.Background(), cfg, &stopUI{at: "generate-keys", n: 1})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "generate-keys" || !se.Changed || !errors.Is(err, ErrInterrupted) {
		t.Fatalf("stopped run: %v", err)
	}
	got := steps(t, filepath.Join(out, "transcript.jsonl"))
	if count(got, "generate-key") != 1 || count(got, "failed") != 0 {
		t.Fatalf("events after the stop: %v", got)
	}
	if n := len(got); got[n-2] != "interrupted" || got[n-1] != "checkpoint" {
		t.Fatalf("the transcript does not end with the signed stop: %v", got)
	}
	st, err := ReadStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("stopped by the operator during step %d (Generate key material on the token)", stepNo("generate-keys"))
	if !st.Begun || st.Sealed || st.Stopped != want || st.Next != stepNo("generate-keys") {
		t.Errorf("status %+v, want stopped %q", st, want)
	}
	if !strings.Contains(strings.Join(st.Done, "\n"), "key one generated on the token, key check value ") {
		t.Errorf("status done: %q", st.Done)
	}

	res, err := Run(context.Background(), cfg, &quietUI{})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	got = steps(t, res.Transcript)
	if count(got, "generate-key") != 2 || count(got, "kms-key") != 2 {
		t.Errorf("resumed events: %v", got)
	}
	data, _ := os.ReadFile(res.Transcript)
	if _, err := transcripts.VerifyBytes(data, transcripts.Options{Files: os.DirFS(out)}); err != nil {
		t.Fatalf("resumed transcript does not verify: %v", err)
	}
	if st, _ := ReadStatus(cfg); !st.Sealed || st.Remaining() != nil {
		t.Errorf("status after the seal: %+v", st)
	}
}

// stopAfterUI asks to stop once step after is done: the engine stops
// before the next step begins.
type stopAfterUI struct {
	quietUI
	after string
	stop  bool
}

func (u *stopAfterUI) StepDone(i, n int, s Step, summary string) { u.stop = u.stop || s.ID == u.after }
func (u *stopAfterUI) StopRequested() bool                       { return u.stop }

// TestStopBeforeStep: a stop asked for as the KMS keys step ends comes
// before the next step begins; the stop event records that it had not
// begun, and the status says "before step 4 (...) began", not "at step
// 4", which read as if part of it ran.
func TestStopBeforeStep(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	out := filepath.Join(t.TempDir(), "out")
	cfg := resumeConfig(t, out)
	_, err := Run(context.Background(), cfg, &stopAfterUI{after: "kms-keys"})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "fetch-params" || !errors.Is(err, ErrInterrupted) {
		t.Fatalf("stopped run: %v", err)
	}
	st, err := ReadStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("stopped by the operator before step %d (Fetch KMS import parameters) began", stepNo("fetch-params"))
	if st.Stopped != want || st.Next != stepNo("fetch-params") {
		t.Errorf("status %+v, want stopped %q", st, want)
	}
}

// TestStopBeforeChange: a stop before anything changed leaves nothing.
func TestStopBeforeChange(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	out := filepath.Join(t.TempDir(), "out")
	cfg := resumeConfig(t, out)
	_, err := Run(context.Background(), cfg, &stopUI{stop: true})
	var se *StepError
	if !errors.As(err, &se) || se.Changed || !errors.Is(err, ErrInterrupted) || se.Step != Steps()[0].ID {
		t.Fatalf("stop before the first step: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a stop before any change left %s", out)
	}
}

// TestAbandonedEscrow stops at the second custodian's confirmation: the
// share alice took is recorded as void, and the resume moves the attempt's
// files aside as void (not as written by a dead process), makes a new
// escrow, and names the moved files in its result.
func TestAbandonedEscrow(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	out := filepath.Join(t.TempDir(), "out")
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`
ceremony: {id: void-test, operator: test, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
  - {label: one, create: true, valid_for: 30d}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}, {name: bob, recipient: %s}]}
`, out, id.Recipient())))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cfg, &stopUI{stopConfirm: 2})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("stop at bob's confirmation: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(out, "transcript.jsonl"))
	if !strings.Contains(string(data), `"shares_taken_by":["alice"]`) {
		t.Fatalf("the transcript does not say alice's share is void:\n%s", data)
	}
	st, err := ReadStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.Join(st.Voided, "\n"); !strings.Contains(v, "the shares taken by alice are void: destroy them") || !strings.Contains(v, "share-1-alice.age") {
		t.Errorf("status voided: %q", st.Voided)
	}

	res, err := Run(context.Background(), cfg, &quietUI{})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if len(res.SetAside) != 3 {
		t.Fatalf("set aside: %+v", res.SetAside)
	}
	for _, a := range res.SetAside {
		if !strings.HasPrefix(a.MovedTo, "void-1-") || !strings.Contains(a.Reason, "void") {
			t.Errorf("moved aside %+v", a)
		}
		if _, err := os.Stat(filepath.Join(out, a.MovedTo)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(Summary(cfg, res), "share-1-alice.age -> void-1-share-1-alice.age") {
		t.Errorf("the summary does not name the void share:\n%s", Summary(cfg, res))
	}
	data, _ = os.ReadFile(res.Transcript)
	if _, err := transcripts.VerifyBytes(data, transcripts.Options{Files: os.DirFS(out)}); err != nil {
		t.Fatalf("resumed transcript does not verify: %v", err)
	}
}
