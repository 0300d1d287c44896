package ceremony

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// StatusOptions say which keys KeysStatus looks at and against what.
type StatusOptions struct {
	// KMS configures the clients; a key ARN's Region overrides KMS.Region.
	KMS awskms.Options
	// Keys are key ARNs or ids given directly, with no record to match.
	Keys []string
	// Transcripts are sealed ceremony (or renewal, rotation) transcripts:
	// each key they record is looked at and matched against the record.
	Transcripts []NamedFile
	// PublicKey, when set, pins the transcripts' signer.
	PublicKey crypto.PublicKey
	// Warn is how close an expiry must be to count as a warning.
	Warn time.Duration
}

// NamedFile is a file's name and content.
type NamedFile struct {
	Name string
	Data []byte
}

// Record values of KeyStatus: whether KMS holds the material a ceremony
// recorded.
const (
	RecordMatch    = "match"    // KMS names a material ID the transcript recorded, or its description the recorded key check value
	RecordMismatch = "mismatch" // KMS holds material the transcript does not record
	RecordUnknown  = "unknown"  // nothing to compare with
)

// KeyStatus is what Status found about one key.
type KeyStatus struct {
	Key             string `json:"key"` // as given or recorded
	Label           string `json:"label,omitempty"`
	ARN             string `json:"arn,omitempty"`
	State           string `json:"state,omitempty"`
	Origin          string `json:"origin,omitempty"`
	MultiRegion     bool   `json:"multi_region,omitempty"`
	ExpirationModel string `json:"expiration_model,omitempty"`
	// ValidTo is the earliest expiry of the key's imported materials: the
	// key becomes unusable when any of them expires.
	ValidTo           *time.Time        `json:"valid_to,omitempty"`
	DaysLeft          *int              `json:"days_left,omitempty"`
	CurrentMaterialID string            `json:"current_key_material_id,omitempty"`
	Rotations         int               `json:"rotations"`
	Materials         []awskms.Material `json:"materials,omitempty"`
	Record            string            `json:"record"`
	RecordDetail      string            `json:"record_detail,omitempty"`
	Warnings          []string          `json:"warnings,omitempty"`
	Error             string            `json:"error,omitempty"`
	recorded          *recordedKey
}

// StatusReport is the result of KeysStatus.
type StatusReport struct {
	Checked time.Time   `json:"checked"`
	Keys    []KeyStatus `json:"keys"`
}

// Worst returns what the report calls for: "mismatch" when a key holds
// material its ceremony did not record, "error" when a key could not be
// read, "warn" when a key expires within the warning window or is not
// Enabled, else "ok".
func (r *StatusReport) Worst() string {
	worst := "ok"
	rank := map[string]int{"ok": 0, "warn": 1, "error": 2, "mismatch": 3}
	for _, k := range r.Keys {
		level := "ok"
		switch {
		case k.Record == RecordMismatch:
			level = "mismatch"
		case k.Error != "":
			level = "error"
		case len(k.Warnings) > 0:
			level = "warn"
		}
		if rank[level] > rank[worst] {
			worst = level
		}
	}
	return worst
}

// recordedKey is what the transcripts say about a key: the key check
// values of its materials (a rotation's transcript records another) and
// the KeyMaterialIds KMS returned.
type recordedKey struct {
	label       string
	kcvs        map[string]bool
	materialIDs map[string]bool
	transcript  string
}

// KeysStatus reads each key's state, expiry and materials from KMS and
// matches them against the transcripts' records. Transcripts that fail
// verification are an error (a *transcripts.VerifyError); a key that
// cannot be read is reported in its KeyStatus.Error.
func KeysStatus(ctx context.Context, o StatusOptions) (*StatusReport, error) {
	now := testOnlyNow()
	rep := &StatusReport{Checked: now}
	hashes := map[string]string{} // transcript prefix hash -> transcript name
	var order []string
	byARN := map[string]*recordedKey{}
	for _, t := range o.Transcripts {
		keys, err := recordedKeys(t, o.PublicKey, hashes)
		if err != nil {
			return nil, fmt.Errorf("transcript %s: %w", t.Name, err)
		}
		for _, rk := range keys {
			arn := rk.arn
			if prev := byARN[arn]; prev != nil {
				for id := range rk.materialIDs {
					prev.materialIDs[id] = true
				}
				for kcv := range rk.kcvs {
					prev.kcvs[kcv] = true
				}
				continue
			}
			byARN[arn] = &rk.recordedKey
			order = append(order, arn)
		}
	}
	for _, arn := range order {
		rep.Keys = append(rep.Keys, KeyStatus{Key: arn, Label: byARN[arn].label, recorded: byARN[arn]})
	}
	for _, k := range o.Keys {
		if byARN[k] == nil { // a key a transcript records is there already
			rep.Keys = append(rep.Keys, KeyStatus{Key: k})
		}
	}
	clients := map[string]*awskms.Client{}
	for i := range rep.Keys {
		ks := &rep.Keys[i]
		c, err := clientFor(ctx, clients, o.KMS, ks.Key)
		if err == nil {
			err = readStatus(ctx, c, ks, now, o.Warn)
		}
		if err != nil {
			ks.Error = err.Error()
		}
		matchRecord(ks, hashes)
	}
	return rep, nil
}

