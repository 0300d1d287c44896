package tui

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/internal/secret"
)

var (
	titleStyle = lipgloss.NewStyle().Bold(true)
	doneStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	failStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	faintStyle = lipgloss.NewStyle().Faint(true)
	warnStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
)

// View implements tea.Model. The screen is a title, a body that scrolls,
// and a footer that stays: the pending question and the key hints. Nothing
// is cut off: long values wrap, and what does not fit scrolls.
func (m *Model) View() string {
	w, h := m.size()
	if w < minWidth || h < minHeight {
		return tooSmall(w, h)
	}
	header := m.header(w)
	footer := m.footer(w)
	body := m.body(w)
	return compose(header, body, footer, m.clampOffset(len(body), max(h-len(header)-len(footer), 1)), h)
}

// compose is a screen of h lines: the header, the body from line off on,
// as much of it as fits, and the footer.
func compose(header, body, footer []string, off, h int) string {
	avail := max(h-len(header)-len(footer), 1)
	end := min(off+avail, len(body))
	var b strings.Builder
	for _, l := range header {
		b.WriteString(l + "\n")
	}
	for _, l := range body[off:end] {
		b.WriteString(l + "\n")
	}
	for _, l := range footer {
		b.WriteString(l + "\n")
	}
	// No newline after the last line: on a full screen it would scroll
	// the title away.
	return strings.TrimSuffix(b.String(), "\n")
}

func (m *Model) size() (int, int) { return screenSize(m.width, m.height) }

// screenSize is the terminal's size, 80x24 until the terminal said.
func screenSize(w, h int) (int, int) {
	if w <= 0 {
		w = 80
	}
	if h <= 0 {
		h = 24
	}
	return w, h
}

func tooSmall(w, h int) string {
	msg := fmt.Sprintf("The terminal is %dx%d: keyceremony needs at least %dx%d. Make the window larger: everything waits, and nothing is lost.", w, h, minWidth, minHeight)
	return strings.Join(wrap(msg, max(w, 10), 0), "\n") + "\n"
}

// clampOffset returns the first body line to show.
func (m *Model) clampOffset(n, avail int) int {
	last := max(n-avail, 0)
	if m.follow {
		return last
	}
	return min(max(m.offset, 0), last)
}

// bodyHeight is how many body lines the screen shows now.
func (m *Model) bodyHeight() (n, avail int) {
	w, h := m.size()
	return len(m.body(w)), max(h-len(m.header(w))-len(m.footer(w)), 1)
}

// scrollKey scrolls the body; it reports whether k was a scrolling key.
func (m *Model) scrollKey(k string) bool {
	n, avail := m.bodyHeight()
	off, ok := scroll(k, m.clampOffset(n, avail), n, avail)
	if !ok {
		return false
	}
	m.offset = off
	m.follow = m.offset == max(n-avail, 0) && m.phase == phaseRunning
	return true
}

// scroll moves the first line shown, cur, of a body of n lines of which
// avail fit, by key k; it reports whether k was a scrolling key.
func scroll(k string, cur, n, avail int) (int, bool) {
	last := max(n-avail, 0)
	switch k {
	case "up", "k":
		cur--
	case "down", "j":
		cur++
	case "pgup", "b":
		cur -= max(avail-1, 1)
	case "pgdown", "f", " ":
		cur += max(avail-1, 1)
	case "home", "g":
		cur = 0
	case "end", "G":
		cur = last
	default:
		return cur, false
	}
	return min(max(cur, 0), last), true
}

func (m *Model) header(w int) []string {
	right := ""
	switch m.phase {
	case phasePlan:
		right = "plan review"
		if m.status != nil && m.status.Begun {
			right = "resume review"
		}
	case phaseRunning:
		right = fmt.Sprintf("step %d/%d", m.currentStep()+1, len(m.steps))
		if m.stopping {
			right = "stopping…"
		}
	case phaseDone, phaseSealed:
		right = "complete"
	case phaseFailed, phaseStopped:
		right = "stopped"
	}
	return titleBar(" "+titleStyle.Render("keyceremony")+" · ceremony "+m.cfg.Ceremony.ID, right, w)
}

// titleBar is the title line, with right at its right end, and a rule.
func titleBar(title, right string, w int) []string {
	gap := w - 1 - lipgloss.Width(title) - lipgloss.Width(right)
	if gap < 1 {
		// A long title: right goes on the rule line.
		return append(wrap(title, w, 1), ansi.Truncate(" "+right+" "+strings.Repeat("─", w), w, ""))
	}
	return []string{title + strings.Repeat(" ", gap) + right, strings.Repeat("─", w)}
}

