package ceremony

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	// Only what a checkpoint signed by the header's signing key covers is
	// trusted; openToken then checks that key is the token's. Events after
	// it (a step cut short, or lines someone added) stay in the file but
	// count for nothing: their work is done again.
	trusted := r.LastCheckpoint()
	untrusted := len(r.Events) - trusted
	events := r.Events[:trusted]
	s.resumeHeaderKey = r.Header.SigningKey
	byLabel := map[string]*keyState{}
	for _, k := range s.keys {
		byLabel[k.cfg.Label] = k
	}
	s.referenced = map[string]bool{}
	s.voided = map[string]bool{}
	s.askedRecipients = map[string]string{}
	s.stepHadEvents = map[int]bool{}
	for _, e := range events {
		s.stepHadEvents[e.StepNo] = true
		for _, f := range fileRefs(e.Data) {
			s.referenced[f["file"].(string)] = true
			if e.Step != "files" {
				s.files = append(s.files, f)
			}
		}
		label, _ := e.Data["label"].(string)
		k := byLabel[label]
		str := func(key string) string { v, _ := e.Data[key].(string); return v }
		switch e.Step {
		case "escrow":
			s.escrowed = true
			continue
		case "custodian-recipient":
			s.askedRecipients[str("name")] = str("recipient")
			continue
		case "escrow-void":
			for _, f := range voidFiles(e.Data) {
				s.voided[f] = true
			}
			continue
		case "set-aside":
			s.res.SetAside = append(s.res.SetAside, SetAside{Name: str("name"), MovedTo: str("moved_to"), Reason: str("reason")})
			continue
		case "signing-key":
			s.signingKeyWritten = true
			continue
		case "amend":
			configSum = str("new_config_sha256")
			continue
		}
		if k == nil {
			if label != "" {
				if s.goneKeys == nil {
					s.goneKeys = map[string]string{}
				}
				s.goneKeys[label] = "event " + e.Step
			}
			continue
		}
		switch e.Step {
		case "kms-key-intent":
			k.nonce = str("nonce")
		case "generate-key-intent":
			id, err := hex.DecodeString(str("id"))
			if err != nil {
				return fail(fmt.Errorf("cannot resume: transcript event %d has a bad key id", e.Seq))
			}
			k.id, k.genIntent = id, true
		case "kms-key":
			k.arn, k.kmsRecorded, k.nonce = str("kms_key_arn"), true, str("nonce")
		case "generate-key":
			id, err := hex.DecodeString(str("id"))
			if err != nil {
				return fail(fmt.Errorf("cannot resume: transcript event %d has a bad key id", e.Seq))
			}
			k.id, k.kcv, k.generated = id, str("key_check_value"), true
		case "fetch-params":
			data, err := s.readRecorded(str("file"), str("file_sha256"))
			if err != nil {
				return fail(err)
			}
			if k.params, err = wrap.ParseParams(data); err != nil {
				return fail(fmt.Errorf("cannot resume: %s: %w", str("file"), err))
			}
			k.bundle, k.paramsRecorded = nil, true
		case "wrap":
			data, err := s.readRecorded(str("file"), str("file_sha256"))
			if err != nil {
				return fail(err)
			}
			if k.bundle, err = wrap.ParseBundle(data); err != nil {
				return fail(fmt.Errorf("cannot resume: %s: %w", str("file"), err))
			}
			k.res.Bundle = filepath.Join(out, str("file"))
		case "import":
			k.imported = true
			if vt, err := time.Parse(time.RFC3339, str("valid_to")); err == nil {
				k.validTo = &vt
			}
		case "check-import":
			k.checked = true
		}
	}
	amend, err := s.planAmend(configSum)
	if err != nil {
		return fail(err)
	}
	s.tr = r.Writer
	s.resumed = true
	data := map[string]any{"events_before": len(r.Events), "events_trusted": trusted}
	if untrusted > 0 {
		data["events_not_covered_by_a_checkpoint"] = untrusted
	}
	if r.TornBytes > 0 {
		data["torn_line_bytes"], data["torn_line_sha256"] = r.TornBytes, r.TornSHA256
	}
	var done []string
	for _, k := range s.keys {
		done = append(done, fmt.Sprintf("%s: %s", k.cfg.Label, k.progress()))
	}
	data["keys"] = done
	stepNo := s.stepNo
	s.stepNo = 0
	err = s.record("resume", data)
	if err == nil && amend != nil {
		err = s.recordAmend(amend)
	}
	s.stepNo = stepNo
	if err != nil {
		return fail(err)
	}
	s.ui.Info(fmt.Sprintf("resuming ceremony %s after %d recorded events (%d covered by a signed checkpoint): %s", s.cfg.Ceremony.ID, len(r.Events), trusted, strings.Join(done, "; ")))
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
	data, err := os.ReadFile(filepath.Join(s.res.OutDir, name))
	if err != nil {
		return nil, fmt.Errorf("cannot resume: the transcript names %s: %w", name, err)
	}
	if got := evidence.Hash(data); got != sum {
		return nil, fmt.Errorf("cannot resume: %s changed since it was recorded (sha256 %.12s…, recorded %.12s…): restore it from a copy", name, got, sum)
	}
	return data, nil
}

// fileRefs finds {"file", "file_sha256"} and {"file", "sha256"} pairs in
// event data, at any depth.
func fileRefs(v any) []map[string]any {
	var out []map[string]any
	switch v := v.(type) {
	case map[string]any:
		f, _ := v["file"].(string)
		sum, _ := v["file_sha256"].(string)
		if sum == "" {
			sum, _ = v["sha256"].(string)
		}
		if f != "" && sum != "" {
			out = append(out, map[string]any{"file": f, "sha256": sum})
		}
		for k, x := range v {
			if k != "file" {
				out = append(out, fileRefs(x)...)
			}
		}
	case []any:
		for _, x := range v {
			out = append(out, fileRefs(x)...)
		}
	}
	return out
}

// setAside moves a file of the output directory that the transcript does
// not name (written just before the process died) out of the way, and
// records it: evidence is never overwritten or deleted.
func (s *state) setAside(name string) error {
	p := filepath.Join(s.res.OutDir, name)
	data, err := os.ReadFile(p)
	if err != nil {
		return err
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
	s.res.SetAside = append(s.res.SetAside, SetAside{Name: name, MovedTo: aside, Reason: reason})
	return s.record("set-aside", map[string]any{"name": name, "moved_to": aside, "sha256": evidence.Hash(data), "reason": reason})
}

// SetAside is a file a resumed ceremony moved out of the way because the
// transcript does not record it as evidence.
type SetAside struct {
	Name, MovedTo, Reason string
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
