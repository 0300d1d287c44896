package tui

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"
)

// InitAnswers are the values of a starter config, asked by [AskInit].
type InitAnswers struct {
	ID, Operator, TokenLabel, ValidFor, Algorithm, KeySpec string
	Keys                                                   []string
	Custodians                                             []InitCustodian
	// Threshold is M; 0 means a majority of the custodians.
	Threshold int
}

// InitCustodian is a custodian of a starter config: Recipient is an age
// or SSH recipient, "passphrase" or "ask".
type InitCustodian struct{ Name, Recipient string }

// InitCheck renders answers into the config text, or says what is wrong
// with them in an error naming the config field ("keys[0].valid_for …").
type InitCheck func(InitAnswers) (string, error)

// AskInit opens a form on the terminal asking for each value of a new
// config written to file, starting from def: enter keeps a value, and
// check is asked after each answer. It returns the answers once the
// operator has reviewed the config check renders, or nil when they quit.
func AskInit(ctx context.Context, file string, def InitAnswers, check InitCheck) (*InitAnswers, error) {
	if os.Getenv("NO_COLOR") != "" {
		lipgloss.SetColorProfile(termenv.Ascii)
	}
	m := NewInitForm(file, def, check)
	final, err := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx)).Run()
	if err != nil {
		return nil, fmt.Errorf("terminal UI failed: %w", err)
	}
	return final.(*InitForm).Answers(), nil
}

// InitForm is the bubbletea model of keyceremony init's form: one question
// at a time, each answer checked at once, then the config to review.
type InitForm struct {
	file   string
	a      InitAnswers
	check  InitCheck
	cur    int
	input  textinput.Model
	warn   string
	guard  secretGuard
	review string // the rendered config, once every answer is in
	// quitAsk shows "quit without writing?"; done and quit end the form.
	quitAsk, done, quit bool
	help                bool
	width, height       int
	offset              int
}

// NewInitForm returns the form of a config written to file.
func NewInitForm(file string, def InitAnswers, check InitCheck) *InitForm {
	in := textinput.New()
	in.Prompt = "> "
	in.CharLimit = 16384 // an SSH RSA public key is long
	f := &InitForm{file: file, a: def, check: check, input: in, width: 80, height: 24}
	f.load()
	return f
}

// Answers returns the answers once the operator chose to write the config,
// nil otherwise.
func (f *InitForm) Answers() *InitAnswers {
	if !f.done {
		return nil
	}
	a := f.a
	return &a
}

// field is one question of the form: what it asks, about which part of the
// config (its errors name path), and how its answer is kept.
type field struct {
	question, help string
	// path matches the config paths that errors about this answer name.
	path *regexp.Regexp
	get  func(*InitAnswers) string
	set  func(*InitAnswers, string) error
}

func str(p *string) (func(*InitAnswers) string, func(*InitAnswers, string) error) {
	return func(*InitAnswers) string { return *p }, func(_ *InitAnswers, v string) error { *p = v; return nil }
}

