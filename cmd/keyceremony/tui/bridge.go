package tui

import (
	"context"
	"sync"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/keyceremony/keyceremony/ceremony"
)

// bridge is the engine's ceremony.UI: each call becomes a message to the
// program, and questions wait for the model's reply.
type bridge struct {
	mu   sync.Mutex
	send func(tea.Msg)
}

var _ ceremony.UI = (*bridge)(nil)

func (b *bridge) setSend(send func(tea.Msg)) {
	b.mu.Lock()
	b.send = send
	b.mu.Unlock()
}

func (b *bridge) post(msg tea.Msg) {
	b.mu.Lock()
	send := b.send
	b.mu.Unlock()
	if send != nil {
		send(msg)
	}
}

// request is a question from the engine; the model answers on reply.
type request struct {
	prompt string
	want   string // for confirmations: what the operator must type
	secret bool
	free   bool // a public answer, shown as typed
	reply  chan reply
}

type reply struct {
	secret []byte
	err    error
}

func (b *bridge) ask(ctx context.Context, r *request) (reply, error) {
	r.reply = make(chan reply, 1)
	b.post(r)
	select {
	case a := <-r.reply:
		return a, a.err
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

func (b *bridge) StepStarted(i, n int, s ceremony.Step) { b.post(stepStartedMsg{i - 1}) }

func (b *bridge) StepDone(i, n int, s ceremony.Step, summary string) {
	b.post(stepDoneMsg{i - 1, summary})
}

func (b *bridge) Info(msg string) { b.post(infoMsg(msg)) }

func (b *bridge) Progress(done, total int) { b.post(progressMsg{done, total}) }

func (b *bridge) Secret(ctx context.Context, prompt string) ([]byte, error) {
	a, err := b.ask(ctx, &request{prompt: prompt, secret: true})
	return a.secret, err
}

func (b *bridge) Ask(ctx context.Context, prompt string) (string, error) {
	a, err := b.ask(ctx, &request{prompt: prompt, free: true})
	return string(a.secret), err
}

// Confirm has want typed at the keyboard: the transcript records it typed.
func (b *bridge) Confirm(ctx context.Context, prompt, want string) (ceremony.Confirmation, error) {
	_, err := b.ask(ctx, &request{prompt: prompt, want: want})
	return ceremony.Confirmation{Typed: err == nil}, err
}
