package tui

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
)

// formCheck stands for keyceremony init's check: it refuses what the
// config would refuse, naming the field as ParseConfig does.
func formCheck(a InitAnswers) (string, error) {
	switch {
	case strings.Contains(a.ID, " "):
		return "", fmt.Errorf("these values do not make a valid config: ceremony.id %q must be 1-64 letters, digits, '.', '_' or '-'", a.ID)
	case a.ValidFor == "400d":
		return "", errors.New(`these values do not make a valid config: keys[0].valid_for "400d" is more than 365 days, the most KMS allows`)
	case len(a.Custodians) > 1 && a.Custodians[1].Recipient == "age1bad":
		return "", errors.New(`these values do not make a valid config: escrow.custodians[1].recipient: invalid age recipient`)
	case a.Threshold > len(a.Custodians):
		return "", fmt.Errorf("these values do not make a valid config: escrow.threshold %d must be between 1 and the number of custodians (%d)", a.Threshold, len(a.Custodians))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ceremony:\n  id: %s\n  operator: %s\nkeys:\n", a.ID, a.Operator)
	for _, k := range a.Keys {
		fmt.Fprintf(&b, "  - label: %s          # CKA_LABEL on the token, a long comment to wrap at 60 columns\n", k)
	}
	fmt.Fprintf(&b, "escrow:\n  threshold: %d\n  custodians:\n", max(a.Threshold, len(a.Custodians)/2+1))
	for _, c := range a.Custodians {
		fmt.Fprintf(&b, "    - name: %s\n      recipient: %s\n", c.Name, c.Recipient)
	}
	return b.String(), nil
}

var formDefaults = InitAnswers{ID: "ceremony-2026-11-26", Operator: "alice", TokenLabel: "ceremony", ValidFor: "365d", Algorithm: "RSAES_OAEP_SHA_256", KeySpec: "RSA_4096",
	Keys: []string{"key-1"}, Custodians: []InitCustodian{{"alice", "ask"}, {"bob", "ask"}, {"carol", "ask"}}}

func newForm() *InitForm {
	f := NewInitForm("ceremony.yaml", formDefaults, formCheck)
	f.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	return f
}

// answer replaces the value shown with v (empty: keeps it) and submits it.
func answer(f *InitForm, v string) {
	if v != "" {
		f.Update(tea.KeyMsg{Type: tea.KeyCtrlU})
		for _, r := range v {
			f.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
		}
	}
	f.Update(tea.KeyMsg{Type: tea.KeyEnter})
}

// TestInitFormScreens: the first question, a refused answer said at its
// question, a custodian's question after the answers so far, the review
// (scrolled to its end), the help and quitting, at 80x24 and 60x15.
func TestInitFormScreens(t *testing.T) {
	f := newForm()
	t.Run("first", func(t *testing.T) { checkScreen(t, f) })
	answer(f, "payments 2027")
	if f.cur != 0 || !strings.Contains(f.warn, `ceremony.id "payments 2027"`) || strings.HasPrefix(f.warn, "these values") {
		t.Fatalf("a bad id was not refused at its question: cur %d, warn %q", f.cur, f.warn)
	}
	t.Run("refused", func(t *testing.T) { checkScreen(t, f) })
	answer(f, "payments-2027")
	for _, v := range []string{"", "", "90d", "RSAES_OAEP_SHA_1", "RSA_2048", "payments archive", "alice bob"} {
		answer(f, v)
	}
	t.Run("custodian", func(t *testing.T) { checkScreen(t, f) })
	answer(f, "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	answer(f, "passphrase")
	answer(f, "")
	if f.review == "" {
		t.Fatalf("no review after the last answer: cur %d, warn %q", f.cur, f.warn)
	}
	f.Update(tea.KeyMsg{Type: tea.KeyEnd})
	t.Run("review", func(t *testing.T) { checkScreen(t, f) })
	f.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("?")})
	t.Run("help", func(t *testing.T) { checkScreen(t, f) })
	f.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("x")})
	f.Update(tea.KeyMsg{Type: tea.KeyEsc})
	t.Run("quit", func(t *testing.T) { checkScreen(t, f) })
	if _, cmd := f.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("n")}); cmd != nil || f.quitAsk {
		t.Fatal("n did not go back to the review")
	}
	if _, cmd := f.Update(tea.KeyMsg{Type: tea.KeyEnter}); cmd == nil {
		t.Fatal("enter at the review did not end the form")
	}
	got := f.Answers()
	want := InitAnswers{ID: "payments-2027", Operator: "alice", TokenLabel: "ceremony", ValidFor: "90d", Algorithm: "RSAES_OAEP_SHA_1", KeySpec: "RSA_2048",
		Keys: []string{"payments", "archive"}, Custodians: []InitCustodian{{"alice", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}, {"bob", "passphrase"}}, Threshold: 2}
	if fmt.Sprint(*got) != fmt.Sprint(want) {
		t.Errorf("answers\n got %+v\nwant %+v", *got, want)
	}
}

