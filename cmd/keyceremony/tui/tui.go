// Package tui is keyceremony's terminal UI: the only package that imports
// bubbletea. It renders the engine's state and collects input; it does no
// cryptography. The engine (package ceremony) runs in its own goroutine and
// reaches the model through a [ceremony.UI] whose calls become messages (the
// shape of age's plugin.ClientUI).
//
// Stopping is always safe: Ctrl-C or Esc while a step runs asks for
// confirmation, then the engine stops between two operations (the running
// PKCS#11 or KMS call finishes), records the stop, and the screen says what
// was changed and how to go on. The program never exits while the engine
// runs.
package tui

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/charmbracelet/bubbles/progress"
	"github.com/charmbracelet/bubbles/spinner"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/keyceremony/keyceremony/ceremony"
)

// RunFunc runs a ceremony; it is ceremony.Run outside tests.
type RunFunc func(ctx context.Context, cfg *ceremony.Config, ui ceremony.UI) (*ceremony.Result, error)

type phase int

const (
	phasePlan phase = iota
	phaseRunning
	phaseDone
	phaseFailed
	// phaseStopped: the operator stopped the ceremony and the engine has
	// returned.
	phaseStopped
	// phaseSealed: out_dir holds the sealed transcript of this ceremony:
	// it is complete and nothing runs.
	phaseSealed
)

type stepState int

const (
	stepPending stepState = iota
	stepRunning
	stepDone
	stepFailed
	stepStopped
)

// Minimum terminal size: below it the screen says so and waits.
const (
	minWidth  = 50
	minHeight = 12
)

// Model is the bubbletea model of a ceremony.
type Model struct {
	cfg     *ceremony.Config
	run     RunFunc
	ui      *bridge
	ctx     context.Context
	command string
	width   int
	height  int

	phase   phase
	steps   []ceremony.Step
	state   []stepState
	summary []string
	infos   []string
	// status is what out_dir's transcript recorded when the model was
	// made, and again after the engine returned.
	status    *ceremony.Status
	statusErr error

	spin     spinner.Model
	bar      progress.Model
	progDone int
	progAll  int

	prompt *request
	input  textinput.Model
	warn   string
	guard  secretGuard

	// stopAsk shows the stop confirmation; stopping is set once the
	// operator confirmed, until the engine returns.
	stopAsk  bool
	stopping bool
	help     bool
	// offset is the first body line shown; follow keeps the view at the
	// end of the body as lines are added.
	offset int
	follow bool

	result *ceremony.Result
	err    error
}

// New returns the model for a ceremony over cfg. run is the engine entry
// point (ceremony.Run). It reads what cfg's out_dir already holds, to show
// a ceremony to resume, or one already complete.
func New(ctx context.Context, cfg *ceremony.Config, run RunFunc) *Model {
	in := textinput.New()
	in.Prompt = "> "
	in.CharLimit = 16384 // an SSH RSA public key is long
	sp := spinner.New(spinner.WithSpinner(spinner.Line))
	steps := ceremony.Steps()
	m := &Model{
		cfg:     cfg,
		run:     run,
		ui:      &bridge{},
		ctx:     ctx,
		command: "keyceremony tui --config ceremony.yaml",
		width:   80,
		height:  24,
		steps:   steps,
		state:   make([]stepState, len(steps)),
		summary: make([]string, len(steps)),
		spin:    sp,
		bar:     progress.New(progress.WithWidth(40), progress.WithoutPercentage(), progress.WithFillCharacters('#', '.'), progress.WithSolidFill("")),
		input:   in,
	}
	m.status, m.statusErr = ceremony.ReadStatus(cfg)
	if m.status != nil && m.status.Sealed {
		m.phase = phaseSealed
	}
	return m
}

// SetSender connects the engine's UI calls to a running program: p.Send.
func (m *Model) SetSender(send func(tea.Msg)) { m.ui.setSend(send) }

// SetCommand sets the command that runs this ceremony again, shown to
// resume it (default: keyceremony tui --config ceremony.yaml).
func (m *Model) SetCommand(c string) { m.command = c }

// Outcome is how a TUI session ended.
type Outcome struct {
	// Result is the completed ceremony, nil otherwise.
	Result *ceremony.Result
	// Err is why the ceremony did not complete: a *ceremony.StepError,
	// wrapping ceremony.ErrInterrupted when the operator stopped it. Nil
	// when it completed or never started.
	Err error
	// Started is false when the operator quit before the ceremony ran.
	Started bool
	// Sealed is true when the ceremony was already complete.
	Sealed bool
	// Report is what the screen said at the end, as plain text: the
	// summary of a completed ceremony, or what a stop changed and how to
	// go on.
	Report string
}

