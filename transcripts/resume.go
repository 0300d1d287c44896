package transcripts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// MaxSize is the most a transcript may hold to be resumed (a ceremony of
// thousands of keys writes a few MiB): more, or a transcript that is not a
// regular file, is refused before it is read.
const MaxSize = 256 << 20

// ErrSealed is returned by Reopen for a transcript that is already sealed:
// its ceremony is complete and nothing may be added.
var ErrSealed = errors.New("transcript is sealed")

// ErrNoHeader is returned by Reopen for a transcript without one complete
// line: empty, or its header cut short by a crash. Nothing can have
// happened after it, since a ceremony writes and syncs its header before
// its first change: the ceremony starts over.
var ErrNoHeader = errors.New("transcript has no complete header line")

// Reopened is an unsealed transcript opened again to go on after the process
// that wrote it died or failed.
type Reopened struct {
	// Writer appends after the last complete line.
	Writer *Writer
	Header Header
	// Events are all the events, Counted those that count: neither void
	// nor after the last checkpoint (which the resume voids, see Void
	// events). Trusted is the number of events up to the last checkpoint.
	Events  []Event
	Counted []Event
	Trusted int
	// Torn is the incomplete last line (a crash in the middle of a write)
	// that Reopen cut off and recorded in a torn-line event, the last of
	// Events; nil when there was none.
	Torn *events.Torn
}

// Reopen opens an unsealed transcript for appending. It reads every
// complete line as verify does (readLines: the form of every line, the hash
// chain and the sequence numbers; failures are *VerifyError), and refuses a
// sealed transcript with [ErrSealed] and one without a complete header line
// with [ErrNoHeader].
// Then an incomplete last line (no final newline) is cut off and recorded
// at once, in a torn-line event, before any check of the caller's can
// refuse the resume. Last, it finds the void events and checks the
// checkpoints and resume events that say which they are.
func Reopen(path string) (*Reopened, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link: a transcript must be a plain file in out_dir", path)
	}
	data, err := evidence.ReadFile(path, MaxSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read transcript: %w: put back the transcript keyceremony wrote, from a copy", err)
	}
	keep := bytes.LastIndexByte(data, '\n') + 1
	if keep == 0 {
		return nil, fmt.Errorf("%w (%d bytes)", ErrNoHeader, len(data))
	}
	c, err := readLines(data[:keep])
	if err != nil {
		return nil, err
	}
	if c.seal != nil {
		return nil, fmt.Errorf("%w: its ceremony is complete; nothing can be added to it", ErrSealed)
	}
	r := &Reopened{Header: c.header, Events: c.events}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open transcript: %w", err)
	}
	payload := sha256.New()
	payload.Write(data[:keep])
	r.Writer = &Writer{f: f, header: r.Header, payload: payload, prev: c.last, lines: c.lines, seq: len(r.Events), now: time.Now}
	if keep < len(data) {
		if err := r.cutTorn(data[keep:], int64(keep)); err != nil {
			f.Close()
			return nil, err
		}
	}
	void, trusted, err := voidEvents(&r.Header, r.Events, true)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.Trusted = trusted
	for i, e := range r.Events {
		if !void[i] {
			r.Counted = append(r.Counted, e)
		}
	}
	return r, nil
}

// Resume returns the data of the resume event to record next: the events
// before it, the trusted ones and the void ones. keys says how far each
// key got.
func (r *Reopened) Resume(keys []string) *events.Resume {
	d := resumeData(len(r.Events), r.Trusted)
	d.Keys = keys
	return d
}

// cutTorn cuts the torn last line off the file at size and records it.
func (r *Reopened) cutTorn(torn []byte, size int64) error {
	if err := r.Writer.f.Truncate(size); err != nil {
		return fmt.Errorf("failed to cut the incomplete last line of the transcript: %w", err)
	}
	if err := r.Writer.f.Sync(); err != nil {
		return fmt.Errorf("failed to sync the transcript: %w", err)
	}
	sum := sha256.Sum256(torn)
	r.Torn = &events.Torn{Length: len(torn), SHA256: hex.EncodeToString(sum[:]), Line: bytes.Clone(torn)}
	if err := r.Writer.Append(r.Header.Operator, r.Torn); err != nil {
		return err
	}
	if err := r.Writer.f.Sync(); err != nil { // recorded at once
		return fmt.Errorf("failed to sync the transcript: %w", err)
	}
	r.Events = append(r.Events, r.Writer.last)
	return nil
}
