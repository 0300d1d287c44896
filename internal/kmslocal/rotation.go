package kmslocal

import (
	"crypto/rand"
	"slices"
	"time"
)

// Key material states and import states of ListKeyRotations, and the
// rotation type of on-demand rotations.
const (
	materialCurrent            = "CURRENT"
	materialNonCurrent         = "NON_CURRENT"
	materialPendingRotation    = "PENDING_ROTATION"
	materialPendingMultiRegion = "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"
	importStateImported        = "IMPORTED"
	importStatePending         = "PENDING_IMPORT"
	rotationOnDemand           = "ON_DEMAND"
)

// DefaultRotationLimit is the number of on-demand rotations a key allows
// when Options.RotationLimit is 0, as AWS KMS documents it.
const DefaultRotationLimit = 25

// materialVersion is one key material of a key. Material is nil while it
// is not imported (never, or since it expired or was deleted); MaterialID
// stays, so a re-import must bring the same material.
type materialVersion struct {
	Material            []byte     `json:"material,omitempty"`
	MaterialID          string     `json:"materialId,omitempty"`
	MaterialDescription string     `json:"materialDescription,omitempty"`
	ExpirationModel     string     `json:"expirationModel,omitempty"`
	ValidTo             *time.Time `json:"validTo,omitempty"`
	// RotationDate is when RotateKeyOnDemand made this material current;
	// nil for the key's first material.
	RotationDate *time.Time `json:"rotationDate,omitempty"`
}

// drop deletes the material, keeping its ID (and description).
func (v *materialVersion) drop() {
	clear(v.Material)
	v.Material = nil
	v.ExpirationModel = ""
	v.ValidTo = nil
}

// versions returns every material version of k that has an ID: the
// previous ones oldest first, the current one, then the pending one.
func (k *key) versions() []*materialVersion {
	vs := make([]*materialVersion, 0, len(k.Previous)+2)
	vs = append(vs, k.Previous...)
	if k.MaterialID != "" {
		vs = append(vs, &k.materialVersion)
	}
	if k.Pending != nil {
		vs = append(vs, k.Pending)
	}
	return vs
}

// version returns k's material version with ID id, or nil.
func (k *key) version(id string) *materialVersion {
	for _, v := range k.versions() {
		if v.MaterialID == id {
			return v
		}
	}
	return nil
}

// allImported reports whether every material permanently associated with
// k (current and previous, not pending) is imported: a key is usable only
// then, as on AWS.
func (k *key) allImported() bool {
	if k.Material == nil {
		return false
	}
	for _, v := range k.Previous {
		if v.Material == nil {
			return false
		}
	}
	return true
}

// materialState returns the KeyMaterialState of version v of k.
func (s *Server) materialState(k *key, v *materialVersion) string {
	switch {
	case v == &k.materialVersion:
		return materialCurrent
	case v != k.Pending:
		return materialNonCurrent
	case k.isPrimary() && !s.replicasHave(k, v.MaterialID):
		return materialPendingMultiRegion
	default:
		return materialPendingRotation
	}
}

// importTarget decides which material version of k an ImportKeyMaterial
// request fills, before the material is unwrapped: the first material, a
// new pending one (NEW_KEY_MATERIAL), or an associated one named by
// KeyMaterialId (default: the current one). A nil version with a nil error
// means a new pending version.
func (s *Server) importTarget(k *key, importType, wantID string) (*materialVersion, error) {
	switch {
	case k.MaterialID == "" && k.isReplica():
		return nil, newError(excInvalidState, "%s is a replica key whose primary has no key material yet; import into the primary key in %s first.", k.arn(), k.PrimaryRegion)
	case k.MaterialID == "":
		if wantID != "" {
			return nil, newError(excIncorrectKeyMaterial, "Key material ID %s is not associated with %s.", wantID, k.arn())
		}
		return &k.materialVersion, nil
	case importType == importTypeNew && k.isReplica():
		return nil, newError(excUnsupportedOperation, "%s is a replica key: import new key material into the primary key in %s, then the same material here with EXISTING_KEY_MATERIAL and its KeyMaterialId.", k.arn(), k.PrimaryRegion)
	case importType == importTypeNew && k.state() == statePendingImport:
		return nil, newError(excInvalidState, "%s is pending import: import its existing key material again before new key material.", k.arn())
	case importType == importTypeNew && k.Pending != nil:
		return nil, newError(excInvalidState, "%s already has key material %s pending rotation: rotate it with RotateKeyOnDemand or delete it with DeleteImportedKeyMaterial first.", k.arn(), k.Pending.MaterialID)
	case importType == importTypeNew:
		return nil, nil
	}
	if wantID == "" {
		wantID = k.MaterialID
	}
	v := k.version(wantID)
	if v == nil {
		return nil, newError(excIncorrectKeyMaterial, "Key material ID %s is not associated with %s.", wantID, k.arn())
	}
	return v, nil
}

