package ceremony

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// importKeys imports each key's material into its KMS key, then into the
// key's replicas, then (a rotation) rotates the key to it.
func importKeys(ctx context.Context, s *state) (string, error) {
	if s.cfg.Offline() {
		return "offline: carry the bundle files out of the room and import them with keyceremony upload", nil
	}
	now := testOnlyNow()
	var todo []*keyState
	for _, k := range s.keys {
		if k.imported {
			k.res.ValidTo = k.validTo
			if !k.replicasDone() || k.cfg.Rotate && !k.rotated {
				todo = append(todo, k) // a run that died left it half done
			}
			continue
		}
		vt, err := k.cfg.validTo(now)
		if err != nil {
			return "", err
		}
		k.validTo, k.res.ValidTo = vt, vt
		todo = append(todo, k)
	}
	// The operator confirms each key, one after the other, just before its
	// import starts; the imports run concurrently, except that a person
	// typing the confirmations sees each import done before the next
	// question.
	confs := map[*keyState]Confirmation{}
	confirm := func(ctx context.Context, k *keyState) (bool, error) {
		if k.imported {
			return false, nil // confirmed when its first import started
		}
		expiry := "never expires"
		if k.validTo != nil {
			expiry = "expires " + k.validTo.Format(time.RFC3339)
		}
		into := k.arn
		if len(k.replicas) > 0 {
			var regions []string
			for _, r := range k.replicas {
				regions = append(regions, r.region)
			}
			into += " and its replicas in " + strings.Join(regions, ", ")
		}
		conf, err := s.ui.Confirm(ctx, fmt.Sprintf("Import the material of %q (key check value %s) into %s (%s). KMS will accept only this material for the key from now on.", k.cfg.Label, k.kcv, into, expiry), k.cfg.Label)
		if err != nil {
			return false, err
		}
		if err := k.bundle.CheckValid(now); err != nil {
			return false, err
		}
		confs[k] = conf
		return conf.Typed, nil
	}
	err := s.eachKeyAfter(ctx, "import", todo, confirm, func(ctx context.Context, k *keyState) error {
		return s.importKey(ctx, k, s.confirmation(confs, k))
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d key(s) imported", len(s.keys)), nil
}

// importKey imports k's material into its KMS key and then into each of
// its replicas, and rotates a rotation ceremony's key to it, doing only
// what the transcript does not show done.
func (s *state) importKey(ctx context.Context, k *keyState, confirmation string) error {
	var desc string
	_ = s.locked(func() error { desc = MaterialDescription(k.kcv, s.cfg.Ceremony.ID, s.tr.Hash()); return nil })
	if !k.imported {
		data, err := s.importPrimary(ctx, k, desc)
		if err != nil {
			return err
		}
		data.Confirmation = confirmation
		err = s.locked(func() error {
			k.imported, k.materialID, k.res.KeyMaterialID = true, data.KeyMaterialID, data.KeyMaterialID
			return s.recordChange(data)
		})
		if err != nil {
			return err
		}
	}
	if err := s.importReplicas(ctx, k, k.materialID, desc, confirmation); err != nil {
		return err
	}
	if k.cfg.Rotate && !k.rotated {
		return s.rotateTo(ctx, k)
	}
	return nil
}

// importPrimary imports k's bundle into its KMS key: KMS's default import
// type for a key's first material; NEW_KEY_MATERIAL for a rotation. A
// rotation's new material that a run which died imported but did not
// record is found by the key check value in its KeyMaterialDescription
// and imported again as that material (EXISTING_KEY_MATERIAL with its
// KeyMaterialId, which KMS refuses for other material): it is never
// imported twice as new.
func (s *state) importPrimary(ctx context.Context, k *keyState, desc string) (*events.Import, error) {
	req := awskms.ImportRequest{Bundle: k.bundle, ValidTo: k.validTo, Description: desc}
	var mid, adopted string
	var err error
	if k.cfg.Rotate {
		mid, req.Type, adopted, err = importNewMaterial(ctx, s.kms, req, k.kcv, s.resumed)
	} else {
		mid, err = importChecked(ctx, s.kms, req)
	}
	if err != nil {
		return nil, err
	}
	data := importData(k, k.arn, mid, desc, req.Type, "")
	data.Adopted = adopted
	return data, nil
}

// importNewMaterial imports a rotation's new material (key check value kcv)
// as req says into req.Bundle's KMS key with NEW_KEY_MATERIAL. When look
// is set (a run that died may have imported it), material whose
// KeyMaterialDescription carries kcv and that is pending rotation or
// current is imported again as that material instead (EXISTING_KEY_MATERIAL
// with its KeyMaterialId, which KMS refuses for other material), and
// adopted says so: it is never imported twice as new.
func importNewMaterial(ctx context.Context, c *awskms.Client, req awskms.ImportRequest, kcv string, look bool) (mid string, typ awskms.ImportType, adopted string, err error) {
	req.Type = awskms.ImportNew
	if look {
		id, state, err := findNewMaterial(ctx, c, req.Bundle.KeyARN, kcv)
		if err != nil {
			return "", "", "", err
		}
		if id != "" {
			req.Type, req.MaterialID = awskms.ImportExisting, id
			adopted = fmt.Sprintf("found %s (key check value %s in its description) after the process died before recording its import; imported again as that material", state, kcv)
		}
	}
	mid, err = importChecked(ctx, c, req)
	return mid, req.Type, adopted, err
}

// importChecked imports as req says and returns the KeyMaterialId KMS
// reports; when req names a KeyMaterialId, KMS must report that one (the
// same material).
func importChecked(ctx context.Context, c *awskms.Client, req awskms.ImportRequest) (string, error) {
	mid, err := c.ImportMaterial(ctx, req)
	if err != nil {
		return "", err
	}
	if req.MaterialID != "" && mid != req.MaterialID {
		return "", fmt.Errorf("KMS key %s reports key material %s after the import, not %s: it did not take the same material", req.Bundle.KeyARN, mid, req.MaterialID)
	}
	return mid, nil
}

// findNewMaterial looks among the materials of the KMS key arn for the one
// whose KeyMaterialDescription carries the key check value kcv and that is
// pending rotation or current (a rotation a run that died went through).
func findNewMaterial(ctx context.Context, c *awskms.Client, arn, kcv string) (id, state string, err error) {
	ms, err := c.Materials(ctx, arn)
	if err != nil {
		return "", "", err
	}
	for _, m := range ms {
		if d, _ := parseMaterialDescription(m.Description); d != kcv {
			continue
		}
		switch m.State {
		case "PENDING_ROTATION", "PENDING_MULTI_REGION_IMPORT_AND_ROTATION":
			return m.ID, "the new material pending rotation", nil
		case "CURRENT":
			return m.ID, "the new material already current", nil
		}
	}
	return "", "", nil
}

// importData is the Import event of k's material, KeyMaterialId mid, into
// the KMS key arn.
func importData(k *keyState, arn, mid, desc string, typ awskms.ImportType, confirmation string) *events.Import {
	data := &events.Import{Label: k.cfg.Label, KMSKeyARN: arn, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE", KeyCheckValue: k.kcv,
		KeyMaterialID: mid, KeyMaterialDescription: desc, ImportType: string(typ), Confirmation: confirmation}
	if k.validTo != nil {
		data.ExpirationModel, data.ValidTo = "KEY_MATERIAL_EXPIRES", k.validTo
	}
	return data
}

// checkMaterialExpiry checks that the material mid of the KMS key d (described
// through c) expires at vt (nil: never). DescribeKey's ValidTo is the
// earliest expiry of all the key's materials, so a key with several (a
// rotated one) is checked in ListKeyRotations.
func checkMaterialExpiry(ctx context.Context, c *awskms.Client, d *awskms.Key, mid string, vt *time.Time) error {
	if vt == nil && d.ExpirationModel == "KEY_MATERIAL_DOES_NOT_EXPIRE" || vt != nil && d.ValidTo != nil && d.ValidTo.Equal(*vt) {
		return nil
	}
	ms, err := c.Materials(ctx, d.ARN)
	if err != nil {
		return err
	}
	for _, m := range ms {
		switch {
		case m.ID != mid:
		case vt == nil && m.ExpirationModel != "KEY_MATERIAL_DOES_NOT_EXPIRE":
			return fmt.Errorf("KMS key %s has key material %s with expiration model %s, want KEY_MATERIAL_DOES_NOT_EXPIRE", d.ARN, mid, m.ExpirationModel)
		case vt != nil && (m.ValidTo == nil || !m.ValidTo.Equal(*vt)):
			return fmt.Errorf("KMS key %s has key material %s valid to %v, want %s", d.ARN, mid, m.ValidTo, vt.Format(time.RFC3339))
		default:
			return nil
		}
	}
	return fmt.Errorf("KMS key %s does not list key material %s", d.ARN, mid)
}

// confirmation is the transcript record of the operator's confirmation of
// k's import (confs is written under s.mu).
func (s *state) confirmation(confs map[*keyState]Confirmation, k *keyState) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := confs[k]; !ok {
		return "" // confirmed by a run that died
	}
	return confs[k].Record("operator " + s.cfg.Ceremony.Operator)
}

// rotateTo checks that KMS holds k's new material in PENDING_ROTATION (on
// a multi-Region key: imported into every replica) and rotates k's KMS key
// to it, recording it. A rotation a run that died made but did not record
// is found (the new material current) and recorded.
func (s *state) rotateTo(ctx context.Context, k *keyState) error {
	previous, adopted, err := rotateKMSKey(ctx, s.kms, k.arn, k.materialID, s.resumed)
	if err != nil {
		return err
	}
	ev := &events.Rotate{Label: k.cfg.Label, KMSKeyARN: k.arn, KeyMaterialID: k.materialID, PreviousKeyMaterialID: previous, RotationType: "ON_DEMAND", Adopted: adopted}
	return s.locked(func() error { k.rotated = true; return s.recordChange(ev) })
}

// rotateKMSKey checks that the KMS key arn holds the imported material mid
// in PENDING_ROTATION (on a multi-Region key: imported into every replica),
// rotates the key to it (RotateKeyOnDemand) and checks it is current. It
// returns the material that was current before. When resumed is set, mid
// found current already is a rotation a run that died made: adopted says
// so, and previous is the NON_CURRENT material.
func rotateKMSKey(ctx context.Context, c *awskms.Client, arn, mid string, resumed bool) (previous, adopted string, err error) {
	ms, err := c.Materials(ctx, arn)
	if err != nil {
		return "", "", err
	}
	var nonCurrent string
	pending, current := false, false
	for _, m := range ms {
		switch {
		case m.ID == mid && m.State == "PENDING_ROTATION" && m.ImportState == "IMPORTED":
			pending = true
		case m.ID == mid && m.State == "CURRENT":
			current = true
		case m.State == "CURRENT":
			previous = m.ID
		case m.State == "NON_CURRENT":
			nonCurrent = m.ID
		}
	}
	switch {
	case current && resumed:
		return nonCurrent, "found current after the process died before recording the rotation", nil
	case !pending:
		return "", "", fmt.Errorf("KMS key %s does not list the imported material %s as PENDING_ROTATION: not rotating", arn, mid)
	}
	if err := c.RotateOnDemand(ctx, arn); err != nil {
		return "", "", err
	}
	d, err := c.Describe(ctx, arn)
	if err != nil {
		return "", "", err
	}
	if d.CurrentMaterialID != mid {
		return "", "", fmt.Errorf("KMS key %s has current material %s after the rotation, not %s", arn, d.CurrentMaterialID, mid)
	}
	return previous, "", nil
}

func checkImport(ctx context.Context, s *state) (string, error) {
	if s.cfg.Offline() {
		return "offline: keyceremony upload checks each key in KMS after importing it", nil
	}
	var todo []*keyState
	for _, k := range s.keys {
		if !k.checked || slices.ContainsFunc(k.replicas, func(r *replicaState) bool { return !r.checked }) {
			todo = append(todo, k)
		}
	}
	err := s.eachKey(ctx, "check-import", todo, func(ctx context.Context, k *keyState) error {
		if !k.checked {
			data, err := s.checkTarget(ctx, s.kms, k, k.arn)
			if err != nil {
				return err
			}
			if err := s.locked(func() error { k.checked = true; return s.record(data) }); err != nil {
				return err
			}
		}
		return s.checkReplicasInKMS(ctx, k)
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d key(s) Enabled, encrypt/decrypt ok", len(s.keys)), nil
}

// checkTarget checks the KMS key arn holding k's material (k's own, or a
// replica's through c, its Region's client): Enabled, the expiry asked for,
// and an encrypt/decrypt round trip. It returns the CheckImport event.
func (s *state) checkTarget(ctx context.Context, c *awskms.Client, k *keyState, arn string) (*events.CheckImport, error) {
	d, err := c.Describe(ctx, arn)
	if err != nil {
		return nil, err
	}
	if d.State != "Enabled" {
		return nil, fmt.Errorf("KMS key %s is %s after import, not Enabled", arn, d.State)
	}
	if err := checkMaterialExpiry(ctx, c, d, k.materialID, k.validTo); err != nil {
		return nil, err
	}
	// Prove KMS can use the material: encrypt and decrypt a random value.
	probe := make([]byte, 32)
	if _, err := rand.Read(probe); err != nil {
		return nil, err
	}
	ct, err := c.Encrypt(ctx, arn, probe)
	if err != nil {
		return nil, err
	}
	pt, err := c.Decrypt(ctx, arn, ct)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pt, probe) {
		return nil, fmt.Errorf("KMS key %s: decrypt did not return what was encrypted", arn)
	}
	// The expiry of the material imported, as checked above (DescribeKey's
	// is the earliest of all the key's materials).
	data := &events.CheckImport{Label: k.cfg.Label, KMSKeyARN: arn, KeyState: d.State, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE", EncryptDecrypt: "ok"}
	if k.validTo != nil {
		vt := k.validTo.UTC()
		data.ExpirationModel, data.ValidTo = "KEY_MATERIAL_EXPIRES", &vt
	}
	return data, nil
}
