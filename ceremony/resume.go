package ceremony

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/wrap"
)

// A ceremony whose process died or failed part way is resumed by running
// it again with the same config: Run finds the unsealed transcript in
// out_dir, checks its chain and that it belongs to this config, rebuilds
// from its events what was done (keys generated, KMS keys, escrow, params,
// bundles, imports), records a "resume" event, and runs the steps again,
// each skipping what the transcript shows done. Files the transcript names
// are checked against their recorded SHA-256 before they are used; a file
// it does not name (written just before the process died) is moved aside
// and recorded, never overwritten or deleted.

// resume reopens the transcript at s.res.Transcript.
func (s *state) resume() error {
	out := s.res.OutDir
	r, err := transcripts.Reopen(s.res.Transcript)
	if errors.Is(err, transcripts.ErrNoHeader) {
		// Empty, or its header cut short: the ceremony changed nothing
		// yet (it syncs the header before its first change). Keep the
		// file as evidence and start over.
		return s.setAside(filepath.Base(s.res.Transcript))
	}
	if err != nil {
		if errors.Is(err, transcripts.ErrSealed) {
			return fmt.Errorf("the ceremony in %s is complete (its transcript is sealed): check it with keyceremony verify, or use a new ceremony.out_dir for a new ceremony", out)
		}
		return fmt.Errorf("cannot resume the ceremony in %s: %w", out, err)
	}
	fail := func(err error) error {
		_ = r.Writer.Close()
		return err
	}
	if r.Header.CeremonyID != s.cfg.Ceremony.ID {
		return fail(fmt.Errorf("%s holds ceremony %q, not %q: use a new ceremony.out_dir", out, r.Header.CeremonyID, s.cfg.Ceremony.ID))
	}
	// The config in force: the header's, or the last amendment's.
	configSum := r.Header.ConfigHash
	// Only what a checkpoint signed by the header's signing key covers
	// counts; openToken then checks that key is the token's. Void events
	// (after the last checkpoint, see transcripts) stay in the file but
	// count for nothing: their work is done again.
	s.resumeHeaderKey = r.Header.SigningKey
	byLabel := map[string]*keyState{}
	for _, k := range s.keys {
		byLabel[k.cfg.Label] = k
	}
	s.referenced = map[string]bool{}
	s.voided = map[string]bool{}
	s.askedRecipients = map[string]string{}
	s.stepHadEvents = map[int]bool{}
	for _, e := range r.Counted {
		s.stepHadEvents[e.StepNo] = true
		if a, ok := e.Data.(*events.Amend); ok {
			configSum = a.NewConfigSHA256
		}
		if err := s.replay(e, byLabel); err != nil {
			return fail(err)
		}
	}
	amend, err := s.planAmend(configSum)
	if err != nil {
		return fail(err)
	}
	s.tr = r.Writer
	s.resumed = true
	var done []string
	for _, k := range s.keys {
		done = append(done, fmt.Sprintf("%s: %s", k.cfg.Label, k.progress()))
	}
	stepNo := s.stepNo
	s.stepNo = 0
	err = s.record(r.Resume(done))
	if err == nil && amend != nil {
		err = s.recordAmend(amend)
	}
	s.stepNo = stepNo
	if err != nil {
		return fail(err)
	}
	msg := fmt.Sprintf("resuming ceremony %s after %d recorded events (%d covered by a signed checkpoint", s.cfg.Ceremony.ID, len(r.Events), r.Trusted)
	if void := len(r.Events) - r.Trusted; void > 0 {
		msg += fmt.Sprintf("; the %d after it are void, their work is done again", void)
	}
	s.ui.Info(msg + "): " + strings.Join(done, "; "))
	return nil
}

