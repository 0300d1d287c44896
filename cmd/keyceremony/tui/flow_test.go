package tui_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/teatest"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/cmd/keyceremony/tui"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/internal/kmslocal"
	"github.com/keyceremony/keyceremony/transcripts"
)

// TestFlowSoftHSM drives a whole ceremony through the TUI with teatest: a
// real SoftHSM token, the loopback KMS through the real AWS SDK, and the
// PIN and the confirmation typed as keys.
func TestFlowSoftHSM(t *testing.T) {
	dir, cfg := flowSetup(t)
	tm, waitFor := startFlow(t, cfg)
	waitFor("Review the plan")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`User PIN for token "ceremony"`)
	tm.Type("0000") // wrong first: the PIN alone is asked again
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`User PIN for token "ceremony" (try 2 of 3)`)
	tm.Type(hsmtest.PIN)
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor("Hand the keyboard to alice.")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`Custodian alice (1 of 1): take share-1-alice.age`)
	tm.Type("alice")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`Type "payments" to confirm`)
	tm.Type("payments")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor("complete: the transcript is sealed")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))

	data, err := os.ReadFile(filepath.Join(dir, "out", "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := transcripts.Verify(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.CeremonyID != "tui-flow" || len(res.Events) < 7 {
		t.Errorf("transcript: %+v", res.Header)
	}
	if bytes.Contains(data, []byte(`"`+hsmtest.PIN+`"`)) {
		t.Error("transcript contains the PIN")
	}
}

// flowSetup makes a SoftHSM token, a loopback KMS and a one-key config.
func flowSetup(t *testing.T) (string, *ceremony.Config) {
	t.Helper()
	hsmtest.Setup(t, "ceremony")
	srv := kmslocal.New(kmslocal.Options{})
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_KMS": hs.URL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	os.Unsetenv("KEYCEREMONY_PIN")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "ceremony.yaml")
	os.WriteFile(cfgPath, []byte(flowConfig), 0o600)
	cfg, err := ceremony.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

const flowConfig = `
ceremony:
  id: tui-flow
  operator: alice
  out_dir: out
token:
  label: ceremony
kms:
  wrapping_algorithm: RSAES_OAEP_SHA_1
  wrapping_key_spec: RSA_2048
keys:
  - label: payments
    create: true
    valid_for: 90d
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - name: alice
      recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
`

// startFlow starts the TUI of cfg under teatest at 80×24.
func startFlow(t *testing.T, cfg *ceremony.Config) (*teatest.TestModel, func(string) string) {
	t.Helper()
	m := tui.New(context.Background(), cfg, ceremony.Run)
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	m.SetSender(tm.Send)
	var seen []byte
	waitFor := func(s string) string {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool {
			seen = append(seen, b...)
			return bytes.Contains(seen, []byte(s))
		}, teatest.WithDuration(20*time.Second), teatest.WithCheckInterval(20*time.Millisecond))
		out := string(seen)
		seen = nil
		return out
	}
	return tm, waitFor
}

// TestFlowStopAndResume stops a real ceremony with ctrl+c at the import
// confirmation (after KMS keys were created and the key generated): the stop
// is confirmed, recorded in the transcript, and the screen says what was
// changed. Run again, the plan lists what is done and what remains, and the
// ceremony completes without doing anything twice.
func TestFlowStopAndResume(t *testing.T) {
	dir, cfg := flowSetup(t)
	tm, waitFor := startFlow(t, cfg)
	waitFor("Review the plan")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`User PIN for token "ceremony"`)
	tm.Type(hsmtest.PIN)
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor("Hand the keyboard to alice.")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`take share-1-alice.age`)
	tm.Type("alice")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`Type "payments" to confirm`)
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlC})
	waitFor("Stop the ceremony?")
	tm.Type("y")
	screen := waitFor("To go on:")
	for _, want := range []string{"Stopped at step 8 (Import the wrapped material into KMS)", "The stop is recorded", "KMS key of payments (created)", "key payments generated on the token"} {
		if !strings.Contains(screen, want) {
			t.Errorf("stop screen lacks %q", want)
		}
	}
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	out := tm.FinalModel(t).(*tui.Model).Outcome()
	if !out.Stopped() || !strings.Contains(out.Report, "To go on: keyceremony tui --config ceremony.yaml") {
		t.Fatalf("outcome: %+v", out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "out", "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if n := len(lines); n < 3 || !strings.Contains(lines[n-2], `"step":"interrupted"`) || !strings.Contains(lines[n-1], `"step":"checkpoint"`) {
		t.Fatalf("the transcript does not end with the signed stop:\n%s", strings.Join(lines[max(len(lines)-3, 0):], "\n"))
	}
	if strings.Contains(string(data), `"step":"import"`) {
		t.Fatal("the transcript records an import that did not happen")
	}

	// Again: the plan says what is done and what remains.
	tm, waitFor = startFlow(t, cfg)
	plan := waitFor("enter: resume")
	for _, want := range []string{"This ceremony was begun before", "stopped by the operator during step 8", "key payments generated on the token", "Remaining"} {
		if !strings.Contains(plan, want) {
			t.Errorf("resume plan lacks %q", want)
		}
	}
	if strings.Contains(plan, "Nothing has happened yet") {
		t.Error("the resume plan says nothing has happened")
	}
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`User PIN for token "ceremony"`)
	tm.Type(hsmtest.PIN)
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`Type "payments" to confirm`)
	tm.Type("payments")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor("complete: the transcript is sealed")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	data, _ = os.ReadFile(filepath.Join(dir, "out", "transcript.jsonl"))
	if _, err := transcripts.Verify(bytes.NewReader(data), nil); err != nil {
		t.Fatalf("the resumed transcript does not verify: %v", err)
	}
	if n := strings.Count(string(data), `"step":"kms-key"`); n != 1 {
		t.Errorf("%d kms-key events: a KMS key was made twice", n)
	}

	// A third time: sealed, shown complete, nothing runs.
	tm, waitFor = startFlow(t, cfg)
	sealed := waitFor("Nothing will run.")
	if !strings.Contains(sealed, "keyceremony verify --pubkey") {
		t.Errorf("the sealed ceremony's screen lacks the verify command:\n%s", sealed)
	}
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	if o := tm.FinalModel(t).(*tui.Model).Outcome(); !o.Sealed || o.Started {
		t.Errorf("sealed outcome: %+v", o)
	}
}