// Stopped reports whether the operator stopped the ceremony.
func (o *Outcome) Stopped() bool { return errors.Is(o.Err, ceremony.ErrInterrupted) }

// Run opens the TUI on the terminal and runs the ceremony in it. command is
// the command line that runs it again (to resume it).
func Run(ctx context.Context, cfg *ceremony.Config, command string) (*Outcome, error) {
	if os.Getenv("NO_COLOR") != "" {
		lipgloss.SetColorProfile(termenv.Ascii)
	}
	m := New(ctx, cfg, ceremony.Run)
	m.SetCommand(command)
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx))
	m.SetSender(p.Send)
	final, err := p.Run()
	if err != nil {
		return nil, fmt.Errorf("terminal UI failed: %w", err)
	}
	return final.(*Model).Outcome(), nil
}

// Outcome says how the session ended.
func (m *Model) Outcome() *Outcome {
	o := &Outcome{Result: m.result, Err: m.err, Started: m.phase != phasePlan && m.phase != phaseSealed, Sealed: m.phase == phaseSealed}
	switch m.phase {
	case phaseDone:
		o.Report = ceremony.Summary(m.cfg, m.result)
	case phaseStopped:
		o.Report = joinLines(m.stopReport())
	case phaseSealed:
		o.Report = joinLines(m.sealedReport())
	case phasePlan:
		o.Report = joinLines(m.notStartedReport())
	}
	return o
}

// Messages from the engine goroutine.
type (
	stepStartedMsg struct{ i int }
	stepDoneMsg    struct {
		i       int
		summary string
	}
	infoMsg     string
	progressMsg struct{ done, total int }
	doneMsg     struct {
		res *ceremony.Result
		err error
		// status is out_dir's transcript after the engine returned.
		status *ceremony.Status
	}
)

// Init implements tea.Model.
func (m *Model) Init() tea.Cmd { return nil }

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.input.Width = max(msg.Width-6, 10)
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	case spinner.TickMsg:
		if m.phase != phaseRunning {
			return m, nil
		}
		var cmd tea.Cmd
		m.spin, cmd = m.spin.Update(msg)
		return m, cmd
	case stepStartedMsg:
		m.state[msg.i] = stepRunning
		m.progDone, m.progAll = 0, 0
		return m, nil
	case stepDoneMsg:
		m.state[msg.i] = stepDone
		m.summary[msg.i] = msg.summary
		m.progDone, m.progAll = 0, 0
		return m, nil
	case infoMsg:
		m.infos = append(m.infos, string(msg))
		return m, nil
	case progressMsg:
		m.progDone, m.progAll = msg.done, msg.total
		return m, nil
	case *request:
		m.prompt = msg
		m.warn, m.guard = "", guardOff
		m.input.Reset()
		m.input.EchoMode = textinput.EchoNormal
		if msg.secret {
			// Nothing of a secret is shown, not even its length.
			m.input.EchoMode = textinput.EchoNone
		}
		m.follow = true
		return m, m.input.Focus()
	case doneMsg:
		return m.done(msg), nil
	}
	return m, nil
}

// done takes the engine's return.
func (m *Model) done(msg doneMsg) *Model {
	m.result, m.err = msg.res, msg.err
	if msg.status != nil {
		m.status = msg.status
	}
	m.prompt, m.stopAsk, m.stopping = nil, false, false
	m.progDone, m.progAll = 0, 0
	switch {
	case msg.err == nil:
		m.phase = phaseDone
		m.offset, m.follow = 0, false
		return m
	case errors.Is(msg.err, ceremony.ErrInterrupted):
		m.phase = phaseStopped
	default:
		m.phase = phaseFailed
	}
	mark := stepFailed
	if m.phase == phaseStopped {
		mark = stepStopped
	}
	for i, s := range m.state {
		if s == stepRunning {
			m.state[i] = mark
		}
	}
	m.follow = true
	return m
}

