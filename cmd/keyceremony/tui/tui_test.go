package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/muesli/termenv"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/transcripts"
)

func TestMain(m *testing.M) {
	// Golden screens are plain text: no colour, as with NO_COLOR.
	lipgloss.SetColorProfile(termenv.Ascii)
	os.Exit(m.Run())
}

const testConfig = `
ceremony:
  id: payments-2026
  operator: alice
  out_dir: /ceremony/out
token:
  label: ceremony
kms:
  region: eu-west-1
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_2048
keys:
  - label: payments
    create: true
    valid_for: 90d
  - label: archive
    kms_key_id: arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
    does_not_expire: true
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - name: alice
      recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
`

func newModel(t *testing.T, run RunFunc) *Model {
	t.Helper()
	cfg, err := ceremony.ParseConfig([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	if run == nil {
		run = func(context.Context, *ceremony.Config, ceremony.UI) (*ceremony.Result, error) { return nil, nil }
	}
	m := New(context.Background(), cfg, run)
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	return m
}

func send(m *Model, msgs ...tea.Msg) {
	for _, msg := range msgs {
		m.Update(msg)
	}
}

func typeText(m *Model, s string) {
	for _, r := range s {
		m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
	}
}

func enter(m *Model) { m.Update(tea.KeyMsg{Type: tea.KeyEnter}) }

// binaryHash matches the plan's two lines with the running binary's SHA-256,
// which changes with every build: goldens hold a placeholder.
var binaryHash = regexp.MustCompile(`(?m)^( Binary +sha256 | +)[0-9a-f]{8} [0-9a-f]{8} [0-9a-f]{8} [0-9a-f]{8}$`)

// checkScreen compares the view at 80×24, 60×15 and 120×40 with golden files
// and checks it fits, with colours off.
func checkScreen(t *testing.T, m tea.Model) string {
	t.Helper()
	var v80 string
	for _, size := range [][2]int{{80, 24}, {60, 15}, {120, 40}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
			v := m.View()
			if size[0] == 80 {
				v80 = v
			}
			checkFits(t, v, size[0], size[1])
			golden.RequireEqual(t, []byte(binaryHash.ReplaceAllString(v, "${1}xxxxxxxx xxxxxxxx xxxxxxxx xxxxxxxx")))
		})
	}
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	return v80
}

// checkFits checks that a screen fits w×h and has no colour.
func checkFits(t *testing.T, v string, w, h int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(v, "\n"), "\n")
	if len(lines) > h {
		t.Errorf("screen has %d lines, more than %d", len(lines), h)
	}
	for i, l := range lines {
		if lw := lipgloss.Width(l); lw > w {
			t.Errorf("line %d is %d columns wide: %q", i+1, lw, l)
		}
	}
	if strings.Contains(v, "\x1b[") {
		t.Error("screen has escape sequences with colour off")
	}
}

func TestPlanScreen(t *testing.T) {
	m := newModel(t, nil)
	checkScreen(t, m)
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	if cmd == nil || cmd() != tea.Quit() {
		t.Error("q at the plan does not quit")
	}
}

func TestPINScreen(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	if m.phase != phaseRunning {
		t.Fatalf("enter at the plan: phase %v", m.phase)
	}
	req := &request{prompt: `User PIN for token "ceremony"`, secret: true, reply: make(chan reply, 1)}
	send(m, stepStartedMsg{0}, stepDoneMsg{0, "1 of 1 custodians will be needed to recover"}, stepStartedMsg{1}, req)
	enter(m) // nothing typed: refused
	if len(req.reply) != 0 || !strings.Contains(m.View(), "nothing typed") {
		t.Fatal("an empty PIN was accepted")
	}
	typeText(m, "8642")
	v := checkScreen(t, m)
	if strings.Contains(v, "8642") {
		t.Fatal("the screen shows the PIN")
	}
	enter(m)
	got := <-req.reply
	if string(got.secret) != "8642" || got.err != nil {
		t.Fatalf("reply %q %v", got.secret, got.err)
	}
	if m.prompt != nil || m.input.Value() != "" || strings.Contains(m.View(), "8642") {
		t.Error("the PIN stays in the model after it was submitted")
	}
}

