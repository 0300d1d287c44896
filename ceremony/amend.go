package ceremony

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/keyceremony/keyceremony/internal/evidence"
)

// "Fix it and run again" holds for the config too. A ceremony keeps a copy
// of the config it began with (config-HASH.yaml, named by a "config" event).
// A resume with a changed config compares the two field by field against
// what the transcript shows done: a change that does not contradict done
// work (an expiry of a key not yet imported, the wrapping algorithm or key
// spec while no key is wrapped, a custodian while the escrow is not made)
// is taken, with an "amend" event naming both configs' SHA-256, the changes
// and a copy of the new config; the next checkpoint signs it. A change that
// contradicts done work is refused, naming the field and why.

// configFile is the name of the copy of the config with SHA-256 sum.
func configFile(sum string) string { return "config-" + sum[:min(16, len(sum))] + ".yaml" }

// recordConfig writes the copy of the config the ceremony begins with.
func (s *state) recordConfig() error {
	if s.cfg.raw == nil {
		return nil // a config made by the program (wrap), not read from a file
	}
	name, sum, err := s.writeFile(configFile(s.cfg.Hash()), s.cfg.raw)
	if err != nil {
		return err
	}
	return s.record(&events.Config{ConfigSHA256: s.cfg.Hash(), File: filepath.Base(name), FileSHA256: sum})
}

// amendment is a config change a resume takes.
type amendment struct {
	old     string
	changes []string
}

// planAmend compares the config with the one in force (sum: the header's,
// or the last amendment's) and returns the changes to record, nil when
// there are none, or an error naming the first change that contradicts
// done work. It changes nothing.
func (s *state) planAmend(sum string) (*amendment, error) {
	now := s.cfg.Hash()
	if sum == now {
		return nil, nil
	}
	changedErr := fmt.Errorf("the config changed since ceremony %q began in %s (sha256 %.12s…, now %.12s…)", s.cfg.Ceremony.ID, s.res.OutDir, sum, now)
	if !s.referenced[configFile(sum)] || s.cfg.raw == nil {
		return nil, fmt.Errorf("%w, and the transcript keeps no copy of the config it began with (an older keyceremony began it): resume with the config it began with, or use a new ceremony.out_dir", changedErr)
	}
	data, err := s.readRecorded(configFile(sum), sum)
	if err != nil {
		return nil, err
	}
	old, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("cannot resume: %s: %w", configFile(sum), err)
	}
	a := &amendment{old: sum}
	for _, c := range diffConfig(old, s.cfg) {
		if why := s.contradicts(c); why != "" {
			return nil, fmt.Errorf("%w: %s cannot change (%s → %s): %s; put it back as it was, or use a new ceremony.out_dir", changedErr, c.path, c.old, c.new, why)
		}
		a.changes = append(a.changes, fmt.Sprintf("%s: %s → %s", c.path, c.old, c.new))
	}
	return a, nil
}

// recordAmend writes the copy of the new config and records the amendment.
func (s *state) recordAmend(a *amendment) error {
	name, sum := configFile(s.cfg.Hash()), s.cfg.Hash()
	// A resume killed after writing the copy left it: it is the same bytes.
	if data, err := evidence.ReadFile(filepath.Join(s.res.OutDir, name), evidence.MaxFileSize); err != nil || evidence.Hash(data) != sum {
		if _, _, err := s.writeFile(name, s.cfg.raw); err != nil {
			return err
		}
	} else {
		s.files = append(s.files, events.File{Name: name, SHA256: sum})
		s.referenced[name] = true
	}
	if err := s.record(&events.Amend{OldConfigSHA256: a.old, NewConfigSHA256: s.cfg.Hash(), Changes: a.changes,
		File: filepath.Base(name), FileSHA256: sum}); err != nil {
		return err
	}
	s.ui.Info("the config changed since the ceremony began; the changes contradict nothing done and are recorded: " + strings.Join(a.changes, "; "))
	return nil
}

// change is one field that differs between two configs.
type change struct {
	path     string
	old, new string
	// label is the key the field belongs to ("" outside keys).
	label string
}

