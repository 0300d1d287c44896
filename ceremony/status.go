package ceremony

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Status is what a ceremony's out_dir records, read without changing
// anything and without the token: for the plan shown before a ceremony
// begins or resumes, and for the report after the operator stopped it. It
// is what the transcript says; a resume checks it against the token and
// the signed checkpoints before it trusts any of it.
type Status struct {
	// Begun is true when out_dir holds a transcript of this ceremony.
	Begun bool
	// Sealed is true when that transcript is sealed: the ceremony is
	// complete and cannot be resumed.
	Sealed bool
	// Done lists, in order, what the transcript records as changed: KMS
	// keys, keys generated, the escrow, imports.
	Done []string
	// Voided lists what was made and then voided: escrow shares of an
	// attempt that stopped, files moved aside.
	Voided []string
	// Stopped says how the last run ended, when the transcript says it
	// (stopped by the operator, or a step failed); empty otherwise.
	Stopped string
	// Next is the script number of the first step not known to be done
	// (0 when sealed): a resume runs it and every step after it, each
	// skipping what the transcript records done.
	Next int
}

// Remaining lists the script steps a resume runs, from Next on.
func (st *Status) Remaining() []Step {
	if st.Sealed || st.Next == 0 {
		return nil
	}
	var out []Step
	for _, s := range Steps() {
		if s.No >= st.Next {
			out = append(out, s)
		}
	}
	return out
}

// ReadStatus reads the transcript in cfg's out_dir, if any. A transcript of
// another ceremony is an error.
func ReadStatus(cfg *Config) (*Status, error) {
	path := filepath.Join(cfg.OutDir(), "transcript.jsonl")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Status{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the transcript: %w", err)
	}
	st := &Status{Begun: true, Next: 1}
	maxStep, stoppedAt := 0, 0
	for i, line := range bytes.Split(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var l struct {
			Type       string         `json:"type"`
			CeremonyID string         `json:"ceremony_id"`
			StepNo     int            `json:"step_no"`
			Step       string         `json:"step"`
			Data       map[string]any `json:"data"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			// A torn last line (the process died while writing it) is
			// cut off by the resume; anything else is for verify.
			if i == bytes.Count(data, []byte{'\n'}) {
				break
			}
			return nil, fmt.Errorf("%s line %d is not JSON: check it with keyceremony verify", path, i+1)
		}
		switch l.Type {
		case "header":
			if l.CeremonyID != cfg.Ceremony.ID {
				return nil, fmt.Errorf("%s holds ceremony %q, not %q: use a new ceremony.out_dir", cfg.OutDir(), l.CeremonyID, cfg.Ceremony.ID)
			}
		case "seal":
			st.Sealed, st.Next, st.Stopped = true, 0, ""
			return st, nil
		case "event":
			maxStep = max(maxStep, l.StepNo)
			switch l.Step {
			case "interrupted":
				stoppedAt = l.StepNo
				st.Stopped = fmt.Sprintf("stopped by the operator at step %d (%s)", l.StepNo, dataString(l.Data, "title"))
			case "failed":
				stoppedAt = l.StepNo
				st.Stopped = fmt.Sprintf("step %d failed: %s", l.StepNo, dataString(l.Data, "error"))
			case "resume":
				st.Stopped, stoppedAt = "", 0
			default:
				st.event(l.Step, l.Data)
			}
		}
	}
	st.Next = max(maxStep, 1)
	if stoppedAt != 0 && stoppedAt < maxStep {
		st.Next = stoppedAt
	}
	return st, nil
}

// event adds what one event of the transcript says was done or voided.
func (st *Status) event(step string, d map[string]any) {
	label := dataString(d, "label")
	switch step {
	case "kms-key":
		how := "existing"
		if b, _ := d["created"].(bool); b {
			how = "created"
		}
		st.Done = append(st.Done, fmt.Sprintf("KMS key of %s (%s): %s", label, how, dataString(d, "kms_key_arn")))
	case "generate-key":
		st.Done = append(st.Done, fmt.Sprintf("key %s generated on the token, key check value %s", label, dataString(d, "key_check_value")))
	case "escrow":
		var names []string
		cs, _ := d["custodians"].([]any)
		for _, c := range cs {
			m, _ := c.(map[string]any)
			names = append(names, dataString(m, "name"))
		}
		st.Done = append(st.Done, fmt.Sprintf("escrow %s made, %v of %v, shares taken by %s", dataString(d, "file"), d["threshold"], d["shares"], strings.Join(names, ", ")))
	case "fetch-params":
		st.Done = append(st.Done, fmt.Sprintf("import parameters of %s fetched (%s)", label, dataString(d, "file")))
	case "wrap":
		st.Done = append(st.Done, fmt.Sprintf("key %s wrapped for KMS (%s)", label, dataString(d, "file")))
	case "import":
		st.Done = append(st.Done, fmt.Sprintf("key %s imported into %s", label, dataString(d, "kms_key_arn")))
	case "check-import":
		st.Done = append(st.Done, fmt.Sprintf("key %s checked in KMS: %s", label, dataString(d, "key_state")))
	case "escrow-void":
		var taken []string
		ts, _ := d["shares_taken_by"].([]any)
		for _, t := range ts {
			if n, _ := t.(string); n != "" {
				taken = append(taken, n)
			}
		}
		v := "an escrow attempt stopped before it was recorded: its files are void (" + strings.Join(voidFiles(d), ", ") + ")"
		if len(taken) > 0 {
			v += "; the shares taken by " + strings.Join(taken, ", ") + " are void: destroy them"
		}
		st.Voided = append(st.Voided, v)
	case "set-aside":
		st.Voided = append(st.Voided, fmt.Sprintf("%s moved aside to %s (%s)", dataString(d, "name"), dataString(d, "moved_to"), dataString(d, "reason")))
	}
}

func dataString(d map[string]any, key string) string {
	v, _ := d[key].(string)
	return v
}

// voidFiles lists the names an escrow-void event gives.
func voidFiles(data map[string]any) []string {
	var out []string
	fs, _ := data["void_files"].([]any)
	for _, x := range fs {
		m, _ := x.(map[string]any)
		if n, _ := m["name"].(string); n != "" {
			out = append(out, n)
		}
	}
	return out
}