func TestConfirmScreen(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	send(m, stepStartedMsg{0}, stepDoneMsg{0, "1 of 1 custodians will be needed to recover"},
		stepStartedMsg{1}, stepDoneMsg{1, `token "ceremony" (serial 4a98c93aebfc4f1b)`}, stepStartedMsg{2},
		stepDoneMsg{2, "arn:aws:kms:eu-west-1:111122223333:key/bc418427"}, stepStartedMsg{3}, stepDoneMsg{3, "ok"}, stepStartedMsg{4},
		infoMsg(`key "payments" generated on the token, key check value 06437a`), progressMsg{1, 2},
		stepDoneMsg{4, "payments kcv 06437a, archive kcv 9d2e11"}, stepStartedMsg{5}, stepDoneMsg{5, "2 key(s) escrowed 1-of-1, all 1 subsets checked"},
		stepStartedMsg{6}, stepDoneMsg{6, "2 key(s) wrapped inside the HSM"}, stepStartedMsg{7}, progressMsg{0, 2})
	req := &request{prompt: `Import the material of "payments" (key check value 06437a) into arn:aws:kms:eu-west-1:111122223333:key/bc418427 (expires 2027-02-21T04:08:35Z). KMS will accept only this material for the key from now on.`, want: "payments", reply: make(chan reply, 1)}
	send(m, req)
	typeText(m, "paymnts")
	enter(m)
	if len(req.reply) != 0 {
		t.Fatal("a wrong alias confirmed the import")
	}
	checkScreen(t, m)
	typeText(m, "payments")
	enter(m)
	if got := <-req.reply; got.err != nil {
		t.Fatalf("confirm: %v", got.err)
	}
}

// TestEscAsksToStop: esc at a question asks for confirmation; n goes on
// with the question still open, y answers it with ErrInterrupted and the
// program does not quit while the engine runs.
func TestEscAsksToStop(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	req := &request{prompt: "confirm", want: "x", reply: make(chan reply, 1)}
	send(m, req)
	m.Update(tea.KeyMsg{Type: tea.KeyEsc})
	if len(req.reply) != 0 || !m.stopAsk || !strings.Contains(m.View(), "Stop the ceremony?") {
		t.Fatal("esc did not ask to confirm the stop")
	}
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("n")})
	if m.stopAsk || m.prompt != req || len(req.reply) != 0 || m.ui.StopRequested() {
		t.Fatal("n did not go back to the question")
	}
	m.Update(tea.KeyMsg{Type: tea.KeyEsc})
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("y")})
	got := <-req.reply
	if !errors.Is(got.err, ceremony.ErrInterrupted) || !m.ui.StopRequested() {
		t.Fatalf("y: reply %v, stop %v", got.err, m.ui.StopRequested())
	}
	if cmd != nil {
		t.Fatal("the program quits while the engine runs")
	}
	// A question asked after the stop is answered at once.
	if _, err := m.ui.Secret(context.Background(), "PIN"); !errors.Is(err, ceremony.ErrInterrupted) {
		t.Fatalf("a question after the stop: %v", err)
	}
}

// TestCtrlCDuringStep: ctrl+c while a step runs asks, then stops only
// through the engine; the screen says it waits for the calls already running.
func TestCtrlCDuringStep(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	send(m, stepStartedMsg{0}, stepDoneMsg{0, "ok"}, stepStartedMsg{1}, stepDoneMsg{1, "ok"}, stepStartedMsg{2})
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyCtrlC})
	if cmd != nil || !m.stopAsk {
		t.Fatal("ctrl+c during a step did not ask first")
	}
	checkScreen(t, m)
	_, cmd = m.Update(tea.KeyMsg{Type: tea.KeyCtrlC})
	if cmd != nil || !m.stopping || !m.ui.StopRequested() {
		t.Fatal("a second ctrl+c did not confirm the stop, or quit at once")
	}
	if !strings.Contains(m.View(), "waiting for the PKCS#11 and KMS calls already running") {
		t.Fatal("the screen does not say it waits for the calls already running")
	}
	send(m, doneMsg{err: &ceremony.StepError{Step: "kms-keys", Err: ceremony.ErrInterrupted, Changed: true},
		status: &ceremony.Status{Begun: true, Next: 3, Done: []string{"KMS key of payments (created): arn:aws:kms:eu-west-1:111122223333:key/bc418427-5d3f-4e0b-9c1a-7f6e2d8c9b10"}}})
	v := checkScreen(t, m)
	for _, want := range []string{"Stopped at step 3 (Create or check the KMS keys)", "The stop is recorded", "key/bc418427-5d3f-4e0b-9c1a-7f6e2d8c9b10", "To go on: keyceremony tui --config ceremony.yaml"} {
		if !strings.Contains(strings.ReplaceAll(v, "\n", ""), want) && !strings.Contains(m.Outcome().Report, want) {
			t.Errorf("stop screen lacks %q:\n%s", want, v)
		}
	}
	o := m.Outcome()
	if !o.Stopped() || !strings.Contains(o.Report, "arn:aws:kms:eu-west-1:111122223333:key/bc418427-5d3f-4e0b-9c1a-7f6e2d8c9b10") {
		t.Errorf("outcome: %+v", o)
	}
}

