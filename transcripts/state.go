package transcripts

import "bytes"

// State is a transcript read without changing it, its events counted as a
// resume (or, sealed, verify) counts them: for showing what a ceremony did
// before it resumes.
type State struct {
	Header Header
	// Events are every complete event line: Counted those that count, Void
	// the others (void, or, unsealed, after the last checkpoint: a resume
	// voids those; see Void events).
	Events  []Event
	Counted []Event
	Void    []Event
	// Sealed reports a transcript whose last line is its seal. The seal's
	// signature is not checked here: verify does that.
	Sealed bool
}

// ReadState reads a transcript's lines as Reopen and verify do (one
// strict reader, the hash chain checked), and applies the void rule as a
// resume would. An incomplete last line (the process died while writing
// it) is left out: a resume cuts it off. Failures are *VerifyError, and
// [ErrNoHeader] for a transcript without one complete line.
func ReadState(data []byte) (*State, error) {
	keep := bytes.LastIndexByte(data, '\n') + 1
	if keep == 0 {
		return nil, ErrNoHeader
	}
	c, err := readLines(data[:keep])
	if err != nil {
		return nil, err
	}
	st := &State{Header: c.header, Events: c.events, Sealed: c.seal != nil}
	void, _, err := voidEvents(&st.Header, st.Events, !st.Sealed)
	if err != nil {
		return nil, err
	}
	for i, e := range st.Events {
		if void[i] {
			st.Void = append(st.Void, e)
		} else {
			st.Counted = append(st.Counted, e)
		}
	}
	return st, nil
}
