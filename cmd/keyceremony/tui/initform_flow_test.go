package tui

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/teatest"
)

// TestInitFormFlow drives the init form as a program, keys in and screen
// out: a refused id is said on screen at its question, the answers are
// reviewed before anything is written, and enter at the review ends the
// program with exactly the answers typed.
func TestInitFormFlow(t *testing.T) {
	tm := teatest.NewTestModel(t, NewInitForm("ceremony.yaml", formDefaults, formCheck), teatest.WithInitialTermSize(80, 24))
	waitFor := func(s string) {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(s)) },
			teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
	}
	answer := func(v string) {
		if v != "" {
			tm.Send(tea.KeyMsg{Type: tea.KeyCtrlU})
			tm.Type(v)
		}
		tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	}
	waitFor("ceremony-2026-11-26")
	answer("payments 2027")
	waitFor(`ceremony.id "payments 2027"`)
	for _, v := range []string{"payments-2027", "", "", "90d", "RSAES_OAEP_SHA_1", "RSA_2048", "payments archive", "alice bob",
		"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "passphrase", ""} {
		answer(v)
	}
	waitFor("label: archive")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	f := tm.FinalModel(t).(*InitForm)
	if !f.done || f.quit {
		t.Fatalf("the form did not end by writing: done %v, quit %v", f.done, f.quit)
	}
	want := InitAnswers{ID: "payments-2027", Operator: "alice", TokenLabel: "ceremony", ValidFor: "90d", Algorithm: "RSAES_OAEP_SHA_1", KeySpec: "RSA_2048",
		Keys: []string{"payments", "archive"}, Custodians: []InitCustodian{{"alice", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}, {"bob", "passphrase"}}, Threshold: 2}
	if got := f.Answers(); fmt.Sprint(*got) != fmt.Sprint(want) {
		t.Errorf("answers\n got %+v\nwant %+v", *got, want)
	}
}

// TestInitFormFlowQuit: esc then y ends the program without answers.
func TestInitFormFlowQuit(t *testing.T) {
	tm := teatest.NewTestModel(t, NewInitForm("ceremony.yaml", formDefaults, formCheck), teatest.WithInitialTermSize(60, 15))
	tm.Type("x")
	tm.Send(tea.KeyMsg{Type: tea.KeyEsc})
	tm.Type("y")
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	if f := tm.FinalModel(t).(*InitForm); !f.quit || f.done || f.Answers() != nil {
		t.Fatalf("esc, y did not quit without answers: quit %v, done %v", f.quit, f.done)
	}
}
