package tui_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	os.WriteFile(cfgPath, []byte(`
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
`), 0o600)
	cfg, err := ceremony.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	m := tui.New(context.Background(), cfg, ceremony.Run)
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	m.SetSender(tm.Send)
	waitFor := func(s string) {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(s)) },
			teatest.WithDuration(20*time.Second), teatest.WithCheckInterval(20*time.Millisecond))
	}
	waitFor("Review the plan")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`User PIN for token "ceremony"`)
	tm.Type("0000") // wrong first: the error screen offers a retry
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor("r: retry")
	tm.Type("r")
	waitFor(`User PIN for token "ceremony"`)
	tm.Type(hsmtest.PIN)
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`Custodian alice (1 of 1): take share-1-alice.age`)
	tm.Type("alice")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(`Type "payments" to confirm`)
	tm.Type("payments")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor("Ceremony complete.")
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
