package ceremony

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/wrap"
)

// RotationLimit is the number of on-demand rotations AWS KMS allows per
// key (the KMS Developer Guide, rotating-keys-on-demand). A key that has
// had as many is refused before new material is imported into it.
const RotationLimit = 25

// RotationUpload is what [UploadRotation] did.
type RotationUpload struct {
	KeyARN string
	// MaterialID is the new material's KeyMaterialId, Previous the one that
	// was current before the rotation (empty when Done).
	MaterialID  string
	Previous    string
	Description string
	ValidTo     *time.Time
	// Done says an earlier upload made the material current already:
	// nothing was imported or rotated.
	Done bool
	// Adopted says an earlier upload that stopped had imported the material
	// (found by its key check value): imported again as that material.
	Adopted bool
	// Replicas are the replica keys that hold the material, and Imported
	// those this upload imported it into.
	Replicas []string
	Imported []string
	// OldDecrypts says a ciphertext made under the previous material before
	// the rotation decrypted after it.
	OldDecrypts bool
}

// IncompleteRotationError is the error of an upload of a multi-Region
// rotation that was not given every bundle of the key: the primary's
// rotation waits for every replica, so one upload takes them all.
type IncompleteRotationError struct {
	CeremonyID string
	Label      string
	// Bundles are the file names of every bundle of the key (in the
	// transcript's directory), the primary's first.
	Bundles []string
}

func (e *IncompleteRotationError) Error() string {
	return fmt.Sprintf("the transcript of ceremony %s records the rotation of key %q with %d bundles (its multi-Region primary and each replica): give them all to one upload, in any order", e.CeremonyID, e.Label, len(e.Bundles))
}

// UploadRotation does, online, the rotation an offline ceremony prepared:
// bundles are every bundle of one key (the primary's and each replica's)
// and evs what the verified transcript says of each ([VerifyBundles]), which
// must record the key as a rotation. Before anything changes it checks the
// key (Enabled, EXTERNAL, SYMMETRIC_DEFAULT, its replicas exactly those the
// transcript records, no other material pending rotation, fewer than
// [RotationLimit] rotations). It then imports the material into the primary
// with NEW_KEY_MATERIAL, into each replica with EXISTING_KEY_MATERIAL and
// the KeyMaterialId KMS gave it, checks it is PENDING_ROTATION, calls
// RotateKeyOnDemand and checks the material CURRENT, the old ones
// NON_CURRENT and imported, a ciphertext made before the rotation
// decrypting, and encrypt and decrypt in every Region.
//
// Run again after it stopped anywhere, it finds the material by the key
// check value in its KeyMaterialDescription and goes on (never importing
// it twice as new); after it succeeded, it changes nothing and says so
// (Done).
func UploadRotation(ctx context.Context, o awskms.Options, bundles []*wrap.Bundle, evs []*BundleEvidence, e Expiry) (*RotationUpload, error) {
	ev := evs[0]
	primary, replicas, err := rotationBundles(bundles, evs)
	if err != nil {
		return nil, err
	}
	vt, err := e.validTo(ev.KMSKeyARN, testOnlyNow())
	if err != nil {
		return nil, err
	}
	o.Region = primary.Region // each key in its own Region
	c, err := awskms.New(ctx, o)
	if err != nil {
		return nil, err
	}
	arn := primary.KeyARN
	if err := checkRotationTarget(ctx, c, arn, ev.Replicas); err != nil {
		return nil, err
	}
	ours, err := checkRotationMaterials(ctx, c, arn, ev.KeyCheckValue)
	if err != nil {
		return nil, err
	}
	res := &RotationUpload{KeyARN: arn, Description: "keyceremony kcv " + ev.KeyCheckValue + " transcript sha256:" + ev.TranscriptHash, ValidTo: vt}
	for _, r := range replicas {
		res.Replicas = append(res.Replicas, r.KeyARN)
	}
	if ours != nil && ours.State == "CURRENT" {
		res.Done, res.MaterialID = true, ours.ID
		res.ValidTo = ours.ValidTo
	} else {
		for _, b := range bundles {
			if err := b.CheckValid(testOnlyNow()); err != nil {
				return nil, err
			}
		}
		if err := rotateWithBundles(ctx, c, primary, replicas, ev.KeyCheckValue, vt, res); err != nil {
			return nil, err
		}
	}
	if err := checkRotated(ctx, c, res, replicas); err != nil {
		return nil, err
	}
	return res, nil
}