// TestStopBeforeStep: the engine stopped between two steps (the call of
// the step before finished, and the next one never began): the report says
// "before", not "at".
func TestStopBeforeStep(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	send(m, stepStartedMsg{0}, stepDoneMsg{0, "ok"}, stepStartedMsg{1}, stepDoneMsg{1, "ok"}, stepStartedMsg{2}, stepDoneMsg{2, "ok"})
	m.Update(tea.KeyMsg{Type: tea.KeyCtrlC})
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("y")})
	send(m, doneMsg{err: &ceremony.StepError{Step: "fetch-params", Err: ceremony.ErrInterrupted, Changed: true}, status: &ceremony.Status{Begun: true, Next: 3}})
	if r := m.Outcome().Report; !strings.HasPrefix(r, "Stopped before step 4 (Fetch KMS import parameters) began, as you asked;") {
		t.Errorf("report: %s", r)
	}
}

func TestFailedRetryable(t *testing.T) {
	calls := 0
	m := newModel(t, func(context.Context, *ceremony.Config, ceremony.UI) (*ceremony.Result, error) {
		calls++
		return nil, nil
	})
	enter(m)
	send(m, stepStartedMsg{0}, stepDoneMsg{0, "ok"}, stepStartedMsg{1}, doneMsg{err: &ceremony.StepError{Step: "open-token", Err: errors.New("wrong PIN for token \"ceremony\": nothing was changed; try again with the user PIN"), Changed: false}})
	checkScreen(t, m)
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")})
	if cmd == nil || m.phase != phaseRunning {
		t.Fatal("r did not retry a failure that changed nothing")
	}
}

func TestFailedResumable(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	send(m, stepStartedMsg{0}, stepDoneMsg{0, "ok"}, stepStartedMsg{1}, stepDoneMsg{1, "ok"}, stepStartedMsg{2},
		doneMsg{err: &ceremony.StepError{Step: "generate-keys", Err: hsm.ErrMechanism, Changed: true}})
	checkScreen(t, m)
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")})
	if cmd == nil || m.phase != phaseRunning {
		t.Fatal("r did not resume a ceremony that had changed something")
	}
}

func TestFailedResume(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	send(m, doneMsg{err: &ceremony.StepError{Step: "resume", Err: errors.New("cannot resume: bundle-one.json changed since it was recorded")}})
	// The screen names no internal step id.
	if v := checkScreen(t, m); !strings.Contains(v, "Resuming failed:") || strings.Contains(v, "Step resume") {
		t.Errorf("failed resume screen:\n%s", v)
	}
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")})
	if cmd != nil || m.phase != phaseFailed || !strings.Contains(m.View(), "q: quit") {
		t.Fatal("r retried a failed resume")
	}
}

func TestDoneScreen(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	for i := range m.steps {
		send(m, stepStartedMsg{i}, stepDoneMsg{i, "ok"})
	}
	vt := time.Date(2027, 2, 21, 4, 8, 35, 0, time.UTC)
	send(m, doneMsg{res: &ceremony.Result{OutDir: "/ceremony/out", Transcript: "/ceremony/out/transcript.jsonl", PublicKey: "/ceremony/out/signing-key.pem",
		SealHash:  "4c1fab130e4df772367649d83c049e83aa5b7c5d1e2f3a4b5c6d7e8f90a1b2c3",
		SealWords: transcripts.Words([]byte{0x4c, 0x1f, 0xab, 0x13, 0x0e, 0x4d, 0xf7, 0x72, 0x36, 0x76, 0x49, 0xd8, 0x3c, 0x04, 0x9e, 0x83}), Keys: []ceremony.KeyResult{{Label: "payments", KeyCheckValue: "06437a", ValidTo: &vt}}}})
	checkScreen(t, m)
}