// fields are the questions, given the answers so far: one per custodian
// named.
func (f *InitForm) fields() []field {
	a := &f.a
	fs := []field{
		{question: "Ceremony id", help: "Names the ceremony in the transcript and in every file; the evidence goes into the directory ./ID beside the config.", path: regexp.MustCompile(`^ceremony\.(id|out_dir)`)},
		{question: "Operator", help: "The person at the keyboard during the ceremony, named in every event of the transcript.", path: regexp.MustCompile(`^ceremony\.operator`)},
		{question: "Token label", help: "The label of the PKCS#11 token the keys are made on (softhsm2-util --show-slots, or the HSM's own tool). keyceremony probe --token LABEL says whether a ceremony can run on it.", path: regexp.MustCompile(`^token\.`)},
		{question: "Expiry of every key after import", help: "How long KMS keeps the imported material: 1 to 365 days (90d, 365d), or hours (2160h). Each key can be changed in the file later (valid_to, does_not_expire).", path: regexp.MustCompile(`^keys\[\d+\]\.valid_for`)},
		{question: "KMS wrapping algorithm", help: "How the key material is wrapped for KMS: RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256. SoftHSM 2.6 wraps inside the token only with the SHA_1 ones; keyceremony probe says what a token can do.", path: regexp.MustCompile(`^kms\.wrapping_algorithm`)},
		{question: "KMS wrapping key spec", help: "The size of KMS's wrapping key: RSA_2048, RSA_3072 or RSA_4096.", path: regexp.MustCompile(`^kms\.wrapping_key_spec`)},
		{question: "Key labels, separated by spaces", help: "One label per key to make: letters, digits, '.', '_' and '-'. Each becomes a key on the token and a new KMS key (Origin EXTERNAL).", path: regexp.MustCompile(`^keys\[\d+\]`),
			get: func(a *InitAnswers) string { return strings.Join(a.Keys, " ") },
			set: func(a *InitAnswers, v string) error { a.Keys = strings.Fields(v); return nil }},
		{question: "Custodian names, separated by spaces", help: "The escrow custodians, in share order: any M of them together can recover the keys, fewer learn nothing. Each is asked for next.", path: regexp.MustCompile(`^escrow\.custodians\[\d+\]\.name`),
			get: func(a *InitAnswers) string {
				var ns []string
				for _, c := range a.Custodians {
					ns = append(ns, c.Name)
				}
				return strings.Join(ns, " ")
			},
			set: func(a *InitAnswers, v string) error {
				old := a.Custodians
				a.Custodians = nil
				for i, n := range strings.Fields(v) {
					c := InitCustodian{n, "ask"}
					if i < len(old) {
						c.Recipient = old[i].Recipient
					}
					a.Custodians = append(a.Custodians, c)
				}
				return nil
			}},
	}
	fs[0].get, fs[0].set = str(&a.ID)
	fs[1].get, fs[1].set = str(&a.Operator)
	fs[2].get, fs[2].set = str(&a.TokenLabel)
	fs[3].get, fs[3].set = str(&a.ValidFor)
	fs[4].get, fs[4].set = str(&a.Algorithm)
	fs[5].get, fs[5].set = str(&a.KeySpec)
	for i := range a.Custodians {
		c := &a.Custodians[i]
		fs = append(fs, field{question: "Custodian " + c.Name + ": age1… or ssh-… recipient, passphrase, or ask",
			help: "The PUBLIC key " + c.Name + "'s share is sealed to (age-keygen -pq makes a post-quantum one; an SSH public key works too); or passphrase: " + c.Name + " types one in the TUI; or ask: " + c.Name + " pastes the recipient in the TUI. Never paste a secret key.",
			path: regexp.MustCompile(`^escrow\.custodians\[` + strconv.Itoa(i) + `\]`),
			get:  func(*InitAnswers) string { return c.Recipient },
			set:  func(_ *InitAnswers, v string) error { c.Recipient = v; return nil }})
	}
	return append(fs, field{question: "Custodians needed to recover", help: "M: how many custodians must bring their shares to recover the keys. Fewer learn nothing about them.", path: regexp.MustCompile(`^escrow\.`),
		get: func(a *InitAnswers) string {
			if a.Threshold == 0 {
				return strconv.Itoa(len(a.Custodians)/2 + 1)
			}
			return strconv.Itoa(a.Threshold)
		},
		set: func(a *InitAnswers, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("%q is not a number of custodians: type a number from 1 to %d", v, len(a.Custodians))
			}
			a.Threshold = n
			return nil
		}})
}

// load puts the current field's value in the input.
func (f *InitForm) load() {
	f.guard = guardOff
	f.input.Reset()
	f.input.SetValue(f.fields()[f.cur].get(&f.a))
	f.input.CursorEnd()
	f.input.Focus()
	f.offset = 0
}

// Init implements tea.Model.
func (f *InitForm) Init() tea.Cmd { return textinput.Blink }