// helpBody adds the lines of a help screen: key lines (indented) hang
// under their description at column keys, others under themselves.
func helpBody(add func(int, string), lines []string, keys int) {
	for _, l := range lines {
		indent := 0
		if strings.HasPrefix(l, "  ") {
			indent = keys
		}
		add(indent, l)
	}
}

// body is every line of the scrolling part, wrapped to w.
func (m *Model) body(w int) []string {
	var out []string
	add := func(indent int, s string) { out = append(out, wrap(s, w, indent)...) }
	if m.help {
		helpBody(add, helpText, 15)
		return out
	}
	switch m.phase {
	case phasePlan:
		m.planBody(add)
		return out
	case phaseSealed:
		for _, l := range m.sealedReport() {
			add(3, " "+l)
		}
		return out
	case phaseDone:
		add(1, " "+doneStyle.Render("✓")+fmt.Sprintf(" All %d steps done.", len(m.steps)))
		add(0, "")
		for _, l := range strings.Split(strings.TrimRight(ceremony.Summary(m.cfg, m.result), "\n"), "\n") {
			for _, l := range splitWords(l, w-1) {
				add(hang(l), " "+l)
			}
		}
		return out
	}
	m.stepsBody(add)
	if len(m.infos) > 0 {
		add(0, "")
	}
	for _, in := range m.infos {
		add(3, " · "+in)
	}
	if m.progAll > 1 {
		add(0, fmt.Sprintf(" %s %d/%d", m.bar.ViewAs(float64(m.progDone)/float64(m.progAll)), m.progDone, m.progAll))
	}
	switch m.phase {
	case phaseFailed:
		add(0, "")
		m.failureBody(add)
	case phaseStopped:
		add(0, "")
		for i, l := range m.stopReport() {
			if i == 0 {
				l = warnStyle.Render(l)
			}
			add(hang(l), " "+l)
		}
	}
	return out
}

func (m *Model) stepsBody(add func(int, string)) {
	// Step numbers are right-aligned so that titles line up past step 9.
	nw := len(fmt.Sprint(len(m.steps)))
	for i, s := range m.steps {
		mark, text := " ", faintStyle.Render(s.Title)
		switch m.state[i] {
		case stepRunning:
			mark, text = m.spin.View(), s.Title
		case stepDone:
			mark, text = doneStyle.Render("✓"), s.Title
			if m.skipped(s) {
				mark = "-"
			}
		case stepFailed:
			mark, text = failStyle.Render("✗"), s.Title
		case stepStopped:
			mark, text = warnStyle.Render("■"), s.Title
		}
		if m.summary[i] != "" {
			text += ": " + faintStyle.Render(m.summary[i])
		}
		add(4+nw, fmt.Sprintf(" %s %*d %s", mark, nw, i+1, text))
	}
}

// skipped reports whether step s did nothing in this ceremony: an offline
// ceremony imports and checks nothing in KMS.
func (m *Model) skipped(s ceremony.Step) bool {
	return m.cfg.Offline() && (s.ID == "import" || s.ID == "check-import")
}

func (m *Model) planBody(add func(int, string)) {
	st := m.status
	switch {
	case m.statusErr != nil:
		add(1, " "+failStyle.Render("Cannot start: "+m.statusErr.Error()))
		add(0, "")
	case st != nil && st.Begun:
		add(1, " "+warnStyle.Render("This ceremony was begun before: enter resumes it where it stopped."))
		if st.Stopped != "" {
			add(3, " Last run: "+st.Stopped+".")
		}
		add(0, "")
		add(1, " Done, as the transcript records (checked against the token on resume):")
		if len(st.Done) == 0 {
			add(5, "   - nothing yet")
		}
		for _, d := range st.Done {
			add(5, "   - "+d)
		}
		if len(st.Voided) > 0 {
			add(1, " Void:")
			for _, v := range st.Voided {
				add(5, "   - "+v)
			}
		}
		add(1, " Remaining, each skipping what is done:")
		for _, s := range st.Remaining() {
			add(8, fmt.Sprintf("   %2d %s", s.No, s.Title))
		}
		add(0, "")
	default:
		add(1, " Review the plan. Nothing has happened yet.")
		add(0, "")
	}
	lw := 0
	for _, it := range m.cfg.Plan() {
		lw = max(lw, len(it.Label))
	}
	for _, it := range m.cfg.Plan() {
		// A params file (from across the air gap) names the KMS key.
		add(4, fmt.Sprintf(" %-*s  %s", lw, it.Label, show(it.Value)))
	}
}