// clientFor returns a client for the Region of key (from its ARN), made once
// per Region.
func clientFor(ctx context.Context, clients map[string]*awskms.Client, o awskms.Options, key string) (*awskms.Client, error) {
	if r := arnRegion(key); r != "" {
		o.Region = r
	}
	if c := clients[o.Region]; c != nil {
		return c, nil
	}
	c, err := awskms.New(ctx, o)
	if err != nil {
		return nil, err
	}
	clients[o.Region] = c
	return c, nil
}

// arnRegion returns the Region of a KMS key ARN, or "".
func arnRegion(s string) string {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) == 6 && parts[0] == "arn" && parts[2] == "kms" {
		return parts[3]
	}
	return ""
}

func readStatus(ctx context.Context, c *awskms.Client, ks *KeyStatus, now time.Time, warn time.Duration) error {
	d, err := c.Describe(ctx, ks.Key)
	if err != nil {
		return err
	}
	ks.ARN, ks.State, ks.Origin, ks.MultiRegion = d.ARN, d.State, d.Origin, d.MultiRegion
	ks.ExpirationModel, ks.ValidTo, ks.CurrentMaterialID = d.ExpirationModel, d.ValidTo, d.CurrentMaterialID
	ms, err := c.Materials(ctx, d.ARN)
	if err != nil {
		return err
	}
	ks.Materials = ms
	for _, m := range ms {
		if m.RotationDate != nil && (m.State == "CURRENT" || m.State == "NON_CURRENT") {
			ks.Rotations++
		}
		// Any imported material that expires makes the key unusable.
		if m.ImportState == "IMPORTED" && m.State != "PENDING_ROTATION" && m.ValidTo != nil &&
			(ks.ValidTo == nil || m.ValidTo.Before(*ks.ValidTo)) {
			ks.ValidTo = m.ValidTo
		}
	}
	if ks.ValidTo != nil {
		days := int(ks.ValidTo.Sub(now).Hours() / 24)
		ks.DaysLeft = &days
		if warn > 0 && ks.ValidTo.Sub(now) <= warn {
			ks.Warnings = append(ks.Warnings, fmt.Sprintf("key material expires %s, in %d days: renew it with keyceremony renew", ks.ValidTo.UTC().Format(time.RFC3339), days))
		}
	}
	switch ks.State {
	case "Enabled":
	case "PendingImport":
		ks.Warnings = append(ks.Warnings, "key is PendingImport: its material expired or was deleted; import it again from the token or the escrow (keyceremony renew, keyceremony recover --reimport)")
	default:
		ks.Warnings = append(ks.Warnings, "key is "+ks.State+", not Enabled")
	}
	return nil
}

// matchRecord compares what KMS holds with the transcripts' record: the
// KeyMaterialIds KMS returned when the ceremony imported (KMS's own
// derivation from key and material) and, failing those, the key check
// value and transcript hash in the material's KeyMaterialDescription.
func matchRecord(ks *KeyStatus, hashes map[string]string) {
	ks.Record = RecordUnknown
	rec := ks.recorded
	var current *awskms.Material
	for i, m := range ks.Materials {
		if m.State == "CURRENT" {
			current = &ks.Materials[i]
		}
	}
	var notes []string
	if current != nil {
		kcv, th := parseMaterialDescription(current.Description)
		if th != "" {
			if name, ok := hashes[th]; ok {
				notes = append(notes, "description cites "+name)
			} else {
				notes = append(notes, "description cites transcript sha256:"+short(th)+", not among the given transcripts")
			}
		}
		if rec != nil && kcv != "" && len(rec.kcvs) > 0 && !rec.kcvs[kcv] {
			ks.Record = RecordMismatch
			ks.RecordDetail = fmt.Sprintf("the current material's description says key check value %s, the transcripts record %s", kcv, strings.Join(slices.Sorted(maps.Keys(rec.kcvs)), ", "))
			return
		}
		if rec != nil && rec.kcvs[kcv] {
			ks.Record = RecordMatch
			notes = append([]string{"key check value " + kcv + " as recorded"}, notes...)
		}
	}
	if rec != nil && len(rec.materialIDs) > 0 {
		for _, m := range ks.Materials {
			if m.State != "PENDING_ROTATION" && m.State != "PENDING_MULTI_REGION_IMPORT_AND_ROTATION" && !rec.materialIDs[m.ID] {
				ks.Record = RecordMismatch
				ks.RecordDetail = fmt.Sprintf("key material %s is not recorded in the transcripts", m.ID)
				return
			}
		}
		if ks.CurrentMaterialID != "" && rec.materialIDs[ks.CurrentMaterialID] {
			ks.Record = RecordMatch
			notes = append([]string{"current key material id as recorded"}, notes...)
		}
	}
	if rec == nil {
		notes = append(notes, "no transcript given for this key")
	}
	ks.RecordDetail = strings.Join(notes, "; ")
}