// Update implements tea.Model.
func (f *InitForm) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		f.width, f.height = msg.Width, msg.Height
		return f, nil
	case tea.KeyMsg:
		return f.key(msg)
	}
	return f, nil
}

func (f *InitForm) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.Type == tea.KeyCtrlJ {
		k = tea.KeyMsg{Type: tea.KeyEnter}
	}
	switch {
	case f.help:
		f.help = false
		return f, nil
	case f.quitAsk:
		switch k.String() {
		case "y", "Y", "ctrl+c":
			f.quit = true
			return f, tea.Quit
		case "n", "N", "esc":
			f.quitAsk = false
		}
		return f, nil
	}
	switch k.Type {
	case tea.KeyCtrlC, tea.KeyEsc:
		f.quitAsk = true
		return f, nil
	case tea.KeyF1:
		f.help = true
		return f, nil
	case tea.KeyShiftTab:
		f.back()
		return f, nil
	case tea.KeyUp, tea.KeyDown, tea.KeyPgUp, tea.KeyPgDown:
		f.scroll(k.String())
		return f, nil
	case tea.KeyEnter:
		return f, f.next()
	}
	if f.review != "" {
		if k.String() == "?" {
			f.help = true
		} else {
			f.scroll(k.String())
		}
		return f, nil
	}
	if f.guard.drop(k) {
		return f, nil
	}
	var cmd tea.Cmd
	f.input, cmd = f.input.Update(k)
	f.warn = ""
	if f.guard.arm(f.input.Value()) {
		// Never echo a secret key, not even for a moment.
		f.input.Reset()
		f.warn = secretWarning
	}
	return f, cmd
}

// next takes the answer, checks it and moves on; on the review screen it
// writes.
func (f *InitForm) next() tea.Cmd {
	if f.review != "" {
		f.done = true
		return tea.Quit
	}
	fs := f.fields()
	v := strings.TrimSpace(f.input.Value())
	if v == "" {
		// Cleared and nothing typed: the value shown before stays.
		v = fs[f.cur].get(&f.a)
	}
	if err := fs[f.cur].set(&f.a, v); err != nil {
		f.warn = err.Error()
		return nil
	}
	fs = f.fields() // the custodians named may have changed
	text, err := f.check(f.a)
	if err != nil {
		// An error about this answer or an earlier one is said now, at
		// the question it is about; one about a later question waits for
		// it.
		at := f.cur
		for i, fl := range fs {
			if fl.path.MatchString(configPath(err)) {
				at = i
				break
			}
		}
		if at <= f.cur || f.cur == len(fs)-1 {
			f.cur = min(at, len(fs)-1)
			f.load()
			f.warn = configPath(err)
			return nil
		}
	}
	if f.cur == len(fs)-1 {
		f.review = text
		f.input.Blur()
		f.offset = 0
		return nil
	}
	f.cur++
	f.load()
	return nil
}

// back goes to the question before, or from the review to the last one.
func (f *InitForm) back() {
	f.warn = ""
	if f.review != "" {
		f.review = ""
		f.load()
		return
	}
	if f.cur > 0 {
		f.cur--
		f.load()
	}
}

// configPath is the config path an error from InitCheck begins with
// ("keys[0].valid_for …"), after any prefix naming what failed.
func configPath(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "config: "); i >= 0 {
		s = s[i+len("config: "):]
	}
	return s
}

func (f *InitForm) size() (int, int) { return screenSize(f.width, f.height) }

func (f *InitForm) scroll(k string) {
	w, h := f.size()
	n := len(f.body(w))
	avail := max(h-len(f.header(w))-len(f.footer(w)), 1)
	f.offset, _ = scroll(k, min(f.offset, max(n-avail, 0)), n, avail)
}

// View implements tea.Model: a title, a body that scrolls (the answers so
// far and the question's help, or the config to review), and a footer that
// stays (the question, the answer typed and the key hints).
func (f *InitForm) View() string {
	w, h := f.size()
	if w < minWidth || h < minHeight {
		return tooSmall(w, h)
	}
	header, body, footer := f.header(w), f.body(w), f.footer(w)
	avail := max(h-len(header)-len(footer), 1)
	return compose(header, body, footer, min(f.offset, max(len(body)-avail, 0)), h)
}

