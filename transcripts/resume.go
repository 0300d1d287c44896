package transcripts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrSealed is returned by Reopen for a transcript that is already sealed:
// its ceremony is complete and nothing may be added.
var ErrSealed = errors.New("transcript is sealed")

// Reopened is an unsealed transcript opened again to go on after the process
// that wrote it died or failed.
type Reopened struct {
	// Writer appends after the last complete line.
	Writer *Writer
	Header Header
	Events []Event
	// TornBytes is the length of an incomplete last line (a crash in the
	// middle of a write) that Reopen cut off, and TornSHA256 its hash; the
	// caller records both.
	TornBytes  int
	TornSHA256 string
}

// Reopen opens an unsealed transcript for appending. It checks the hash
// chain and the sequence numbers of every complete line first, and refuses
// a sealed transcript with [ErrSealed]. An incomplete last line (no final
// newline) is cut off and reported in TornBytes. Chain failures are
// *VerifyError.
func Reopen(path string) (*Reopened, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link: a transcript must be a plain file in out_dir", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read transcript: %w", err)
	}
	r := &Reopened{}
	keep := len(data)
	if i := bytes.LastIndexByte(data, '\n'); i+1 < len(data) {
		keep = i + 1
		torn := data[keep:]
		sum := sha256.Sum256(torn)
		r.TornBytes, r.TornSHA256 = len(torn), hex.EncodeToString(sum[:])
	}
	prev := zeroHash
	payload := sha256.New()
	lines := 0
	for _, line := range bytes.SplitAfter(data[:keep], []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		lines++
		body := line[:len(line)-1]
		var probe struct {
			Type string `json:"type"`
			Prev string `json:"prev"`
		}
		if err := json.Unmarshal(body, &probe); err != nil {
			return nil, chainErr(lines, "", "not a JSON object", "", "")
		}
		if probe.Prev != prev {
			return nil, chainErr(lines, "prev", fmt.Sprintf("does not match the hash of line %d", lines-1), prev, probe.Prev)
		}
		switch {
		case lines == 1:
			if err := json.Unmarshal(body, &r.Header); err != nil || r.Header.Type != "header" {
				return nil, chainErr(1, "type", "first line must be the header", "header", probe.Type)
			}
			if r.Header.Format != Format {
				return nil, chainErr(1, "format", "unsupported format", Format, r.Header.Format)
			}
		case probe.Type == "event":
			var e Event
			if err := json.Unmarshal(body, &e); err != nil {
				return nil, chainErr(lines, "", "malformed event: "+err.Error(), "", "")
			}
			if e.Seq != len(r.Events)+1 {
				return nil, chainErr(lines, "seq", "events out of order", fmt.Sprint(len(r.Events)+1), fmt.Sprint(e.Seq))
			}
			r.Events = append(r.Events, e)
		case probe.Type == "seal":
			return nil, fmt.Errorf("%w: its ceremony is complete; nothing can be added to it", ErrSealed)
		default:
			return nil, chainErr(lines, "type", "unknown line type", "event", probe.Type)
		}
		payload.Write(line)
		sum := sha256.Sum256(body)
		prev = hex.EncodeToString(sum[:])
	}
	if lines == 0 {
		return nil, chainErr(1, "", "transcript is empty", "", "")
	}
	if r.TornBytes > 0 {
		if err := os.Truncate(path, int64(keep)); err != nil {
			return nil, fmt.Errorf("failed to cut the incomplete last line of the transcript: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open transcript: %w", err)
	}
	r.Writer = &Writer{f: f, header: r.Header, payload: payload, prev: prev, lines: lines, seq: len(r.Events), now: time.Now}
	return r, nil
}