func (m *Model) failureBody(add func(int, string)) {
	var se *ceremony.StepError
	head := "The ceremony failed:"
	msg := m.err.Error()
	if errors.As(m.err, &se) {
		msg = se.Err.Error()
		switch {
		case m.scriptStep(se.Step):
			head = "Step " + m.stepName(se.Step) + " failed:"
		case se.Step == "resume":
			head = "Resuming failed:"
		default:
			head = "The checks before step 1 failed:"
		}
	}
	add(1, " "+failStyle.Render(head))
	add(1, " "+show(msg))
	add(0, "")
	switch {
	case m.retryable() && !m.changed():
		add(1, " Nothing was changed: fix the cause and retry.")
	case m.retryable():
		add(1, fmt.Sprintf(" The transcript in %s records what was done. Fix the cause, then resume: the ceremony goes on where it stopped (r here, or %s later).", m.cfg.OutDir(), m.command))
	}
}

// scriptStep reports whether id is one of the script's numbered steps.
func (m *Model) scriptStep(id string) bool {
	for _, s := range m.steps {
		if s.ID == id {
			return true
		}
	}
	return false
}

// stepName names a step by number and title, as the script does.
func (m *Model) stepName(id string) string {
	for _, s := range m.steps {
		if s.ID == id {
			return fmt.Sprintf("%d (%s)", s.No, s.Title)
		}
	}
	return id
}

// stopReport says what a stop changed and how to go on, from the
// transcript as it is after the engine returned.
func (m *Model) stopReport() []string {
	var se *ceremony.StepError
	where := "before the first step"
	if errors.As(m.err, &se) {
		where = "at step " + m.stepName(se.Step)
		// The engine stops before a step as often as inside one: say which.
		for i, s := range m.steps {
			if s.ID == se.Step && m.state[i] == stepPending {
				where = "before step " + m.stepName(se.Step) + " began"
			}
		}
	}
	out := []string{fmt.Sprintf("Stopped %s, as you asked; the calls already running finished first.", where)}
	if !m.changed() {
		return append(out, "Nothing was changed: no transcript was written, no key made, nothing sent to KMS.",
			"To start again: "+m.command)
	}
	out = append(out, "The stop is recorded in "+filepath.Join(m.cfg.OutDir(), "transcript.jsonl")+".", "Changed so far, as the transcript records:")
	if st := m.status; st != nil {
		if len(st.Done) == 0 {
			out = append(out, "  - nothing outside the transcript")
		}
		for _, d := range st.Done {
			out = append(out, "  - "+d)
		}
		if len(st.Voided) > 0 {
			out = append(out, "Void:")
			for _, v := range st.Voided {
				out = append(out, "  - "+v)
			}
		}
	}
	return append(out, "To go on: "+m.command+" (it resumes where it stopped; what is done is not done again).")
}

func (m *Model) sealedReport() []string {
	out := m.cfg.OutDir()
	return []string{
		doneStyle.Render("This ceremony is complete: its transcript in " + out + " is sealed. Nothing will run."),
		"",
		"Check it, and see its seal words again:",
		"  " + ceremony.NextCommands(m.cfg, &ceremony.Result{OutDir: out})[0],
		"For a new ceremony, use a new ceremony.out_dir.",
	}
}

func (m *Model) notStartedReport() []string {
	if m.status != nil && m.status.Begun {
		return []string{fmt.Sprintf("Ceremony %s not resumed: nothing was changed now. To resume it: %s", m.cfg.Ceremony.ID, m.command)}
	}
	return []string{fmt.Sprintf("Ceremony %s not started: nothing was changed.", m.cfg.Ceremony.ID)}
}

// footer is the part that stays: the stop confirmation or the pending
// question, and the key hints.
func (m *Model) footer(w int) []string {
	top := m.footerTop(w)
	return append(top, wrap(" "+faintStyle.Render(m.hints(len(top))), w, 1)...)
}

func (m *Model) footerTop(w int) []string {
	var out []string
	add := func(indent int, s string) { out = append(out, wrap(s, w, indent)...) }
	switch {
	case m.help:
	case m.stopAsk:
		out = append(out, strings.Repeat("─", w))
		add(1, " "+warnStyle.Render("Stop the ceremony?")+" Calls already running finish first; the stop is recorded, and running the same command again resumes where it stopped.")
	case m.stopping:
		out = append(out, strings.Repeat("─", w))
		add(1, " Stopping: waiting for the PKCS#11 and KMS calls already running to finish…")
	case m.prompt != nil:
		out = append(out, strings.Repeat("─", w))
		m.promptFooter(add)
	}
	return out
}