func (f *InitForm) header(w int) []string {
	right := fmt.Sprintf("question %d/%d", f.cur+1, len(f.fields()))
	if f.review != "" {
		right = "review"
	}
	return titleBar(" "+titleStyle.Render("keyceremony init")+" · "+f.file, right, w)
}

func (f *InitForm) body(w int) []string {
	var out []string
	add := func(indent int, s string) { out = append(out, wrap(s, w, indent)...) }
	if f.help {
		helpBody(add, initHelp, 17)
		return out
	}
	if f.review != "" {
		add(1, fmt.Sprintf(" This is the config that will be written to %s. Nothing is written until enter.", f.file))
		add(0, "")
		for _, l := range strings.Split(strings.TrimRight(f.review, "\n"), "\n") {
			add(indentOf(l)+3, " "+l)
		}
		return out
	}
	add(1, fmt.Sprintf(" A new ceremony config, to be written to %s. Each question comes with a value: enter keeps it, or type another.", f.file))
	add(0, "")
	fs := f.fields()
	qw := 0
	for _, fl := range fs[:f.cur] {
		qw = max(qw, min(ansi.StringWidth(fl.question), 36))
	}
	for _, fl := range fs[:f.cur] {
		add(qw+5, fmt.Sprintf(" ✓ %-*s  %s", qw, fl.question, fl.get(&f.a)))
	}
	if f.cur > 0 {
		add(0, "")
	}
	add(1, " "+fs[f.cur].help)
	return out
}

func (f *InitForm) footer(w int) []string {
	var out []string
	add := func(indent int, s string) { out = append(out, wrap(s, w, indent)...) }
	if !f.help {
		out = append(out, strings.Repeat("─", w))
	}
	switch {
	case f.help:
	case f.quitAsk:
		add(1, " "+warnStyle.Render("Quit without writing "+f.file+"?")+" Nothing has been written; the answers are lost.")
	case f.review != "":
		add(1, " Write this config to "+f.file+"?")
	default:
		add(1, " "+f.fields()[f.cur].question)
		add(3, " > "+f.input.Value()+"█")
	}
	if f.warn != "" && !f.help && !f.quitAsk {
		add(1, " "+warnStyle.Render(f.warn))
	}
	return append(out, wrap(" "+faintStyle.Render(f.hints(w, len(out))), w, 1)...)
}

func (f *InitForm) hints(w, top int) string {
	_, h := f.size()
	scroll := ""
	if len(f.body(w)) > h-len(f.header(w))-top-1 {
		scroll = " · ↑↓/pgup/pgdn: scroll"
	}
	switch {
	case f.help:
		return "any key: close the help"
	case f.quitAsk:
		return "y: quit · n: go on"
	case f.review != "":
		return "enter: write it · shift+tab: back · esc: quit" + scroll + " · ?: help"
	}
	return "enter: next · shift+tab: back · esc: quit" + scroll + " · f1: help"
}

var initHelp = []string{
	"Keys",
	"  enter          keep the value shown, or take the one typed, and go on; at the review, write the config",
	"  ctrl+u         clear the value, to type another",
	"  shift+tab      back to the question before",
	"  ↑ ↓            scroll a line",
	"  pgup pgdn      scroll a page",
	"  f1, ?          this help (? only at the review)",
	"  esc, ctrl+c    quit without writing anything (you are asked first)",
	"",
	"Each answer is checked at once, as keyceremony run will check the config; what is wrong is said under the question.",
	"Nothing is written until the review, and an existing file is never overwritten. The config is plain YAML with a comment on every line: change it in an editor later, and check it with keyceremony script.",
	"No secret is asked for here: PINs and passphrases are typed during the ceremony, never written in the config.",
	"",
	"Any key closes this help.",
}
