package kmslocal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Account is the AWS account ID in every ARN and KeyMetadata the server
// returns: the documentation example account, so nobody mistakes it for a
// real one.
const Account = "111122223333"

// DefaultRegion is used in ARNs when a request's Authorization header names
// no region.
const DefaultRegion = "us-east-1"

// Values of the KMS API enums the server handles.
const (
	originAWSKMS   = "AWS_KMS"
	originExternal = "EXTERNAL"

	specSymmetric = "SYMMETRIC_DEFAULT"
	usageEncrypt  = "ENCRYPT_DECRYPT"

	stateEnabled         = "Enabled"
	stateDisabled        = "Disabled"
	statePendingImport   = "PendingImport"
	statePendingDeletion = "PendingDeletion"

	expires       = "KEY_MATERIAL_EXPIRES"
	doesNotExpire = "KEY_MATERIAL_DOES_NOT_EXPIRE"
)

// materialSize is the size of SYMMETRIC_DEFAULT key material: AES-256.
const materialSize = 32

// key is one KMS key. Its JSON form is the state file's; Material is the raw
// key material, stored in the clear (see the package documentation).
type key struct {
	ID          string    `json:"id"`
	Region      string    `json:"region"`
	Created     time.Time `json:"created"`
	Description string    `json:"description"`
	Origin      string    `json:"origin"`
	KeySpec     string    `json:"keySpec"`
	KeyUsage    string    `json:"keyUsage"`
	MultiRegion bool      `json:"multiRegion"`
	// Enabled is the EnableKey/DisableKey switch; the key state also depends
	// on material and deletion, see state.
	Enabled bool `json:"enabled"`
	// materialVersion is the current key material (promoted fields
	// Material, MaterialID, ...). MaterialID is kept after the material
	// expires or is deleted, so only the same material can be imported again.
	materialVersion
	// Previous holds the NON_CURRENT material versions, oldest first;
	// Pending the one imported with NEW_KEY_MATERIAL and waiting for
	// RotateKeyOnDemand. OnDemandRotations counts completed rotations.
	Previous          []*materialVersion `json:"previousMaterial,omitempty"`
	Pending           *materialVersion   `json:"pendingMaterial,omitempty"`
	OnDemandRotations int                `json:"onDemandRotations,omitempty"`
	// PrimaryRegion is set on multi-Region keys (MultiRegion): the Region of
	// the primary key. ReplicaRegions lists the Regions of its replicas, kept
	// the same on the primary and every replica.
	PrimaryRegion       string     `json:"primaryRegion,omitempty"`
	ReplicaRegions      []string   `json:"replicaRegions,omitempty"`
	DeletionDate        *time.Time `json:"deletionDate,omitempty"`
	PendingWindowInDays int        `json:"pendingWindowInDays,omitempty"`
	// Tags are the key's tags (tags.go).
	Tags map[string]string `json:"tags,omitempty"`
}

// state returns the key's KeyState.
func (k *key) state() string {
	switch {
	case k.DeletionDate != nil:
		return statePendingDeletion
	case !k.allImported():
		return statePendingImport
	case !k.Enabled:
		return stateDisabled
	default:
		return stateEnabled
	}
}

func (k *key) arn() string {
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", k.Region, Account, k.ID)
}

// materialID derives the KeyMaterialId of material for the key with ID
// keyID: like AWS, from the key ID and the material, as 64 hex digits. The
// key ID is in the hash so equal material in two keys gets unrelated IDs.
func materialID(keyID string, material []byte) string {
	h := sha256.New()
	h.Write([]byte("kmslocal key material id v1\x00"))
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write(material)
	return hex.EncodeToString(h.Sum(nil))
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	mrkRE  = regexp.MustCompile(`^mrk-[0-9a-f]{32}$`)
)

// isKeyID reports whether s is a key ID: a UUID, or "mrk-" and 32 hex
// digits for a multi-Region key.
func isKeyID(s string) bool { return uuidRE.MatchString(s) || mrkRE.MatchString(s) }

// newUUID returns a random (version 4) UUID in the lowercase form KMS key
// IDs use.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// uuidBytes returns the 16 bytes of a key ID validated by isKeyID.
func uuidBytes(id string) []byte {
	b, _ := hex.DecodeString(strings.ReplaceAll(strings.TrimPrefix(id, "mrk-"), "-", ""))
	return b
}

// uuidString is the inverse of uuidBytes.
func uuidString(b []byte) string {
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var aliasRE = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)

// keyRef is a parsed KeyId parameter: a key ID or an alias name, and for
// ARNs the region they name.
type keyRef struct {
	id     string // key ID, or "" for an alias
	alias  string // "alias/..." or ""
	region string // from an ARN, or ""
}