func (m *Model) promptFooter(add func(int, string)) {
	p := m.prompt
	if p.handOver != "" {
		add(1, " "+titleStyle.Render("Hand the keyboard to "+p.handOver+"."))
		add(1, " "+p.prompt)
		add(1, fmt.Sprintf(" %s: press enter when you are at the keyboard.", p.handOver))
	} else {
		add(1, " "+p.prompt)
	}
	switch {
	case p.handOver != "":
	case p.secret:
		state := "nothing typed yet"
		if m.input.Value() != "" {
			state = "typed, hidden"
		}
		add(3, " > ["+state+"]")
	case p.free:
		add(3, " > "+m.input.Value()+"█")
	default:
		add(1, fmt.Sprintf(" Type %q to confirm.", p.want))
		add(3, " > "+m.input.Value()+"█")
	}
	if m.warn != "" {
		add(1, " "+warnStyle.Render(m.warn))
	}
}

func (m *Model) hints(top int) string {
	w, h := m.size()
	scroll := ""
	if len(m.body(w)) > h-len(m.header(w))-top-1 {
		scroll = " · ↑↓/pgup/pgdn: scroll"
	}
	switch {
	case m.help:
		return "any key: close the help"
	case m.stopAsk:
		return "y: stop · n: go on"
	case m.stopping:
		return "stopping…" + scroll
	case m.prompt != nil && m.prompt.handOver != "":
		return "enter: continue · esc: stop" + scroll + " · f1: help"
	case m.prompt != nil && m.prompt.secret:
		return "enter: submit (masked, length hidden) · esc: stop" + scroll + " · f1: help"
	case m.prompt != nil:
		return "enter: submit · esc: stop" + scroll + " · f1: help"
	}
	switch m.phase {
	case phasePlan:
		if m.statusErr != nil {
			return "q: quit" + scroll + " · ?: help"
		}
		if m.status != nil && m.status.Begun {
			return "enter: resume · q: quit" + scroll + " · ?: help"
		}
		return "enter: start the ceremony · q: quit" + scroll + " · ?: help"
	case phaseRunning:
		return "ctrl+c or esc: stop safely" + scroll + " · ?: help"
	case phaseFailed:
		switch {
		case m.retryable() && !m.changed():
			return "r: retry · q: quit" + scroll + " · ?: help"
		case m.retryable():
			return "r: resume · q: quit" + scroll + " · ?: help"
		}
		return "q: quit" + scroll + " · ?: help"
	case phaseDone:
		return "enter: exit, printing this summary" + scroll + " · ?: help"
	}
	return "enter: exit" + scroll + " · ?: help"
}

func (m *Model) currentStep() int {
	for i, s := range m.state {
		if s == stepRunning {
			return i
		}
	}
	for i := len(m.state) - 1; i >= 0; i-- {
		if m.state[i] == stepDone {
			return i
		}
	}
	return 0
}

var helpText = []string{
	"Keys",
	"  enter        start the ceremony at the plan; submit an answer",
	"  ctrl+c, esc  stop the ceremony safely: you are asked to confirm; the running PKCS#11 or KMS call finishes, the stop is recorded in the transcript, and running the same command again resumes where it stopped",
	"  ↑ ↓ (k j)    scroll a line (k and j not while typing)",
	"  pgup pgdn    scroll a page; home and end: top and bottom",
	"  ? (f1)       this help (f1 while typing)",
	"  r            after a failure: retry, or resume",
	"  q            quit when nothing is running",
	"",
	"Secrets typed here (PINs, passphrases) are never shown, not even their length, and are never written anywhere.",
	"Everything witnesses write down (key check values, ARNs, seal words) is shown in full: scroll if it does not fit.",
	"",
	"Any key closes this help.",
}