// TestInitFormBackAndErrors: an error about an earlier answer takes the form
// back to that question; shift+tab goes back with the answer kept; a
// pasted secret key is never shown nor kept; renaming custodians keeps the
// recipients given; quitting keeps nothing.
func TestInitFormBackAndErrors(t *testing.T) {
	f := newForm()
	answer(f, "")
	answer(f, "")
	answer(f, "")
	answer(f, "400d")
	if f.cur != 3 || !strings.HasPrefix(f.warn, `keys[0].valid_for "400d"`) {
		t.Fatalf("a bad expiry: cur %d, warn %q", f.cur, f.warn)
	}
	answer(f, "30d")
	f.Update(tea.KeyMsg{Type: tea.KeyShiftTab})
	if f.cur != 3 || f.input.Value() != "30d" {
		t.Fatalf("shift+tab: cur %d, value %q", f.cur, f.input.Value())
	}
	for _, v := range []string{"", "", "", "", ""} {
		answer(f, v)
	}
	// alice's question: a secret key pasted is wiped at once.
	secret := "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
	f.Update(tea.KeyMsg{Type: tea.KeyCtrlU})
	for _, piece := range []string{secret[:20], secret[20:40], secret[40:]} { // a paste in pieces
		f.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(piece)})
	}
	if strings.Contains(f.View(), secret[:20]) || f.a.Custodians[0].Recipient != "ask" || !strings.Contains(f.warn, "SECRET key") {
		t.Fatalf("a pasted secret key: recipient %q, screen:\n%s", f.a.Custodians[0].Recipient, f.View())
	}
	if f.input.Value() != "" {
		t.Fatalf("the rest of a secret key pasted in pieces was taken: %q", f.input.Value())
	}
	answer(f, "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p") // alice
	answer(f, "age1bad")                                                        // bob: refused when checked
	if f.cur != 9 || !strings.Contains(f.warn, "escrow.custodians[1].recipient") {
		t.Fatalf("a bad recipient: cur %d, warn %q", f.cur, f.warn)
	}
	answer(f, "passphrase")
	answer(f, "")  // carol: ask
	answer(f, "4") // more than the custodians
	if f.cur != 11 || !strings.Contains(f.warn, "escrow.threshold 4") {
		t.Fatalf("a threshold of 4: cur %d, warn %q", f.cur, f.warn)
	}
	// Back to the names: renaming keeps each place's recipient.
	for f.cur > 7 {
		f.Update(tea.KeyMsg{Type: tea.KeyShiftTab})
	}
	answer(f, "ann bo")
	if f.a.Custodians[0] != (InitCustodian{"ann", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}) || len(f.a.Custodians) != 2 {
		t.Fatalf("renamed custodians: %+v", f.a.Custodians)
	}
	f.Update(tea.KeyMsg{Type: tea.KeyCtrlC})
	if _, cmd := f.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("y")}); cmd == nil || f.Answers() != nil {
		t.Fatal("quitting did not end the form with no answers")
	}
}

// TestInitFormTooSmall: below the minimum size the form says so.
func TestInitFormTooSmall(t *testing.T) {
	f := newForm()
	f.Update(tea.WindowSizeMsg{Width: 40, Height: 10})
	if v := strings.Join(strings.Fields(f.View()), " "); !strings.HasPrefix(v, "The terminal is 40x10: keyceremony needs at least 50x12. Make the window larger: everything waits") {
		t.Errorf("too small:\n%s", v)
	}
}