// rotationBundles sorts the bundles of a rotation into the primary's and
// the replicas' (in the transcript's order), checking they are exactly
// the key's: the transcript records each for the one key, a rotation.
func rotationBundles(bundles []*wrap.Bundle, evs []*BundleEvidence) (*wrap.Bundle, []*wrap.Bundle, error) {
	ev := evs[0]
	byARN := map[string]*wrap.Bundle{}
	for i, b := range bundles {
		if e := evs[i]; e.Label != ev.Label || e.KMSKeyARN != ev.KMSKeyARN || e.Rotation != ev.Rotation {
			return nil, nil, fmt.Errorf("the bundles are for keys %q and %q: upload one key's bundles at a time", ev.Label, e.Label)
		}
		if byARN[b.KeyARN] != nil {
			return nil, nil, fmt.Errorf("two bundles for %s: give each bundle once", b.KeyARN)
		}
		byARN[b.KeyARN] = b
	}
	want := append([]string{ev.KMSKeyARN}, ev.Replicas...)
	var replicas []*wrap.Bundle
	for _, arn := range want {
		if byARN[arn] == nil || ev.Bundles[arn] == "" {
			files := []string{}
			for _, a := range want {
				files = append(files, ev.Bundles[a])
			}
			return nil, nil, &IncompleteRotationError{CeremonyID: ev.CeremonyID, Label: ev.Label, Bundles: files}
		}
		if arn != ev.KMSKeyARN {
			replicas = append(replicas, byARN[arn])
		}
	}
	return byARN[ev.KMSKeyARN], replicas, nil
}

// checkRotationTarget checks, before anything changes, that the KMS key arn
// can take new material for a rotation: Enabled, EXTERNAL,
// SYMMETRIC_DEFAULT, and, as a multi-Region primary, replicas exactly the
// ones listed (KMS rotates the primary only once every replica has the
// material), each Enabled.
func checkRotationTarget(ctx context.Context, c *awskms.Client, arn string, replicas []string) error {
	d, err := c.Describe(ctx, arn)
	if err != nil {
		return err
	}
	switch {
	case d.Origin != "EXTERNAL":
		return fmt.Errorf("KMS key %s has origin %s: only a key with Origin EXTERNAL takes imported material", arn, d.Origin)
	case d.KeySpec != "" && d.KeySpec != "SYMMETRIC_DEFAULT":
		return fmt.Errorf("KMS key %s has key spec %s: only SYMMETRIC_DEFAULT keys take several key materials", arn, d.KeySpec)
	case d.State == "PendingImport":
		return fmt.Errorf("KMS key %s is PendingImport: a rotation adds new material to a key that has its material; re-import its current material first (keyceremony renew or recover --reimport), then upload again", arn)
	case d.State != "Enabled":
		return fmt.Errorf("KMS key %s is %s: a rotation imports new material into an Enabled key; enable it first", arn, d.State)
	case d.MultiRegionType == "REPLICA":
		return fmt.Errorf("KMS key %s is a multi-Region replica: rotate its primary", arn)
	}
	have, want := slices.Sorted(slices.Values(d.Replicas)), slices.Sorted(slices.Values(replicas))
	if !slices.Equal(have, want) {
		return fmt.Errorf("KMS key %s has replicas %v, the ceremony wrapped for %v: KMS rotates a multi-Region key only once every replica has the new material; run the ceremony again with params files for exactly its replicas", arn, have, want)
	}
	for _, r := range replicas {
		rd, err := regionOf(c, r).Describe(ctx, r)
		if err != nil {
			return err
		}
		if rd.State != "Enabled" {
			return fmt.Errorf("KMS key %s is %s: a rotation imports new material into Enabled replicas; renew its material first (keyceremony renew)", r, rd.State)
		}
	}
	return nil
}

// checkRotationMaterials lists the materials of the KMS key arn and returns
// the one whose description carries the key check value kcv (when not
// empty), if any (an earlier upload imported it). Without one, it refuses other material
// pending rotation and a key that reached [RotationLimit].
func checkRotationMaterials(ctx context.Context, c *awskms.Client, arn, kcv string) (*awskms.Material, error) {
	ms, err := c.Materials(ctx, arn)
	if err != nil {
		return nil, err
	}
	rotations := 0
	var other *awskms.Material
	for i, m := range ms {
		if d, _ := parseMaterialDescription(m.Description); kcv != "" && d == kcv {
			if m.State == "NON_CURRENT" {
				return nil, fmt.Errorf("KMS key %s holds this material (key check value %s) as %s NON_CURRENT: it was rotated to and away from already; nothing was changed", arn, kcv, m.ID)
			}
			return &ms[i], nil
		}
		if m.RotationDate != nil {
			rotations++
		}
		if m.State == "PENDING_ROTATION" || m.State == "PENDING_MULTI_REGION_IMPORT_AND_ROTATION" {
			other = &ms[i]
		}
	}
	switch {
	case other != nil:
		return nil, fmt.Errorf("KMS key %s has other key material %s pending rotation: rotate to it or delete it (DeleteImportedKeyMaterial with its KeyMaterialId) first; nothing was imported", arn, other.ID)
	case rotations >= RotationLimit:
		return nil, fmt.Errorf("KMS key %s has had %d on-demand rotations, the limit KMS allows: it takes no new material; create a new key for new material; nothing was imported", arn, rotations)
	}
	return nil, nil
}

