package ceremony

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"context"
	"errors"
	"fmt"
)

// ErrInterrupted is returned (inside a *StepError) when the operator
// stopped the ceremony. The engine stops only between two operations:
// before a step, between the keys of a step, or in answer to a question, so
// a PKCS#11 or KMS call that has begun always finishes and is recorded.
var ErrInterrupted = errors.New("stopped by the operator")

// Interrupter is implemented by a UI whose operator can ask the ceremony to
// stop (the TUI's Ctrl-C and Esc). The engine asks before each step and
// between the keys of a step, and then stops with [ErrInterrupted].
type Interrupter interface {
	StopRequested() bool
}

// checkStop returns ErrInterrupted when the operator asked to stop.
func (s *state) checkStop() error {
	if in, ok := s.ui.(Interrupter); ok && in.StopRequested() {
		return ErrInterrupted
	}
	return nil
}

// next reports that item n of the current step's keys begins, and stops
// there when the operator asked to.
func (s *state) next(n int) error {
	s.ui.Progress(n, len(s.keys))
	return s.checkStop()
}

// stopped ends a ceremony that the operator stopped at step st, before it
// began or during it (began): the stop is recorded with what the
// transcript shows done, and signed, so that the evidence says the
// ceremony was stopped on purpose and where.
func (s *state) stopped(st Step, began bool) error {
	if s.tr == nil {
		// Nothing was written: there is nothing to record, and nothing
		// to resume.
		return &StepError{Step: st.ID, Err: ErrInterrupted}
	}
	var done []string
	for _, k := range s.keys {
		done = append(done, fmt.Sprintf("%s: %s", k.cfg.Label, k.progress()))
	}
	if err := s.record(&events.Interrupted{StoppedStep: st.ID, Title: st.Title, Began: &began, Keys: done,
		Reason: "the operator stopped the ceremony; the calls already running finished first"}); err != nil {
		return &StepError{Step: st.ID, Err: fmt.Errorf("%w (and recording the stop failed: %v)", ErrInterrupted, err), Changed: true}
	}
	if s.signer != nil {
		if err := s.tr.Checkpoint(st.No, s.cfg.Ceremony.Operator, s.signer); err != nil {
			return &StepError{Step: st.ID, Err: fmt.Errorf("%w (and signing the stop failed: %v)", ErrInterrupted, err), Changed: true}
		}
	}
	return &StepError{Step: st.ID, Err: ErrInterrupted, Changed: true}
}

// HandOver is implemented by a UI that shows a hand-over screen: the engine
// calls it before a custodian uses the keyboard (to type a passphrase, give
// a recipient, or take a share), and it returns once that person is there.
type HandOver interface {
	HandOver(ctx context.Context, name, why string) error
}

// handOver asks the UI, when it can, to hand the keyboard to name.
func handOver(ctx context.Context, ui UI, name, why string) error {
	if h, ok := ui.(HandOver); ok {
		return h.HandOver(ctx, name, why)
	}
	return nil
}
