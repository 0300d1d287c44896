// Package tui is keyceremony's terminal UI: the only package that imports
// bubbletea. It renders the engine's state and collects input; it does no
// cryptography and no I/O of its own. The engine (package ceremony) runs in
// its own goroutine and reaches the model through a [ceremony.UI] whose
// calls become messages (the shape of age's plugin.ClientUI).
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
)

type stepState int

const (
	stepPending stepState = iota
	stepRunning
	stepDone
	stepFailed
)

// Model is the bubbletea model of a ceremony.
type Model struct {
	cfg   *ceremony.Config
	run   RunFunc
	ui    *bridge
	ctx   context.Context
	width int

	phase   phase
	steps   []ceremony.Step
	state   []stepState
	summary []string
	infos   []string

	spin     spinner.Model
	bar      progress.Model
	progDone int
	progAll  int

	prompt *request
	input  textinput.Model
	warn   string

	result *ceremony.Result
	err    error
}

// New returns the model for a ceremony over cfg. run is the engine entry
// point (ceremony.Run).
func New(ctx context.Context, cfg *ceremony.Config, run RunFunc) *Model {
	in := textinput.New()
	in.Prompt = "> "
	in.CharLimit = 1024 // an SSH RSA public key is long
	sp := spinner.New(spinner.WithSpinner(spinner.Line))
	steps := ceremony.Steps()
	return &Model{
		cfg:     cfg,
		run:     run,
		ui:      &bridge{},
		ctx:     ctx,
		width:   80,
		steps:   steps,
		state:   make([]stepState, len(steps)),
		summary: make([]string, len(steps)),
		spin:    sp,
		bar:     progress.New(progress.WithWidth(40), progress.WithoutPercentage(), progress.WithFillCharacters('#', '.'), progress.WithSolidFill("")),
		input:   in,
	}
}

// SetSender connects the engine's UI calls to a running program: p.Send.
func (m *Model) SetSender(send func(tea.Msg)) { m.ui.setSend(send) }

// Run opens the TUI on the terminal and runs the ceremony in it.
func Run(ctx context.Context, cfg *ceremony.Config) error {
	if os.Getenv("NO_COLOR") != "" {
		lipgloss.SetColorProfile(termenv.Ascii)
	}
	m := New(ctx, cfg, ceremony.Run)
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx))
	m.SetSender(p.Send)
	final, err := p.Run()
	if err != nil {
		return fmt.Errorf("terminal UI failed: %w", err)
	}
	fm := final.(*Model)
	switch {
	case fm.err != nil:
		return fm.err
	case fm.result == nil:
		return errors.New("ceremony not started: quit at the plan review")
	}
	fmt.Fprintf(os.Stdout, "ceremony %s complete; transcript %s\n", cfg.Ceremony.ID, fm.result.Transcript)
	return nil
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
	}
)

// Init implements tea.Model.
func (m *Model) Init() tea.Cmd { return nil }

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width = msg.Width
		// Long answers (an SSH RSA key) scroll inside the line.
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
		if len(m.infos) > 3 {
			m.infos = m.infos[len(m.infos)-3:]
		}
		return m, nil
	case progressMsg:
		m.progDone, m.progAll = msg.done, msg.total
		return m, nil
	case *request:
		m.prompt = msg
		m.warn = ""
		m.input.Reset()
		if msg.secret {
			m.input.EchoMode = textinput.EchoPassword
			m.input.EchoCharacter = '*'
		} else {
			m.input.EchoMode = textinput.EchoNormal
		}
		return m, m.input.Focus()
	case doneMsg:
		m.result, m.err = msg.res, msg.err
		m.prompt = nil
		if msg.err != nil {
			m.phase = phaseFailed
			for i, s := range m.state {
				if s == stepRunning {
					m.state[i] = stepFailed
				}
			}
		} else {
			m.phase = phaseDone
		}
		return m, nil
	}
	return m, nil
}

func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	// A return typed before the terminal is in raw mode arrives as a line
	// feed (ctrl+j): take it as enter.
	if k.Type == tea.KeyCtrlJ {
		k = tea.KeyMsg{Type: tea.KeyEnter}
	}
	if k.Type == tea.KeyCtrlC {
		if m.prompt != nil {
			m.answer(nil, errors.New("ceremony aborted by the operator (ctrl+c)"))
		}
		return m, tea.Quit
	}
	if m.prompt != nil {
		return m.promptKey(k)
	}
	switch m.phase {
	case phasePlan:
		switch k.String() {
		case "enter":
			return m, m.start()
		case "q", "esc":
			return m, tea.Quit
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
	case phaseDone:
		switch k.String() {
		case "q", "esc", "enter":
			return m, tea.Quit
		}
	}
	return m, nil
}

func (m *Model) promptKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.Type {
	case tea.KeyEsc:
		m.answer(nil, errors.New("cancelled by the operator"))
		return m, nil
	case tea.KeyEnter:
		v := m.input.Value()
		if m.prompt.free {
			m.answer([]byte(v), nil)
			return m, nil
		}
		if m.prompt.secret {
			if v == "" {
				m.warn = "nothing typed: type it, or esc to cancel"
				return m, nil
			}
			m.answer([]byte(v), nil)
			return m, nil
		}
		if v != m.prompt.want {
			m.warn = fmt.Sprintf("that is not %q: type it exactly, or esc to cancel", m.prompt.want)
			m.input.Reset()
			return m, nil
		}
		m.answer(nil, nil)
		return m, nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(k)
	return m, cmd
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
	for i := range m.state {
		m.state[i], m.summary[i] = stepPending, ""
	}
	ctx, cfg, ui, run := m.ctx, m.cfg, m.ui, m.run
	engine := func() tea.Msg {
		res, err := run(ctx, cfg, ui)
		return doneMsg{res, err}
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