func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	// A return typed before the terminal is in raw mode arrives as a line
	// feed (ctrl+j): take it as enter.
	if k.Type == tea.KeyCtrlJ {
		k = tea.KeyMsg{Type: tea.KeyEnter}
	}
	if m.help {
		m.help = false
		return m, nil
	}
	if m.stopAsk {
		switch k.String() {
		case "y", "Y", "enter", "ctrl+c":
			m.confirmStop()
		case "n", "N", "esc":
			m.stopAsk = false
		}
		return m, nil
	}
	if k.Type == tea.KeyCtrlC {
		if m.phase == phaseRunning {
			m.askStop()
			return m, nil
		}
		return m, tea.Quit
	}
	if m.prompt != nil {
		return m.promptKey(k)
	}
	if m.scrollKey(k.String()) {
		return m, nil
	}
	if k.String() == "?" || k.Type == tea.KeyF1 {
		m.help = true
		return m, nil
	}
	switch m.phase {
	case phasePlan:
		switch k.String() {
		case "enter":
			if m.statusErr != nil {
				return m, nil
			}
			return m, m.start()
		case "q", "esc":
			return m, tea.Quit
		}
	case phaseRunning:
		if k.Type == tea.KeyEsc {
			m.askStop()
		}
	case phaseFailed:
		switch k.String() {
		case "r":
			if m.retryable() {
				return m, m.start()
			}
		case "q", "esc", "enter":
			return m, tea.Quit
		}
	case phaseDone, phaseStopped, phaseSealed:
		switch k.String() {
		case "q", "esc", "enter":
			return m, tea.Quit
		}
	}
	return m, nil
}

// askStop shows the stop confirmation, unless a stop is under way.
func (m *Model) askStop() {
	if !m.stopping {
		m.stopAsk = true
	}
}

// confirmStop asks the engine to stop at the next safe point; a pending
// question is answered with ceremony.ErrInterrupted at once.
func (m *Model) confirmStop() {
	m.stopAsk, m.stopping = false, true
	m.ui.stop.Store(true)
	if m.prompt != nil {
		m.answer(nil, fmt.Errorf("%w at the question %q", ceremony.ErrInterrupted, oneLine(m.prompt.prompt)))
	}
	m.follow = true
}

func (m *Model) promptKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.Type {
	case tea.KeyEsc:
		m.askStop()
		return m, nil
	case tea.KeyF1:
		m.help = true
		return m, nil
	case tea.KeyUp, tea.KeyDown, tea.KeyPgUp, tea.KeyPgDown:
		m.scrollKey(k.String())
		return m, nil
	case tea.KeyEnter:
		m.submit()
		return m, nil
	}
	if m.prompt.handOver != "" {
		return m, nil
	}
	if m.prompt.want != "" && k.String() == "?" {
		m.help = true
		return m, nil
	}
	if m.prompt.free && m.guard.drop(k) {
		return m, nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(k)
	m.warn = "" // what was said about the last answer no longer holds
	if m.prompt.free && m.guard.arm(m.input.Value()) {
		// Never echo a secret key, not even for a moment.
		m.input.Reset()
		m.warn = secretWarning
	}
	return m, cmd
}

// submit answers the pending question with what was typed, when it will do.
func (m *Model) submit() {
	v := m.input.Value()
	switch {
	case m.prompt.handOver != "":
		m.answer(nil, nil)
	case m.prompt.free:
		if v == "" {
			m.warn = "nothing typed: paste or type it, or esc to stop"
			return
		}
		m.answer([]byte(v), nil)
	case m.prompt.secret:
		if v == "" {
			m.warn = "nothing typed: type it, or esc to stop"
			return
		}
		m.answer([]byte(v), nil)
	default:
		if v != m.prompt.want {
			m.warn = fmt.Sprintf("that is not %q: type it exactly, or esc to stop", m.prompt.want)
			m.input.Reset()
			return
		}
		m.answer(nil, nil)
	}
}

// answer replies to the engine's pending request and forgets what was typed.
func (m *Model) answer(secret []byte, err error) {
	r := m.prompt
	m.prompt = nil
	m.warn = ""
	m.input.Reset()
	m.input.Blur()
	r.reply <- reply{secret: secret, err: err}
}

func (m *Model) start() tea.Cmd {
	m.phase = phaseRunning
	m.err, m.result = nil, nil
	m.infos = nil
	m.offset, m.follow = 0, true
	m.ui.stop.Store(false)
	for i := range m.state {
		m.state[i], m.summary[i] = stepPending, ""
	}
	ctx, cfg, ui, run := m.ctx, m.cfg, m.ui, m.run
	engine := func() tea.Msg {
		res, err := run(ctx, cfg, ui)
		st, _ := ceremony.ReadStatus(cfg)
		return doneMsg{res, err, st}
	}
	return tea.Batch(engine, m.spin.Tick)
}

// retryable reports whether running the ceremony again is safe: always,
// since a ceremony that changed something resumes from its transcript,
// except when the failure was the resume itself.
func (m *Model) retryable() bool {
	var se *ceremony.StepError
	return errors.As(m.err, &se) && se.Step != "resume"
}

func (m *Model) changed() bool {
	var se *ceremony.StepError
	return errors.As(m.err, &se) && se.Changed
}