// replay takes into s what event e, an event that counts, says was done.
func (s *state) replay(e transcripts.Event, byLabel map[string]*keyState) error {
	key := func(label string) *keyState {
		k := byLabel[label]
		if k == nil && label != "" {
			// A key the config no longer has: planAmend refuses that.
			if s.goneKeys == nil {
				s.goneKeys = map[string]string{}
			}
			s.goneKeys[label] = "event " + e.Step
		}
		return k
	}
	for _, f := range events.Named(e.Data) {
		s.referenced[f.Name] = true
		if e.Step != "files" {
			s.files = append(s.files, f)
		}
	}
	// Events that name a replica of a multi-Region key.
	if k := key(keyFactsOf(e.Data).label); k != nil && len(k.replicas) > 0 {
		if done, err := s.replayReplica(k, e.Data); done || err != nil {
			return err
		}
	}
	switch d := e.Data.(type) {
	case *events.Escrow:
		s.escrowed = true
	case *events.CustodianRecipient:
		s.askedRecipients[d.Name] = d.Recipient
	case *events.EscrowVoid:
		for _, f := range d.VoidFiles {
			s.voided[f.Name] = true
		}
	case *events.SetAside:
		s.res.SetAside = append(s.res.SetAside, SetAside{Name: d.Name, MovedTo: d.MovedTo, Reason: d.Reason})
	case *events.SigningKey:
		s.signingKeyWritten = true
	case *events.KMSKeyIntent:
		if k := key(d.Label); k != nil {
			k.nonce = d.Nonce
		}
	case *events.GenerateKeyIntent:
		if k := key(d.Label); k != nil {
			id, err := hex.DecodeString(d.ID)
			if err != nil {
				return fmt.Errorf("cannot resume: transcript event %d has a bad key id", e.Seq)
			}
			k.id, k.genIntent, k.intentReplayed = id, true, true
		}
	case *events.KMSKey:
		if k := key(d.Label); k != nil {
			k.arn, k.kmsRecorded, k.nonce = d.KMSKeyARN, true, d.Nonce
		}
	case *events.GenerateKey:
		if k := key(d.Label); k != nil {
			id, err := hex.DecodeString(d.ID)
			if err != nil {
				return fmt.Errorf("cannot resume: transcript event %d has a bad key id", e.Seq)
			}
			k.id, k.kcv, k.generated = id, d.KeyCheckValue, true
		}
	case *events.FetchParams:
		if k := key(d.Label); k != nil {
			data, err := s.readRecorded(d.File, d.FileSHA256)
			if err != nil {
				return err
			}
			if k.params, err = wrap.ParseParams(data); err != nil {
				return fmt.Errorf("cannot resume: %s: %w", d.File, err)
			}
			k.bundle, k.paramsRecorded = nil, true
		}
	case *events.Wrap:
		if k := key(d.Label); k != nil {
			data, err := s.readRecorded(d.File, d.FileSHA256)
			if err != nil {
				return err
			}
			if k.bundle, err = wrap.ParseBundle(data); err != nil {
				return fmt.Errorf("cannot resume: %s: %w", d.File, err)
			}
			k.res.Bundle = filepath.Join(s.res.OutDir, d.File)
		}
	case *events.Import:
		if k := key(d.Label); k != nil {
			k.imported, k.validTo = true, d.ValidTo
			k.materialID, k.res.KeyMaterialID = d.KeyMaterialID, d.KeyMaterialID
		}
	case *events.Rotate:
		if k := key(d.Label); k != nil {
			k.rotated = true
		}
	case *events.CheckImport:
		if k := key(d.Label); k != nil {
			k.checked = true
		}
	}
	return nil
}

// progress says how far a key got, from the transcript.
func (k *keyState) progress() string {
	switch {
	case k.checked:
		return "imported and checked"
	case k.imported:
		return "imported"
	case k.bundle != nil:
		return "wrapped"
	case k.params != nil:
		return "parameters fetched"
	case k.generated:
		return "generated"
	case k.arn != "":
		return "KMS key ready"
	}
	return "not started"
}

// readRecorded reads a file of the output directory that the transcript
// names, and checks it against the recorded SHA-256.
func (s *state) readRecorded(name, sum string) ([]byte, error) {
	data, err := evidence.ReadFile(filepath.Join(s.res.OutDir, name), evidence.MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cannot resume: the transcript names %s: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot resume: the transcript names %s, but %w: put back the file it recorded, from a copy", name, err)
	}
	if got := evidence.Hash(data); got != sum {
		return nil, fmt.Errorf("cannot resume: %s changed since it was recorded (sha256 %.12s…, recorded %.12s…): restore it from a copy", name, got, sum)
	}
	return data, nil
}

// setAside moves a file of the output directory that the transcript does
// not name (written just before the process died) out of the way, and
// records it: evidence is never overwritten or deleted.
func (s *state) setAside(name string) error {
	p := filepath.Join(s.res.OutDir, name)
	data, err := evidence.ReadFile(p, evidence.MaxFileSize)
	if err != nil {
		return fmt.Errorf("cannot resume: %w: the ceremony would write %s, and sets aside only plain files it wrote; move it out of %s", err, name, s.res.OutDir)
	}
	prefix, reason := "unrecorded", "not recorded in the transcript: written by a step that did not finish"
	if s.voided[name] {
		prefix, reason = "void", "a file of an escrow attempt that stopped before it was recorded: its shares are void"
	}
	aside := ""
	for i := 1; ; i++ {
		aside = fmt.Sprintf("%s-%d-%s", prefix, i, name)
		if _, err := os.Stat(filepath.Join(s.res.OutDir, aside)); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err := os.Rename(p, filepath.Join(s.res.OutDir, aside)); err != nil {
		return fmt.Errorf("failed to move aside %s: %w", name, err)
	}
	if err := evidence.SyncDir(s.res.OutDir); err != nil {
		return err
	}
	s.res.SetAside = append(s.res.SetAside, SetAside{Name: name, MovedTo: aside, Reason: reason})
	return s.record(&events.SetAside{Name: name, MovedTo: aside, SHA256: evidence.Hash(data), Reason: reason})
}

// SetAside is a file a resumed ceremony moved out of the way because the
// transcript does not record it as evidence.
type SetAside struct {
	Name, MovedTo, Reason string
}

// freshName returns base, or base with a number before its extension, so
// that the name is not taken by a file the transcript already names.
func (s *state) freshName(base string) string {
	if !s.referenced[base] {
		return base
	}
	ext := filepath.Ext(base)
	for i := 2; ; i++ {
		n := fmt.Sprintf("%s-%d%s", strings.TrimSuffix(base, ext), i, ext)
		if !s.referenced[n] {
			return n
		}
	}
}
