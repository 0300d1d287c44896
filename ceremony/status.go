package ceremony

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
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
	// Done, Voided and Stopped are escaped (transcripts.Printable) for a
	// terminal.
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

// ReadStatus reads the transcript in cfg's out_dir, if any, as a resume
// would: its hash chain checked and its events counted by the void rule
// (transcripts.ReadState), so that the plan shows done only what a resume
// takes as done. A transcript of another ceremony, or one a resume would
// refuse, is an error.
func ReadStatus(cfg *Config) (*Status, error) {
	path := filepath.Join(cfg.OutDir(), "transcript.jsonl")
	data, err := evidence.ReadFile(path, transcripts.MaxSize)
	if errors.Is(err, os.ErrNotExist) {
		return &Status{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot resume: failed to read transcript: %w: put back the transcript keyceremony wrote, from a copy", err)
	}
	t, err := transcripts.ReadState(data)
	if errors.Is(err, transcripts.ErrNoHeader) {
		return &Status{Begun: true, Next: 1, Voided: []string{"transcript.jsonl has no complete first line (the process died as it began): nothing was changed; it is moved aside and the ceremony starts over"}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s cannot be resumed: %w; check it with keyceremony verify", path, err)
	}
	if t.Header.CeremonyID != cfg.Ceremony.ID {
		return nil, fmt.Errorf("%s holds ceremony %q, not %q: use a new ceremony.out_dir", cfg.OutDir(), t.Header.CeremonyID, cfg.Ceremony.ID)
	}
	st := &Status{Begun: true, Sealed: t.Sealed}
	if t.Sealed {
		return st, nil
	}
	maxStep := 0
	for _, e := range t.Counted {
		maxStep = max(maxStep, e.StepNo)
		st.event(e.Data)
	}
	// What void events claim was not taken as done: say so.
	for _, e := range t.Void {
		var v Status
		v.event(e.Data)
		for _, d := range v.Done {
			st.Voided = append(st.Voided, d+": recorded after the last signed checkpoint, so it counts for nothing; the resume does it again, or adopts what was made")
		}
	}
	st.Next = max(maxStep, 1)
	// How the last run ended: its last stop or failure, unless a resume
	// came after it. A failure is recorded after the last checkpoint, so
	// it is read from every event, void or not.
	stoppedAt := 0
	for _, e := range t.Events {
		switch d := e.Data.(type) {
		case *events.Interrupted:
			stoppedAt = e.StepNo
			st.Stopped = stoppedWhere(e.StepNo, d)
		case *events.Failed:
			stoppedAt = e.StepNo
			st.Stopped = fmt.Sprintf("step %d failed: %s", e.StepNo, d.Error)
		case *events.Resume:
			st.Stopped, stoppedAt = "", 0
		}
	}
	if stoppedAt != 0 && stoppedAt < st.Next {
		st.Next = stoppedAt
	}
	// The lines quote what the transcript's signer chose (labels, names,
	// errors): escaped, so that none can move the cursor or hide text.
	for i := range st.Done {
		st.Done[i] = transcripts.Printable(st.Done[i])
	}
	for i := range st.Voided {
		st.Voided[i] = transcripts.Printable(st.Voided[i])
	}
	st.Stopped = transcripts.Printable(st.Stopped)
	return st, nil
}

// event adds what one event that counts says was done or voided.
func (st *Status) event(d events.Data) {
	switch d := d.(type) {
	case *events.KMSKey:
		how := "existing"
		if d.Created {
			how = "created"
		}
		st.Done = append(st.Done, fmt.Sprintf("KMS key of %s (%s): %s", d.Label, how, d.KMSKeyARN))
	case *events.GenerateKey:
		st.Done = append(st.Done, fmt.Sprintf("key %s generated on the token, key check value %s", d.Label, d.KeyCheckValue))
	case *events.Escrow:
		var names []string
		for _, c := range d.Custodians {
			names = append(names, c.Name)
		}
		st.Done = append(st.Done, fmt.Sprintf("escrow %s made, %d of %d, shares taken by %s", d.File, d.Threshold, d.Shares, strings.Join(names, ", ")))
	case *events.FetchParams:
		st.Done = append(st.Done, fmt.Sprintf("import parameters of %s fetched (%s)", d.Label, d.File))
	case *events.Wrap:
		st.Done = append(st.Done, fmt.Sprintf("key %s wrapped for KMS (%s)", d.Label, d.File))
	case *events.Import:
		st.Done = append(st.Done, fmt.Sprintf("key %s imported into %s", d.Label, d.KMSKeyARN))
	case *events.CheckImport:
		st.Done = append(st.Done, fmt.Sprintf("key %s checked in KMS: %s", d.Label, d.KeyState))
	case *events.EscrowVoid:
		var files []string
		for _, f := range d.VoidFiles {
			files = append(files, f.Name)
		}
		v := "an escrow attempt stopped before it was recorded: its files are void (" + strings.Join(files, ", ") + ")"
		if len(d.SharesTakenBy) > 0 {
			v += "; the shares taken by " + strings.Join(d.SharesTakenBy, ", ") + " are void: destroy them"
		}
		st.Voided = append(st.Voided, v)
	case *events.SetAside:
		st.Voided = append(st.Voided, fmt.Sprintf("%s moved aside to %s (%s)", d.Name, d.MovedTo, d.Reason))
	}
}

// stoppedWhere says where the operator stopped, as the stop event records
// it: before step n began, or during it. A transcript written before the
// event recorded which says so.
func stoppedWhere(n int, d *events.Interrupted) string {
	switch {
	case d.Began == nil:
		return fmt.Sprintf("stopped by the operator at step %d (%s), before it began or during it (this transcript does not record which)", n, d.Title)
	case *d.Began:
		return fmt.Sprintf("stopped by the operator during step %d (%s)", n, d.Title)
	}
	return fmt.Sprintf("stopped by the operator before step %d (%s) began", n, d.Title)
}