// wrap breaks s into lines of at most w columns, at spaces where it can
// and inside long words (ARNs, hashes) where it must; continuation lines
// are indented by indent columns. Nothing is cut off.
func wrap(s string, w, indent int) []string {
	w = max(w, 2)
	indent = min(indent, w/2)
	pad := strings.Repeat(" ", indent)
	var lines []string
	cur, curW := "", 0
	fresh := true // nothing but indentation on cur yet
	for _, t := range tokens(s) {
		gap := t.space
		if fresh && len(lines) > 0 {
			gap = "" // a wrapped line starts at its indent
		}
		ww := ansi.StringWidth(t.word)
		if curW+len(gap)+ww <= w {
			cur, curW = cur+gap+t.word, curW+len(gap)+ww
			fresh = fresh && t.word == ""
			continue
		}
		word := t.word
		if ww <= w-indent || curW+len(gap) >= w {
			// It fits on a line of its own: start one.
			lines = append(lines, cur)
			cur, curW, gap = pad, indent, ""
		}
		cur, curW = cur+gap, curW+len(gap)
		// A word longer than the line (an ARN, a hash) is broken where
		// the line ends, never cut.
		for ww > w-curW {
			lines = append(lines, cur+ansi.Cut(word, 0, w-curW))
			word = ansi.Cut(word, w-curW, ww)
			ww = ansi.StringWidth(word)
			cur, curW = pad, indent
		}
		cur, curW, fresh = cur+word, curW+ww, false
	}
	return append(lines, cur)
}

type token struct{ space, word string }

// tokens splits s into words, each with the spaces before it, so that
// alignment inside a line is kept.
func tokens(s string) []token {
	var out []token
	for s != "" {
		i := len(s) - len(strings.TrimLeft(s, " "))
		j := strings.IndexByte(s[i:], ' ')
		if j < 0 {
			j = len(s) - i
		}
		out = append(out, token{s[:i], s[i : i+j]})
		s = s[i+j:]
	}
	return out
}

// wordsLine is a line of numbered seal words, four to a line: its first
// two and last two.
var wordsLine = regexp.MustCompile(`^( +\d+ \S+ +\d+ \S+) +(\d+ \S+ +\d+ \S+)$`)

// splitWords splits a line of seal words wider than w into two lines of
// two, so that no number is parted from its word.
func splitWords(l string, w int) []string {
	g := wordsLine.FindStringSubmatch(l)
	if g == nil || ansi.StringWidth(l) <= w {
		return []string{l}
	}
	pad := strings.Repeat(" ", indentOf(l))
	if strings.HasPrefix(g[2], "1") && len(g[2]) > 1 && g[2][1] != ' ' {
		pad = pad[:max(len(pad)-1, 0)] // two-digit numbers line up under one-digit ones
	}
	return []string{g[1], pad + g[2]}
}

// hang is the indent of the continuation lines of l (as shown after one
// space): under its text, past a "- " bullet.
func hang(l string) int {
	n := indentOf(l) + 1
	if strings.HasPrefix(l[n-1:], "- ") {
		n += 2
	}
	return n
}

// indentOf is the number of leading spaces of l.
func indentOf(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }

func joinLines(ls []string) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(ansi.Strip(l) + "\n")
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// looksSecret reports whether a value pasted as a public recipient is a
// secret key (see [secret.LooksLikeKey]).
func looksSecret(v string) bool { return secret.LooksLikeKey(v) }

// secretWarning is said when a secret key was pasted where a public
// recipient belongs.
const secretWarning = "That is a SECRET key: it was not kept, nor shown. Give the PUBLIC recipient (age1… or ssh-ed25519 …; after a private key file, press backspace first), and keep the secret key to yourself."

// secretGuard keeps a secret key pasted into a public field off the screen
// and out of the answer, also when the terminal delivers the paste in
// pieces: once the start of one was seen, what follows it is dropped too.
type secretGuard int

const (
	guardOff secretGuard = iota
	// guardAge drops what continues an age identity: upper-case Bech32,
	// until something with a lower-case letter (age1…, ssh-…) comes.
	guardAge
	// guardAll drops all typing (a private key file's base64 looks like
	// anything) until a key that is not typing, such as backspace.
	guardAll
)

// drop reports whether k is the rest of a secret key, to be dropped.
func (g *secretGuard) drop(k tea.KeyMsg) bool {
	typing := k.Type == tea.KeyRunes || k.Type == tea.KeySpace
	switch {
	case *g == guardOff:
		return false
	case !typing:
	case *g == guardAll:
		return true
	case !strings.ContainsFunc(string(k.Runes), unicode.IsLower):
		return true
	}
	*g = guardOff
	return false
}

// arm reports whether v, the value typed so far, holds a secret key; if so
// what follows it is dropped.
func (g *secretGuard) arm(v string) bool {
	if !looksSecret(v) {
		return false
	}
	*g = guardAge
	if strings.Contains(strings.ToUpper(v), "PRIVATE KEY") {
		*g = guardAll
	}
	return true
}