// parseMaterialDescription reads the key check value and transcript hash
// keyceremony writes into KeyMaterialDescription ("keyceremony kcv X ...
// transcript sha256:H").
func parseMaterialDescription(desc string) (kcv, transcriptHash string) {
	f := strings.Fields(desc)
	if len(f) == 0 || f[0] != "keyceremony" {
		return "", ""
	}
	for i := 1; i+1 < len(f); i++ {
		switch f[i] {
		case "kcv":
			kcv = f[i+1]
		case "transcript":
			transcriptHash, _ = strings.CutPrefix(f[i+1], "sha256:")
		}
	}
	return kcv, transcriptHash
}

// MaterialDescription is the KeyMaterialDescription keyceremony imports
// with: the key check value, the ceremony and the SHA-256 of the
// transcript as it stood (every character in KMS's allowed set).
func MaterialDescription(kcv, ceremonyID, transcriptHash string) string {
	d := "keyceremony kcv " + kcv
	if ceremonyID != "" {
		d += " ceremony " + ceremonyID
	}
	if transcriptHash != "" {
		d += " transcript sha256:" + transcriptHash
	}
	return d
}

type recordedARN struct {
	recordedKey
	arn string
}

// recordedKeys verifies a transcript and returns the keys it records, in
// order, adding the hash of each of its prefixes (what Writer.Hash cites)
// to hashes.
func recordedKeys(t NamedFile, pub crypto.PublicKey, hashes map[string]string) ([]*recordedARN, error) {
	res, err := transcripts.VerifyBytes(t.Data, transcripts.Options{PublicKey: pub})
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for line := range bytes.Lines(t.Data) {
		h.Write(line)
		hashes[hex.EncodeToString(h.Sum(nil))] = t.Name
	}
	kcvs := map[string]string{}
	var out []*recordedARN
	byLabel := map[string]*recordedARN{}
	for _, e := range res.Events {
		f := keyFactsOf(e.Data)
		if f.label == "" {
			continue
		}
		if f.kcv != "" {
			kcvs[f.label] = f.kcv
		}
		if f.arn == "" {
			continue
		}
		rk := byLabel[f.label+" "+f.arn]
		if rk == nil {
			rk = &recordedARN{recordedKey: recordedKey{label: f.label, kcvs: map[string]bool{}, materialIDs: map[string]bool{}, transcript: t.Name}, arn: f.arn}
			byLabel[f.label+" "+f.arn] = rk
			out = append(out, rk)
		}
		if f.materialID != "" {
			rk.materialIDs[f.materialID] = true
		}
	}
	for _, rk := range out {
		if kcv := kcvs[rk.label]; kcv != "" {
			rk.kcvs[kcv] = true
		}
	}
	return out, nil
}

// keyFacts is what one event says about a key: its label, the KMS key it
// names, its key check value and the KeyMaterialId KMS returned.
type keyFacts struct {
	label, arn, kcv, materialID string
}

// keyFactsOf reads the key facts of the events that name a key.
func keyFactsOf(d events.Data) keyFacts {
	switch d := d.(type) {
	case *events.GenerateKey:
		return keyFacts{label: d.Label, kcv: d.KeyCheckValue}
	case *events.Key:
		return keyFacts{label: d.Label, kcv: d.KeyCheckValue}
	case *events.RecoverKey:
		return keyFacts{label: d.Label, kcv: d.KeyCheckValue}
	case *events.KMSKey:
		return keyFacts{label: d.Label, arn: d.KMSKeyARN}
	case *events.FetchParams:
		return keyFacts{label: d.Label, arn: d.KMSKeyARN}
	case *events.CheckImport:
		return keyFacts{label: d.Label, arn: d.KMSKeyARN}
	case *events.Wrap:
		return keyFacts{label: d.Label, arn: d.KMSKeyARN, kcv: d.KeyCheckValue}
	case *events.Import:
		return keyFacts{label: d.Label, arn: d.KMSKeyARN, kcv: d.KeyCheckValue, materialID: d.KeyMaterialID}
	case *events.Reimport:
		return keyFacts{label: d.Label, arn: d.KMSKeyARN, kcv: d.KeyCheckValue, materialID: d.KeyMaterialID}
	case *events.Renew:
		return keyFacts{label: d.Label, kcv: d.KeyCheckValue}
	case *events.Rotate:
		return keyFacts{label: d.Label, arn: d.KMSKeyARN, materialID: d.KeyMaterialID}
	case *events.Replicate:
		return keyFacts{label: d.Label, arn: d.KMSKeyARN}
	}
	return keyFacts{}
}