// placeMaterial stores material, whose ID is id, in the version of k that
// importTarget chose (nil: a new pending version). It refuses material
// other than the version's, and new material equal to an associated one.
func (s *Server) placeMaterial(k *key, v *materialVersion, material []byte, id, model string, validTo *time.Time, desc *string) error {
	switch {
	case v == nil && k.version(id) != nil:
		return newError(excIncorrectKeyMaterial, "This key material is already associated with %s as %s; import new key material for a rotation.", k.arn(), id)
	case v != nil && v.MaterialID != "" && v.MaterialID != id:
		return newError(excIncorrectKeyMaterial, "The key material does not match the key material %s of %s; only the same material can be imported again.", v.MaterialID, k.arn())
	}
	if v == nil {
		v = &materialVersion{}
		k.Pending = v
		s.addPendingToReplicas(k, id)
	}
	if v == &k.materialVersion && v.MaterialID == "" {
		s.setReplicaMaterialID(k, id)
	}
	wasImported := k.allImported()
	clear(v.Material)
	v.Material = material
	v.MaterialID = id
	v.ExpirationModel = model
	v.ValidTo = validTo
	if desc != nil {
		v.MaterialDescription = *desc
	}
	if !wasImported && k.allImported() {
		// A re-import that makes the key usable again re-enables it; one
		// into a Disabled key with all its material leaves it disabled.
		k.Enabled = true
	}
	return nil
}

type rotateKeyOnDemandOutput struct {
	KeyId string
}

// rotateKeyOnDemand implements RotateKeyOnDemand. For an EXTERNAL key the
// material imported with NEW_KEY_MATERIAL becomes current (and on a
// multi-Region primary, on every replica too, which must all have it); an
// AWS_KMS key gets fresh random material. The rotation completes before
// the response.
func (s *Server) rotateKeyOnDemand(c *call) (any, error) {
	k, err := s.keyInput(c, &keyIDInput{}, nil)
	if err != nil {
		return nil, err
	}
	switch {
	case k.isReplica():
		return nil, newError(excUnsupportedOperation, "%s is a replica key; rotate the primary key in %s.", k.arn(), k.PrimaryRegion)
	case k.state() != stateEnabled:
		return nil, newError(excInvalidState, "%s is %s; only an Enabled key can be rotated.", k.arn(), k.state())
	case k.OnDemandRotations >= s.rotationLimit():
		return nil, newError(excLimitExceeded, "%s has reached the limit of %d on-demand rotations.", k.arn(), s.rotationLimit())
	case k.Origin == originExternal && k.Pending == nil:
		return nil, newError(excInvalidState, "%s has no key material in PENDING_ROTATION: import new key material with ImportType NEW_KEY_MATERIAL first.", k.arn())
	case k.Origin == originExternal && k.Pending.Material == nil:
		return nil, newError(excInvalidState, "the key material %s pending rotation of %s is not imported.", k.Pending.MaterialID, k.arn())
	case k.Origin == originExternal && s.materialState(k, k.Pending) != materialPendingRotation:
		return nil, newError(excInvalidState, "the key material %s of %s is not yet imported into every replica key.", k.Pending.MaterialID, k.arn())
	}
	family := append([]*key{k}, s.replicas(k)...)
	if k.Origin == originAWSKMS {
		m := make([]byte, materialSize)
		rand.Read(m)
		for _, r := range family {
			r.Pending = &materialVersion{Material: slices.Clone(m), MaterialID: materialID(k.ID, m)}
		}
		clear(m)
	}
	now := time.UnixMilli(c.now.UnixMilli()).UTC()
	for _, r := range family {
		r.rotate(now)
	}
	s.dirty = true
	return &rotateKeyOnDemandOutput{KeyId: k.arn()}, nil
}