// rotateWithBundles imports the new material (key check value kcv) into
// the primary and each replica and rotates the primary to it, filling res.
func rotateWithBundles(ctx context.Context, c *awskms.Client, primary *wrap.Bundle, replicas []*wrap.Bundle, kcv string, vt *time.Time, res *RotationUpload) error {
	arn := primary.KeyARN
	// A ciphertext under the current material, to decrypt after.
	probe := make([]byte, 32)
	if _, err := rand.Read(probe); err != nil {
		return err
	}
	old, err := c.Encrypt(ctx, arn, probe)
	if err != nil {
		return err
	}
	req := awskms.ImportRequest{Bundle: primary, ValidTo: vt, Description: res.Description}
	mid, _, adopted, err := importNewMaterial(ctx, c, req, kcv, true)
	if err != nil {
		return err
	}
	res.MaterialID, res.Adopted = mid, adopted != ""
	for _, b := range replicas {
		rc := c.In(b.Region)
		ms, err := rc.Materials(ctx, b.KeyARN)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(ms, func(m awskms.Material) bool { return m.ID == mid && m.ImportState == "IMPORTED" }) {
			continue // an earlier upload imported it
		}
		req := awskms.ImportRequest{Bundle: b, ValidTo: vt, Description: res.Description, Type: awskms.ImportExisting, MaterialID: mid}
		if _, err := importChecked(ctx, rc, req); err != nil {
			return err
		}
		res.Imported = append(res.Imported, b.KeyARN)
	}
	if res.Previous, _, err = rotateKMSKey(ctx, c, arn, mid, true); err != nil {
		return err
	}
	pt, err := c.Decrypt(ctx, arn, old)
	if err != nil {
		return fmt.Errorf("a ciphertext made under the previous material of %s does not decrypt after the rotation: %w", arn, err)
	}
	res.OldDecrypts = bytes.Equal(pt, probe)
	if !res.OldDecrypts {
		return fmt.Errorf("a ciphertext made under the previous material of %s decrypts to something else after the rotation", arn)
	}
	return nil
}

// checkRotated checks the key after the rotation: the new material CURRENT
// (with the expiry asked for, unless an earlier upload did it), every
// other NON_CURRENT and imported, the key Enabled, and encrypt and decrypt
// in every Region, a replica's ciphertext decrypting with the primary.
func checkRotated(ctx context.Context, c *awskms.Client, res *RotationUpload, replicas []*wrap.Bundle) error {
	arn := res.KeyARN
	for _, target := range append([]string{arn}, res.Replicas...) {
		tc := regionOf(c, target)
		ms, err := tc.Materials(ctx, target)
		if err != nil {
			return err
		}
		for _, m := range ms {
			switch {
			case m.ID == res.MaterialID && m.State != "CURRENT":
				return fmt.Errorf("KMS key %s lists the new material %s as %s, not CURRENT", target, m.ID, m.State)
			case m.ID != res.MaterialID && (m.State != "NON_CURRENT" || m.ImportState != "IMPORTED"):
				return fmt.Errorf("KMS key %s lists key material %s as %s %s, not NON_CURRENT IMPORTED: old ciphertexts need it", target, m.ID, m.State, m.ImportState)
			}
		}
		d, err := tc.Describe(ctx, target)
		if err != nil {
			return err
		}
		switch {
		case d.State != "Enabled":
			return fmt.Errorf("KMS key %s is %s after the rotation, not Enabled", target, d.State)
		case d.CurrentMaterialID != res.MaterialID:
			return fmt.Errorf("KMS key %s has current material %s after the rotation, not %s", target, d.CurrentMaterialID, res.MaterialID)
		}
		if !res.Done {
			if err := checkMaterialExpiry(ctx, tc, d, res.MaterialID, res.ValidTo); err != nil {
				return err
			}
		}
		probe := []byte("keyceremony rotation check " + target)
		ct, err := tc.Encrypt(ctx, target, probe)
		if err != nil {
			return err
		}
		for _, dec := range []string{target, arn} {
			pt, err := regionOf(c, dec).Decrypt(ctx, dec, ct)
			if err != nil {
				return fmt.Errorf("a ciphertext of %s does not decrypt with %s: %w", target, dec, err)
			}
			if !bytes.Equal(pt, probe) {
				return errors.New("KMS key " + dec + ": decrypt did not return what was encrypted")
			}
		}
	}
	return nil
}

// regionOf is c for the Region of the KMS key arn.
func regionOf(c *awskms.Client, arn string) *awskms.Client {
	if r := arnRegion(arn); r != "" {
		return c.In(r)
	}
	return c
}