// parseKeyRef parses a KeyId parameter: key ID, key ARN, alias name or
// alias ARN. allowAlias is false for parameters that take keys only.
func parseKeyRef(member, s string, allowAlias bool) (keyRef, error) {
	if s == "" {
		return keyRef{}, requiredError(member)
	}
	if len(s) > 2048 {
		return keyRef{}, validationError("Value at '%s' failed to satisfy constraint: Member must have length less than or equal to 2048", member)
	}
	var ref keyRef
	rest := s
	if strings.HasPrefix(s, "arn:") {
		// arn:aws:kms:<region>:<account>:key/<id> or ...:alias/<name>
		parts := strings.SplitN(s, ":", 6)
		if len(parts) != 6 || parts[1] != "aws" || parts[2] != "kms" || parts[3] == "" {
			return keyRef{}, newError(excInvalidArn, "%s is not a valid KMS ARN", s)
		}
		if parts[4] != Account {
			return keyRef{}, newError(excNotFound, "Key '%s' does not exist", s)
		}
		ref.region = parts[3]
		rest = parts[5]
		switch {
		case strings.HasPrefix(rest, "key/"):
			rest = strings.TrimPrefix(rest, "key/")
			if !isKeyID(rest) {
				return keyRef{}, newError(excInvalidArn, "%s is not a valid KMS key ARN", s)
			}
		case strings.HasPrefix(rest, "alias/"):
		default:
			return keyRef{}, newError(excInvalidArn, "%s is not a valid KMS ARN", s)
		}
	}
	switch {
	case strings.HasPrefix(rest, "alias/"):
		if !allowAlias {
			return keyRef{}, newError(excValidation, "%s: an alias is not allowed here, use a key ID or key ARN", member)
		}
		ref.alias = rest
	case isKeyID(rest):
		ref.id = rest
	default:
		return keyRef{}, newError(excNotFound, "Invalid keyId '%s'", s)
	}
	return ref, nil
}

// lookupKey resolves a KeyId parameter to a key. It applies the clock first:
// a key whose ValidTo has passed loses its material, and a key whose deletion
// date has passed is deleted. The caller must hold s.mu.
func (s *Server) lookupKey(c *call, member, keyID string, allowAlias bool) (*key, error) {
	ref, err := parseKeyRef(member, keyID, allowAlias)
	if err != nil {
		return nil, err
	}
	id := ref.id
	if ref.alias != "" {
		id = s.st.Aliases[aliasIndex(c.region, ref.alias)]
		if id == "" || (ref.region != "" && ref.region != c.region) {
			return nil, newError(excNotFound, "Alias %s is not found.", aliasARN(c.region, ref.alias))
		}
	}
	// A key lives in one Region: the request's (its SigV4 signing Region).
	idx := keyIndex(c.region, id)
	k := s.st.Keys[idx]
	if k != nil {
		s.applyClock(k, c.now)
		k = s.st.Keys[idx] // applyClock may have deleted it
	}
	if k == nil || (ref.region != "" && ref.region != k.Region) {
		return nil, newError(excNotFound, "Key '%s' does not exist", keyID)
	}
	c.keyID = k.ID
	return k, nil
}

// keyed is the input of a request that names one key.
type keyed interface {
	// keyMember returns the member that names the key, as AWS error
	// messages spell it, and its value.
	keyMember() (member, value string)
}

// keyIDMember is the KeyId member by which most requests name their key.
type keyIDMember struct{ KeyId string }

func (m *keyIDMember) keyMember() (string, string) { return "keyId", m.KeyId }

// aliasOps are the operations whose KeyId may be an alias name or alias ARN,
// as the KMS API reference documents each; the others take a key ID or key
// ARN only.
var aliasOps = map[string]bool{"DescribeKey": true, "Encrypt": true, "Decrypt": true, "GenerateDataKey": true}

// keyInput reads a request that names a key: it decodes c's body into in,
// runs check (if not nil) on the other members, which AWS reports before
// an unknown key, and returns the key that in names. Every error is the
// *apiError KMS would send. The caller must hold s.mu.
func (s *Server) keyInput(c *call, in keyed, check func() error) (*key, error) {
	if err := decodeInput(c.body, in); err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, err
		}
	}
	member, id := in.keyMember()
	return s.lookupKey(c, member, id, aliasOps[c.op])
}

func aliasARN(region, alias string) string {
	return fmt.Sprintf("arn:aws:kms:%s:%s:%s", region, Account, alias)
}

