package tui

import (
	"errors"
	"fmt"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/keyceremony/keyceremony/ceremony"
)

var (
	titleStyle = lipgloss.NewStyle().Bold(true)
	doneStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	failStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	faintStyle = lipgloss.NewStyle().Faint(true)
	warnStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
)

// View implements tea.Model. Every line fits the terminal's width; at 80×24
// the whole ceremony fits on one screen.
func (m *Model) View() string {
	var b strings.Builder
	w := m.width
	if w <= 0 {
		w = 80
	}
	line := func(format string, args ...any) {
		b.WriteString(ansi.Truncate(fmt.Sprintf(format, args...), w, "…"))
		b.WriteByte('\n')
	}
	right := ""
	switch m.phase {
	case phasePlan:
		right = "plan review"
	case phaseRunning:
		right = fmt.Sprintf("step %d/%d", m.currentStep()+1, len(m.steps))
	case phaseDone:
		right = "complete"
	case phaseFailed:
		right = "stopped"
	}
	title := titleStyle.Render("keyceremony") + " · ceremony " + m.cfg.Ceremony.ID
	gap := w - 2 - lipgloss.Width(title) - lipgloss.Width(right)
	if gap < 1 {
		gap = 1
	}
	line(" %s%s%s", title, strings.Repeat(" ", gap), right)
	line("%s", strings.Repeat("─", w))

	if m.phase == phasePlan {
		line(" Review the plan. Nothing has happened yet.")
		line("")
		for _, it := range m.cfg.Plan() {
			line(" %-12s %s", it.Label, it.Value)
		}
		line("")
		line(" %s", faintStyle.Render("enter: start the ceremony · q: quit"))
		return b.String()
	}

	// Step numbers are right-aligned so that titles line up past step 9.
	width := len(fmt.Sprint(len(m.steps)))
	for i, s := range m.steps {
		mark, text := " ", faintStyle.Render(s.Title)
		switch m.state[i] {
		case stepRunning:
			mark, text = m.spin.View(), s.Title
		case stepDone:
			mark, text = doneStyle.Render("✓"), s.Title
		case stepFailed:
			mark, text = failStyle.Render("✗"), s.Title
		}
		if m.summary[i] != "" {
			text = fmt.Sprintf("%-36s %s", s.Title, faintStyle.Render(m.summary[i]))
		}
		line(" %s %*d %s", mark, width, i+1, text)
	}
	line("")
	// Keep to 24 lines: fewer info lines while a question is shown, none
	// on the summary.
	infos := m.infos
	if m.prompt != nil && len(infos) > 2 {
		infos = infos[len(infos)-2:]
	}
	if m.phase == phaseDone {
		infos = nil
	}
	for _, in := range infos {
		line(" %s", in)
	}
	if m.progAll > 1 {
		line(" %s %d/%d", m.bar.ViewAs(float64(m.progDone)/float64(m.progAll)), m.progDone, m.progAll)
	}

	switch {
	case m.prompt != nil:
		line("")
		for _, l := range wrapText(m.prompt.prompt, w-2) {
			line(" %s", l)
		}
		switch {
		case m.prompt.secret:
			line(" %s", faintStyle.Render("(masked as you type; enter: submit · esc: cancel)"))
		case m.prompt.free:
			line(" %s", faintStyle.Render("(enter: submit · esc: cancel)"))
		default:
			line(" Type %q to confirm, or esc to cancel.", m.prompt.want)
		}
		line(" %s", m.input.View())
		if m.warn != "" {
			line(" %s", warnStyle.Render(m.warn))
		}
	case m.phase == phaseFailed:
		m.viewFailure(line, w)
	case m.phase == phaseDone:
		m.viewDone(line)
	}
	return b.String()
}

func (m *Model) viewFailure(line func(string, ...any), w int) {
	var se *ceremony.StepError
	step := "the ceremony"
	msg := m.err.Error()
	if errors.As(m.err, &se) {
		step = "step " + se.Step
		msg = se.Err.Error()
	}
	line(" %s", failStyle.Render(step+" failed"))
	for _, l := range wrapText(msg, w-2) {
		line(" %s", l)
	}
	line("")
	switch {
	case m.retryable() && !m.changed():
		line(" Nothing was changed: fix the cause and retry.")
		line(" %s", faintStyle.Render("r: retry · q: quit"))
	case m.retryable():
		line(" The transcript in %s records what was done.", m.cfg.OutDir())
		line(" Fix the cause, then resume: the ceremony goes on where it stopped.")
		line(" %s", faintStyle.Render("r: resume · q: quit (keyceremony resumes it later too)"))
	default:
		line(" %s", faintStyle.Render("q: quit"))
	}
}

func (m *Model) viewDone(line func(string, ...any)) {
	r := m.result
	line(" %s", doneStyle.Render("Ceremony complete."))
	for i, k := range r.Keys {
		if i == 3 && len(r.Keys) > 4 {
			line(" … and %d more keys (see the transcript)", len(r.Keys)-3)
			break
		}
		expiry := "does not expire"
		if r.Offline {
			// The whole command, wrapped with shell continuations so that
			// it works as printed.
			line(" Key %s: kcv %s, to upload:", k.Label, k.KeyCheckValue)
			cmd := wrapText(k.UploadCommand, m.width-6)
			for j, l := range cmd {
				if j < len(cmd)-1 {
					l += " \\"
				}
				line("   %s", l)
			}
			continue
		} else if k.ValidTo != nil {
			expiry = "valid to " + k.ValidTo.UTC().Format("2006-01-02 15:04Z")
		}
		line(" Key %s: kcv %s, %s", k.Label, k.KeyCheckValue, expiry)
	}
	if r.SealWords != "" {
		for i, l := range wrapText("Seal words: "+r.SealWords, m.width-2) {
			if i == 0 {
				l = strings.Replace(l, "Seal words:", titleStyle.Render("Seal words:"), 1)
			}
			line(" %s", l)
		}
	} else {
		line(" Seal: %s", groupHex(r.SealHash))
	}
	line(" Witnesses: write the words down; keyceremony verify shows them again.")
	line(" Evidence: %s", r.OutDir)
	line(" Next: keyceremony verify, then a recovery drill (README: Escrow and recovery)")
	line(" %s", faintStyle.Render("enter: exit"))
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

// groupHex shows the first 32 hex digits of h in groups of four, for
// reading aloud.
func groupHex(h string) string {
	if len(h) > 32 {
		h = h[:32]
	}
	var parts []string
	for len(h) > 4 {
		parts = append(parts, h[:4])
		h = h[4:]
	}
	return strings.Join(append(parts, h), " ")
}

// wrapText breaks s into lines of at most w columns at spaces.
func wrapText(s string, w int) []string {
	if w < 20 {
		w = 20
	}
	var lines []string
	cur := ""
	for _, word := range strings.Fields(s) {
		switch {
		case cur == "":
			cur = word
		case ansi.StringWidth(cur)+1+ansi.StringWidth(word) <= w:
			cur += " " + word
		default:
			lines = append(lines, cur)
			cur = word
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