// rotate makes k's pending material current.
func (k *key) rotate(now time.Time) {
	old := k.materialVersion
	k.Previous = append(k.Previous, &old)
	k.materialVersion = *k.Pending
	k.RotationDate = &now
	k.Pending = nil
	k.OnDemandRotations++
}

func (s *Server) rotationLimit() int {
	if s.opts.RotationLimit > 0 {
		return s.opts.RotationLimit
	}
	return DefaultRotationLimit
}

type listKeyRotationsInput struct {
	keyIDMember
	IncludeKeyMaterial string
	Limit              *int
	Marker             string
}

type rotationsListEntry struct {
	KeyId                  string
	KeyMaterialId          string
	KeyMaterialDescription string     `json:",omitempty"`
	ImportState            string     `json:",omitempty"`
	KeyMaterialState       string     `json:",omitempty"`
	ExpirationModel        string     `json:",omitempty"`
	ValidTo                *epochTime `json:",omitempty"`
	RotationDate           *epochTime `json:",omitempty"`
	RotationType           string     `json:",omitempty"`
}

type listKeyRotationsOutput struct {
	Rotations  []rotationsListEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

// listKeyRotations implements ListKeyRotations. ROTATIONS_ONLY (the
// default) lists the materials that became current by a rotation;
// ALL_KEY_MATERIAL adds the first material and the pending one.
func (s *Server) listKeyRotations(c *call) (any, error) {
	var in listKeyRotationsInput
	all := false
	limit := 0
	k, err := s.keyInput(c, &in, func() error {
		switch in.IncludeKeyMaterial {
		case "", "ROTATIONS_ONLY":
		case "ALL_KEY_MATERIAL":
			all = true
		default:
			return enumError("includeKeyMaterial", in.IncludeKeyMaterial, []string{"ALL_KEY_MATERIAL", "ROTATIONS_ONLY"})
		}
		var err error
		limit, err = checkLimit(in.Limit, 100, 1000)
		return err
	})
	if err != nil {
		return nil, err
	}
	var entries []rotationsListEntry
	for _, v := range k.versions() {
		if all || v.RotationDate != nil {
			entries = append(entries, s.rotationEntry(k, v))
		}
	}
	rotations, next, err := page(entries, func(e rotationsListEntry) string { return e.KeyMaterialId }, in.Marker, limit)
	if err != nil {
		return nil, err
	}
	return &listKeyRotationsOutput{Rotations: rotations, NextMarker: next, Truncated: next != ""}, nil
}

func (s *Server) rotationEntry(k *key, v *materialVersion) rotationsListEntry {
	e := rotationsListEntry{
		KeyId:            k.arn(),
		KeyMaterialId:    v.MaterialID,
		KeyMaterialState: s.materialState(k, v),
	}
	if v.RotationDate != nil {
		e.RotationDate = &epochTime{*v.RotationDate}
		e.RotationType = rotationOnDemand
	}
	if k.Origin == originExternal {
		e.KeyMaterialDescription = v.MaterialDescription
		e.ImportState = importStatePending
		if v.Material != nil {
			e.ImportState = importStateImported
		}
		e.ExpirationModel = v.ExpirationModel
		if v.ValidTo != nil {
			e.ValidTo = &epochTime{*v.ValidTo}
		}
	}
	return e
}

type getKeyRotationStatusOutput struct {
	KeyId              string
	KeyRotationEnabled bool
}

// getKeyRotationStatus implements GetKeyRotationStatus. kmslocal never
// rotates automatically, and AWS never does for imported material, so
// KeyRotationEnabled is always false; on-demand rotations complete at once.
func (s *Server) getKeyRotationStatus(c *call) (any, error) {
	k, err := s.keyInput(c, &keyIDInput{}, nil)
	if err != nil {
		return nil, err
	}
	return &getKeyRotationStatusOutput{KeyId: k.arn()}, nil
}
