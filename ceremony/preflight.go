package ceremony

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ImportMargin is the least time between the start of a ceremony and a key's
// valid_to: the import happens after generation, escrow and the custodians'
// confirmations, and material that expires sooner is of no use.
const ImportMargin = time.Hour

// preflight checks, before the first change, what can be checked without
// the token or KMS: that every key still to be imported has an expiry KMS
// will take at import time, and that the output directory can be written.
// The token and KMS are checked by their steps, also before any change:
// openToken (labels free, wrapping mechanisms, and checkToken) and kmsKeys
// (existing keys, import parameters for the configured algorithm and spec).
func (s *state) preflight(now time.Time) error {
	for i, k := range s.keys {
		if k.imported {
			continue
		}
		if err := checkExpiry(k.cfg, fmt.Sprintf("keys[%d]", i), now); err != nil {
			return err
		}
	}
	if s.tr == nil {
		return checkWritable(s.res.OutDir)
	}
	return nil
}

// checkExpiry checks a key's expiry against the time of its import, which
// is after now: valid_to at least ImportMargin after now, and at most 365
// days after now (the import comes later, so KMS's limit, counted from the
// import, then holds too). valid_for counts from the import itself.
func checkExpiry(k *KeyConfig, path string, now time.Time) error {
	if k.ValidTo == "" {
		return nil
	}
	vt, err := time.Parse(time.RFC3339, k.ValidTo)
	if err != nil {
		return fmt.Errorf("%s.valid_to %q must be an RFC 3339 time such as 2027-06-30T00:00:00Z", path, k.ValidTo)
	}
	switch {
	case !vt.After(now):
		return fmt.Errorf("%s.valid_to %s is in the past (now %s): choose a later time, or use valid_for", path, k.ValidTo, now.UTC().Format(time.RFC3339))
	case vt.Before(now.Add(ImportMargin)):
		return fmt.Errorf("%s.valid_to %s is less than %v from now, before the import will happen: choose a later time, or use valid_for", path, k.ValidTo, ImportMargin)
	case vt.After(now.Add(365 * 24 * time.Hour)):
		return fmt.Errorf("%s.valid_to %s is more than 365 days from now, the most KMS allows: choose an earlier time", path, k.ValidTo)
	}
	return nil
}

// checkWritable checks a file can be made in dir, or, when dir does not
// exist yet, in the nearest directory above it that does (where dir will be
// made). It leaves nothing behind.
func checkWritable(dir string) error {
	d := dir
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("ceremony.out_dir %s: %s is not a directory", dir, d)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ceremony.out_dir %s: %w", dir, err)
		}
		up := filepath.Dir(d)
		if up == d {
			return fmt.Errorf("ceremony.out_dir %s: no directory above it exists", dir)
		}
		d = up
	}
	f, err := os.CreateTemp(d, ".keyceremony-write-check-*")
	if err != nil {
		return fmt.Errorf("ceremony.out_dir %s cannot be written (%v): choose a directory you can write to, or fix its permissions", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
