package transcripts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
)

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

// ReadState reads a transcript's lines strictly and checks its hash chain,
// as Reopen does, and applies the void rule as a resume would. An
// incomplete last line (the process died while writing it) is left out: a
// resume cuts it off. Failures are *VerifyError.
func ReadState(data []byte) (*State, error) {
	st := &State{}
	prev := zeroHash
	for n := 1; ; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line := data[:i]
		data = data[i+1:]
		var err error
		switch {
		case n == 1:
			err = readHeader(line, prev, &st.Header)
		case st.Sealed:
			err = chainErr(n, "", "line after the seal", "", "")
		case lineType(line).Type == "seal":
			err = readSeal(n, line, prev, len(st.Events)+1, &Seal{})
			st.Sealed = true
		default:
			var e Event
			if e, err = readEvent(n, line, prev, len(st.Events)+1, false); err == nil {
				st.Events = append(st.Events, e)
			}
		}
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(line)
		prev = hex.EncodeToString(sum[:])
	}
	if prev == zeroHash {
		return nil, ErrNoHeader
	}
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