// applyClock brings k up to date with now, as KMS does in the background:
// expired material is deleted (the key returns to PendingImport, and only
// the same material can be imported again), and a key past its deletion date
// is deleted with its aliases and import tokens. The caller must hold s.mu.
func (s *Server) applyClock(k *key, now time.Time) {
	if k.DeletionDate != nil && !now.Before(*k.DeletionDate) {
		s.deleteKey(k)
		return
	}
	for _, v := range k.versions() {
		if v.Material != nil && v.ExpirationModel == expires && v.ValidTo != nil && !now.Before(*v.ValidTo) {
			v.drop()
			s.dirty = true
		}
	}
}

// earliestValidTo is DescribeKey's ValidTo as AWS documents it: the
// earliest time at which any imported material permanently associated
// with k (current or previous, not pending) expires; nil when none does.
func (k *key) earliestValidTo() *time.Time {
	var vt *time.Time
	for _, v := range append([]*materialVersion{&k.materialVersion}, k.Previous...) {
		if v.Material != nil && v.ExpirationModel == expires && v.ValidTo != nil && (vt == nil || v.ValidTo.Before(*vt)) {
			vt = v.ValidTo
		}
	}
	return vt
}

// deleteKey removes a key, its aliases and its import tokens. The caller
// must hold s.mu.
func (s *Server) deleteKey(k *key) {
	for _, v := range k.versions() {
		clear(v.Material)
	}
	idx := keyIndex(k.Region, k.ID)
	delete(s.st.Keys, idx)
	for i, o := range s.st.Order {
		if o == idx {
			s.st.Order = append(s.st.Order[:i:i], s.st.Order[i+1:]...)
			break
		}
	}
	for a, target := range s.st.Aliases {
		if target == k.ID && strings.HasPrefix(a, k.Region+":") {
			delete(s.st.Aliases, a)
		}
	}
	for tid, tok := range s.st.Tokens {
		if tok.KeyID == k.ID && tok.Region == k.Region {
			delete(s.st.Tokens, tid)
		}
	}
	s.forgetReplica(k)
	s.dirty = true
}

// keyMetadata is the KeyMetadata structure of CreateKey and DescribeKey.
type keyMetadata struct {
	AWSAccountId                string                    `json:"AWSAccountId"`
	KeyId                       string                    `json:"KeyId"`
	Arn                         string                    `json:"Arn"`
	CreationDate                epochTime                 `json:"CreationDate"`
	Enabled                     bool                      `json:"Enabled"`
	Description                 string                    `json:"Description"`
	KeyUsage                    string                    `json:"KeyUsage"`
	KeyState                    string                    `json:"KeyState"`
	Origin                      string                    `json:"Origin"`
	KeyManager                  string                    `json:"KeyManager"`
	CustomerMasterKeySpec       string                    `json:"CustomerMasterKeySpec"`
	KeySpec                     string                    `json:"KeySpec"`
	EncryptionAlgorithms        []string                  `json:"EncryptionAlgorithms"`
	MultiRegion                 bool                      `json:"MultiRegion"`
	ExpirationModel             string                    `json:"ExpirationModel,omitempty"`
	ValidTo                     *epochTime                `json:"ValidTo,omitempty"`
	DeletionDate                *epochTime                `json:"DeletionDate,omitempty"`
	PendingDeletionWindowInDays int                       `json:"PendingDeletionWindowInDays,omitempty"`
	CurrentKeyMaterialId        string                    `json:"CurrentKeyMaterialId,omitempty"`
	MultiRegionConfiguration    *multiRegionConfiguration `json:"MultiRegionConfiguration,omitempty"`
}

func (k *key) metadata() *keyMetadata {
	m := &keyMetadata{
		AWSAccountId:          Account,
		KeyId:                 k.ID,
		Arn:                   k.arn(),
		CreationDate:          epochTime{k.Created},
		Enabled:               k.state() == stateEnabled,
		Description:           k.Description,
		KeyUsage:              k.KeyUsage,
		KeyState:              k.state(),
		Origin:                k.Origin,
		KeyManager:            "CUSTOMER",
		CustomerMasterKeySpec: k.KeySpec,
		KeySpec:               k.KeySpec,
		EncryptionAlgorithms:  []string{specSymmetric},
		MultiRegion:           k.MultiRegion,
		ExpirationModel:       k.ExpirationModel,
	}
	if vt := k.earliestValidTo(); vt != nil {
		m.ValidTo = &epochTime{*vt}
	}
	if k.DeletionDate != nil {
		m.DeletionDate = &epochTime{*k.DeletionDate}
		m.PendingDeletionWindowInDays = k.PendingWindowInDays
	}
	m.CurrentKeyMaterialId = k.MaterialID
	m.MultiRegionConfiguration = k.multiRegionConfig()
	return m
}
