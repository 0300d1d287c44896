package tui

import (
	"context"
	"sync"
	"sync/atomic"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/transcripts"
)

// bridge is the engine's ceremony.UI: each call becomes a message to the
// program, and questions wait for the model's reply.
type bridge struct {
	mu   sync.Mutex
	send func(tea.Msg)
	// stop is set when the operator confirmed a stop: the engine sees it
	// between two operations (ceremony.Interrupter), and every question
	// asked after it is answered with ceremony.ErrInterrupted.
	stop atomic.Bool
}

var (
	_ ceremony.UI          = (*bridge)(nil)
	_ ceremony.Interrupter = (*bridge)(nil)
	_ ceremony.HandOver    = (*bridge)(nil)
)

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
	// handOver is a hand-over screen: the person named must come to the
	// keyboard; enter answers it.
	handOver string
	reply    chan reply
}

type reply struct {
	secret []byte
	err    error
}

func (b *bridge) ask(ctx context.Context, r *request) (reply, error) {
	if b.stop.Load() {
		return reply{}, ceremony.ErrInterrupted
	}
	r.reply = make(chan reply, 1)
	b.post(r)
	select {
	case a := <-r.reply:
		return a, a.err
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// StopRequested implements ceremony.Interrupter.
func (b *bridge) StopRequested() bool { return b.stop.Load() }

// show escapes what the engine says for the screen: its messages quote
// transcripts, bundles, params files, KMS and the token, and none of
// that may move the cursor or hide text (transcripts.Printable).
var show = transcripts.Printable

func (b *bridge) StepStarted(i, n int, s ceremony.Step) { b.post(stepStartedMsg{i - 1}) }

func (b *bridge) StepDone(i, n int, s ceremony.Step, summary string) {
	b.post(stepDoneMsg{i - 1, show(summary)})
}

func (b *bridge) Info(msg string) { b.post(infoMsg(show(msg))) }

func (b *bridge) Progress(done, total int) { b.post(progressMsg{done, total}) }

func (b *bridge) Secret(ctx context.Context, prompt string) ([]byte, error) {
	a, err := b.ask(ctx, &request{prompt: show(prompt), secret: true})
	return a.secret, err
}

func (b *bridge) Ask(ctx context.Context, prompt string) (string, error) {
	a, err := b.ask(ctx, &request{prompt: show(prompt), free: true})
	return string(a.secret), err
}

// Confirm has want typed at the keyboard: the transcript records it typed.
func (b *bridge) Confirm(ctx context.Context, prompt, want string) (ceremony.Confirmation, error) {
	_, err := b.ask(ctx, &request{prompt: show(prompt), want: want})
	return ceremony.Confirmation{Typed: err == nil}, err
}

// HandOver implements ceremony.HandOver: a screen that asks for the
// keyboard to be handed to name, answered with enter.
func (b *bridge) HandOver(ctx context.Context, name, why string) error {
	_, err := b.ask(ctx, &request{prompt: show(why), handOver: show(name)})
	return err
}