// diffConfig lists the fields that differ, keys matched by label.
func diffConfig(old, cur *Config) []change {
	var out []change
	for _, sec := range []struct {
		name     string
		old, cur any
	}{{"ceremony", old.Ceremony, cur.Ceremony}, {"token", old.Token, cur.Token}, {"kms", old.KMS, cur.KMS}, {"escrow", old.Escrow, cur.Escrow}} {
		diffValue(sec.name, "", reflect.ValueOf(sec.old), reflect.ValueOf(sec.cur), &out)
	}
	byLabel := map[string]*KeyConfig{}
	for i := range old.Keys {
		byLabel[old.Keys[i].Label] = &old.Keys[i]
	}
	for i := range cur.Keys {
		k := &cur.Keys[i]
		p := fmt.Sprintf("keys[%d]", i)
		if o := byLabel[k.Label]; o != nil {
			diffValue(p, k.Label, reflect.ValueOf(*o), reflect.ValueOf(*k), &out)
			delete(byLabel, k.Label)
		} else {
			out = append(out, change{path: p, old: "(none)", new: "key " + k.Label, label: k.Label})
		}
	}
	for _, o := range old.Keys {
		if byLabel[o.Label] != nil {
			out = append(out, change{path: "keys", old: "key " + o.Label, new: "(removed)", label: o.Label})
		}
	}
	return out
}

// diffValue compares two values of one config type, field by field (by
// their YAML names), and appends what differs.
func diffValue(path, label string, a, b reflect.Value, out *[]change) {
	if a.Kind() == reflect.Pointer {
		switch {
		case a.IsNil() && b.IsNil():
			return
		case a.IsNil() || b.IsNil():
			*out = append(*out, change{path: path, old: describe(a), new: describe(b), label: label})
			return
		}
		a, b = a.Elem(), b.Elem()
	}
	switch a.Kind() {
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			f := a.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			diffValue(path+"."+name, label, a.Field(i), b.Field(i), out)
		}
	case reflect.Slice:
		for i := 0; i < max(a.Len(), b.Len()); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= a.Len():
				*out = append(*out, change{path: p, old: "(none)", new: "added", label: label})
			case i >= b.Len():
				*out = append(*out, change{path: p, old: "present", new: "(removed)", label: label})
			default:
				diffValue(p, label, a.Index(i), b.Index(i), out)
			}
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, change{path: path, old: describe(a), new: describe(b), label: label})
		}
	}
}

func describe(v reflect.Value) string {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return "(none)"
	}
	s := fmt.Sprint(reflect.Indirect(v).Interface())
	if s == "" {
		return `""`
	}
	return s
}

// contradicts says why a change contradicts what the transcript shows
// done, or "" when the ceremony can take it.
func (s *state) contradicts(c change) string {
	field := c.path[strings.LastIndexByte(c.path, '.')+1:]
	switch {
	case c.path == "ceremony.id":
		return "it names the ceremony"
	case c.path == "token.signing_key" || c.path == "token.seal_algorithm":
		return "the transcript's header names the signing key that seals it"
	case c.path == "kms.region" || c.path == "kms.profile":
		if s.anyKey(func(k *keyState) bool { return k.kmsRecorded || k.nonce != "" }) {
			return "the ceremony's KMS keys were already created or chosen there"
		}
	case c.path == "kms.wrapping_algorithm" || c.path == "kms.wrapping_key_spec":
		if s.anyKey(func(k *keyState) bool { return k.bundle != nil && !k.imported }) {
			return "a key was already wrapped with the old value"
		}
	case strings.HasPrefix(c.path, "escrow"):
		if s.escrowed {
			return "the escrow was already made and sealed to the custodians as they were"
		}
	case strings.HasPrefix(c.path, "keys"):
		return s.keyContradicts(c, field)
	}
	return ""
}

// keyContradicts is contradicts for a field of keys[].
func (s *state) keyContradicts(c change, field string) string {
	k := s.keyByLabel(c.label)
	if c.new == "(removed)" || c.old == "(none)" {
		switch {
		case s.escrowed:
			return "the escrow was already made with the keys as they were"
		case s.goneKeys[c.label] != "":
			return fmt.Sprintf("the transcript records key %s (%s)", c.label, s.goneKeys[c.label])
		}
		return ""
	}
	if strings.Contains(c.path, ".replicas") && (k.kmsRecorded || k.nonce != "") {
		return "the key's KMS keys were already created or chosen with the replicas as they were"
	}
	switch field {
	case "valid_to", "valid_for", "does_not_expire":
		if k.imported {
			return "the key was already imported with the old expiry"
		}
	case "id":
		if k.generated || k.genIntent {
			return "the key was already generated on the token with the old id"
		}
	case "kms_key_id", "create", "description", "params_file", "multi_region", "rotate":
		if k.kmsRecorded || k.nonce != "" {
			return "the key's KMS key was already created or chosen"
		}
	case "wrapping_key_sha256":
		if k.bundle != nil || k.imported {
			return "the key was already wrapped"
		}
	}
	return ""
}

func (s *state) anyKey(f func(*keyState) bool) bool {
	for _, k := range s.keys {
		if f(k) {
			return true
		}
	}
	return false
}

func (s *state) keyByLabel(label string) *keyState {
	for _, k := range s.keys {
		if k.cfg.Label == label {
			return k
		}
	}
	return nil
}
