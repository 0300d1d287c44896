package transcripts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keyceremony/keyceremony/internal/strictjson"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// Every line is read strictly (see internal/strictjson): duplicate names,
// invalid UTF-8, unknown fields and trailing data are refused.

// decodeEvent reads an event line, its data into the type of package events
// its step names.
func decodeEvent(line []byte) (Event, error) {
	e, err := decodeAs(line, stepHint(line))
	if err != nil {
		// The hint can be wrong only for a line not as keyceremony writes
		// it; look again, the slow way, before refusing it.
		if step := strictjson.Member(line, "step"); step != stepHint(line) {
			return decodeAs(line, step)
		}
	}
	return e, err
}

// stepHint is the event's step where keyceremony writes it: the first
// "step" member, before "data" (whose members could hold another).
func stepHint(line []byte) string {
	const key = `"step":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return ""
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// decodeAs reads an event line whose step is step.
func decodeAs(line []byte, step string) (Event, error) {
	d, ok := events.New(step)
	if !ok {
		return Event{}, fmt.Errorf("unknown event %q", step)
	}
	e := Event{Data: d}
	if err := strictjson.Unmarshal(line, &e); err != nil {
		return Event{}, err
	}
	switch {
	case e.Type != "event":
		return Event{}, fmt.Errorf("type is %q, not event", e.Type)
	case e.Data == nil:
		return Event{}, errors.New("data is null")
	case e.Step != step:
		return Event{}, fmt.Errorf("step %q is not %q", e.Step, step)
	}
	return e, nil
}

// lineType reads the "type" and "prev" of a line that is not what was
// expected, for a clearer error; empty when it has none.
func lineType(line []byte) (probe struct{ Type, Prev string }) {
	_ = json.Unmarshal(line, &probe)
	return probe
}