// TestDoneScreenOffline: an offline ceremony's summary shows each key's
// bundle, the time its import parameters expire, and the complete upload
// command; steps 8 and 9 (nothing imported here) are marked skipped, not
// done.
func TestDoneScreenOffline(t *testing.T) {
	cfg, err := ceremony.ParseConfig([]byte(`
ceremony: {id: payments-2026, operator: alice, out_dir: /ceremony/out}
token: {label: ceremony}
keys:
  - {label: payments, params_file: params-payments.json, wrapping_key_sha256: 3f2a9c01a8f3e2b4d5c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c, valid_for: 90d}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	m := New(context.Background(), cfg, func(context.Context, *ceremony.Config, ceremony.UI) (*ceremony.Result, error) { return nil, nil })
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	enter(m)
	for i := range m.steps {
		send(m, stepStartedMsg{i}, stepDoneMsg{i, "ok"})
	}
	m.phase = phaseRunning
	if v := m.View(); !strings.Contains(v, " -  8 Import") || !strings.Contains(v, " -  9 Check") || strings.Contains(v, "✓  8") {
		t.Errorf("steps 8 and 9 of an offline ceremony are not marked skipped:\n%s", v)
	}
	by := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	const fp = "db56733b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b"
	upload := "keyceremony upload --bundle /ceremony/out/bundle-payments.json --transcript /ceremony/out/transcript.jsonl --fingerprint " + fp + " --valid-for 90d"
	send(m, doneMsg{res: &ceremony.Result{OutDir: "/ceremony/out", Transcript: "/ceremony/out/transcript.jsonl", PublicKey: "/ceremony/out/signing-key.pem", Offline: true, Fingerprint: fp,
		SealHash:  "4c1fab130e4df772367649d83c049e83aa5b7c5d1e2f3a4b5c6d7e8f90a1b2c3",
		SealWords: transcripts.Words([]byte{0x4c, 0x1f, 0xab, 0x13, 0x0e, 0x4d, 0xf7, 0x72, 0x36, 0x76, 0x49, 0xd8, 0x3c, 0x04, 0x9e, 0x83}),
		Keys:      []ceremony.KeyResult{{Label: "payments", KeyCheckValue: "06437a", Bundle: "/ceremony/out/bundle-payments.json", UploadCommand: upload, ImportBy: &by}}}})
	m.Update(tea.KeyMsg{Type: tea.KeyEnd})
	checkScreen(t, m)
	report := m.Outcome().Report
	for _, want := range []string{upload, "upload before    2026-11-27T09:30:00Z (the import parameters expire)", "bundle           /ceremony/out/bundle-payments.json"} {
		if !strings.Contains(report, want) {
			t.Errorf("the offline summary lacks %q:\n%s", want, report)
		}
	}
}

// TestNarrow checks that nothing overflows a narrow terminal.
func TestNarrow(t *testing.T) {
	m := newModel(t, nil)
	m.Update(tea.WindowSizeMsg{Width: 50, Height: 24})
	for _, l := range strings.Split(m.View(), "\n") {
		if w := lipgloss.Width(l); w > 50 {
			t.Errorf("line is %d wide at 50 columns: %q", w, l)
		}
	}
}

// BenchmarkFirstFrame measures the time from loading the config to the
// first rendered frame (the target: under 100 ms).
func BenchmarkFirstFrame(b *testing.B) {
	dir := b.TempDir()
	p := dir + "/ceremony.yaml"
	if err := os.WriteFile(p, []byte(testConfig), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		cfg, err := ceremony.LoadConfig(p)
		if err != nil {
			b.Fatal(err)
		}
		m := New(context.Background(), cfg, ceremony.Run)
		m.Init()
		m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
		if m.View() == "" {
			b.Fatal("empty frame")
		}
	}
}

func TestAskScreen(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	req := &request{prompt: "Custodian alice: type or paste your age recipient (age1…) or SSH public key (ssh-ed25519 …)", free: true, reply: make(chan reply, 1)}
	send(m, stepStartedMsg{0}, req)
	typeText(m, "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	checkScreen(t, m)
	enter(m)
	if got := <-req.reply; string(got.secret) != "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p" || got.err != nil {
		t.Fatalf("reply %q %v", got.secret, got.err)
	}
}

// TestScrollHelpAndSize: a long body scrolls to every line, ? shows the
// keys, and a terminal below the minimum says so.
func TestScrollHelpAndSize(t *testing.T) {
	m := newModel(t, nil)
	m.Update(tea.WindowSizeMsg{Width: 60, Height: 15})
	if strings.Contains(m.View(), "Evidence") {
		t.Fatal("the test needs a plan longer than the screen")
	}
	if !strings.Contains(m.View(), "↑↓/pgup/pgdn: scroll") {
		t.Error("no scroll hint on a screen that scrolls")
	}
	m.Update(tea.KeyMsg{Type: tea.KeyEnd})
	if v := m.View(); !strings.Contains(v, "Evidence") || !strings.Contains(v, "keyceremony · ceremony") {
		t.Errorf("end does not show the last line under the title:\n%s", v)
	}
	m.Update(tea.KeyMsg{Type: tea.KeyHome})
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("j")})
	if strings.Contains(m.View(), "Review the plan") {
		t.Error("j did not scroll a line")
	}
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("?")})
	checkFits(t, m.View(), 60, 15)
	if !strings.Contains(m.View(), "stop the ceremony safely") {
		t.Errorf("? shows no help:\n%s", m.View())
	}
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("x")})
	if m.help {
		t.Error("a key does not close the help")
	}
	m.Update(tea.WindowSizeMsg{Width: 40, Height: 10})
	if v := strings.ReplaceAll(m.View(), "\n", " "); !strings.Contains(v, "needs at least 50x12") {
		t.Errorf("too small:\n%s", v)
	}
}

// TestSecretKeyPasted: a pasted age secret key is never shown nor sent.
func TestSecretKeyPasted(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	req := &request{prompt: "Custodian carol: type or paste your age recipient", free: true, reply: make(chan reply, 1)}
	send(m, stepStartedMsg{0}, req)
	const secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(secret), Paste: true})
	v := m.View()
	if strings.Contains(v, "QQQQQQQQ") || !strings.Contains(v, "That is a SECRET key") || m.input.Value() != "" {
		t.Fatalf("the secret key is shown or kept:\n%s", v)
	}
	enter(m)
	if len(req.reply) != 0 {
		t.Fatal("an empty answer was sent after the refusal")
	}
	typeText(m, "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	if strings.Contains(m.View(), "SECRET") {
		t.Error("the warning stays after the custodian typed again")
	}
}

// TestSecretKeyPastedInPieces: a terminal may deliver a paste in pieces;
// what follows the start of a secret key is dropped too: the rest of an age
// identity until something lower-case (a public age1… recipient) comes, the
// rest of a private key file until a key that is not typing.
func TestSecretKeyPastedInPieces(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	req := &request{prompt: "Custodian carol: type or paste your age recipient", free: true, reply: make(chan reply, 1)}
	send(m, stepStartedMsg{0}, req)
	const secret = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
	for _, piece := range []string{secret[:10], secret[10:30], secret[30:50], secret[50:]} {
		m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(piece)})
	}
	if v := m.View(); strings.Contains(v, "GFPYYSJZ") || m.input.Value() != "" || !strings.Contains(v, "SECRET") {
		t.Fatalf("the rest of the secret key is shown or kept (%q):\n%s", m.input.Value(), v)
	}
	const recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(recipient)})
	if m.input.Value() != recipient {
		t.Fatalf("the public recipient after the secret key was not taken: %q", m.input.Value())
	}
	m.input.Reset()
	for _, piece := range []string{"-----BEGIN OPENSSH PRI", "VATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmU", "AAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"} {
		m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(piece)})
	}
	if v := m.View(); strings.Contains(v, "b3Bl") || strings.Contains(v, "AAAAEbm9u") || m.input.Value() != "" {
		t.Fatalf("the rest of a private key file is shown or kept (%q):\n%s", m.input.Value(), v)
	}
	m.Update(tea.KeyMsg{Type: tea.KeyBackspace})
	typeText(m, "age1")
	if m.input.Value() != "age1" {
		t.Fatalf("typing after backspace was dropped: %q", m.input.Value())
	}
}

// TestHandOverScreen: the hand-over names the custodian and enter answers.
func TestHandOverScreen(t *testing.T) {
	m := newModel(t, nil)
	enter(m)
	req := &request{prompt: "Custodian carol chooses the passphrase their share is sealed to, out of sight of everyone else.", handOver: "carol", reply: make(chan reply, 1)}
	send(m, stepStartedMsg{0}, req)
	typeText(m, "x")
	v := checkScreen(t, m)
	if !strings.Contains(v, "Hand the keyboard to carol.") || len(req.reply) != 0 {
		t.Fatalf("hand-over:\n%s", v)
	}
	enter(m)
	if got := <-req.reply; got.err != nil {
		t.Fatal(got.err)
	}
}

// TestQuitAtPlan: q at the plan is not an error and says nothing changed.
func TestQuitAtPlan(t *testing.T) {
	m := newModel(t, nil)
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	if cmd == nil {
		t.Fatal("q did not quit")
	}
	o := m.Outcome()
	if o.Started || o.Err != nil || !strings.Contains(o.Report, "not started: nothing was changed") {
		t.Errorf("outcome %+v", o)
	}
}
