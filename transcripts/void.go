package transcripts

import (
	"crypto/sha256"
	"fmt"

	"github.com/keyceremony/keyceremony/transcripts/events"
)

// # Void events
//
// A ceremony signs a checkpoint event after every change it makes outside
// the transcript and after every script step. When its process dies and it
// is run again, the resume trusts only what a checkpoint covers: the events
// after the last checkpoint (a step cut short) are void, their work is done
// again, and the resume event records which they were (events.Resume). Void
// events stay in the transcript, chained and sealed like every other line,
// as evidence of what was attempted; but they count for nothing: neither a
// later resume nor verify reads what they say was done, and verify does not
// check the files they name (a file written again has the same name).
//
// So an event is void when a resume event follows it with no checkpoint
// between them. The checkpoint a resume trusts must verify against the
// header's signing key, and the resume event must record exactly the void
// events; otherwise the transcript is refused (resume and verify alike).
// This file is the one place that rule is written.

// voidEvents returns which of evs, the events of a transcript with header
// h, are void, and the number of events before the last checkpoint's
// successor (the events a resume trusts). With resuming, the events after
// the last checkpoint are void too: a resume event is about to follow them.
// Failures are *VerifyError.
func voidEvents(h *Header, evs []Event, resuming bool) (void []bool, trusted int, err error) {
	void = make([]bool, len(evs))
	resume := func(i int) error {
		if trusted > 0 {
			if err := checkCheckpoint(h, evs, trusted-1); err != nil {
				return err
			}
		}
		for j := trusted; j < i; j++ {
			void[j] = true
		}
		return nil
	}
	for i, e := range evs {
		switch d := e.Data.(type) {
		case *events.Checkpoint:
			trusted = i + 1
		case *events.Resume:
			if err := resume(i); err != nil {
				return nil, 0, err
			}
			if err := checkResume(d, i, trusted); err != nil {
				return nil, 0, err
			}
		}
	}
	if resuming {
		if err := resume(len(evs)); err != nil {
			return nil, 0, err
		}
	}
	return void, trusted, nil
}

// resumeData is what a resume event after the first before events, the
// first trusted of them covered by a checkpoint, records.
func resumeData(before, trusted int) *events.Resume {
	r := &events.Resume{EventsBefore: before, EventsTrusted: trusted}
	if trusted < before {
		r.EventsNotCovered = before - trusted
		r.VoidFirst, r.VoidLast = trusted+1, before
	}
	return r
}

// checkResume checks that the resume event, event i, records the events
// before it and the void ones as the rule says. Transcripts written before
// void_first_seq existed lack it; events_trusted says the same.
func checkResume(d *events.Resume, i, trusted int) error {
	want := resumeData(i, trusted)
	if d.VoidFirst == 0 && d.VoidLast == 0 {
		want.VoidFirst, want.VoidLast = 0, 0
	}
	if d.EventsBefore != want.EventsBefore || d.EventsTrusted != want.EventsTrusted || d.VoidFirst != want.VoidFirst || d.VoidLast != want.VoidLast {
		return &VerifyError{Class: ClassOrder, Line: i + 2, Field: "data", Reason: "the resume event does not record the events before it and the void ones as they are",
			Expected: fmt.Sprintf("events_before %d, events_trusted %d, void %d-%d", want.EventsBefore, want.EventsTrusted, want.VoidFirst, want.VoidLast),
			Found:    fmt.Sprintf("events_before %d, events_trusted %d, void %d-%d", d.EventsBefore, d.EventsTrusted, d.VoidFirst, d.VoidLast)}
	}
	return nil
}

// checkCheckpoint checks that event i, a checkpoint, signs the lines before
// it with the header's signing key.
func checkCheckpoint(h *Header, evs []Event, i int) error {
	e, d := &evs[i], evs[i].Data.(*events.Checkpoint)
	fail := func(field, reason, expected, found string) error {
		return &VerifyError{Class: ClassSignature, Line: i + 2, Field: field, Reason: reason, Expected: expected, Found: found}
	}
	// Event i is line i+2: the header is line 1.
	if d.Lines != i+1 || d.LastLineSHA256 != e.Prev {
		return fail("data", "the checkpoint does not name the lines before it", fmt.Sprintf("lines %d, last_line_sha256 %s", i+1, e.Prev),
			fmt.Sprintf("lines %d, last_line_sha256 %s", d.Lines, d.LastLineSHA256))
	}
	if h.SigningKey == nil {
		return fail("step", "a checkpoint in a transcript whose header names no signing key", "no checkpoint", "checkpoint")
	}
	pub, alg, err := h.sealKey()
	if err != nil {
		return err
	}
	digest := sha256.Sum256(CheckpointPayload(h.CeremonyID, i+1, e.Prev))
	if !verifySignature(alg, pub, digest[:], d.Signature) {
		return fail("data.signature", "the checkpoint's signature does not verify against the header's signing key", "", "")
	}
	return nil
}
