package kmslocal

import (
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

var (
	allKeySpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
		"ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2",
		"ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519", "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024"}
	allKeyUsages     = []string{"SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", "ENCAPSULATE_DECAPSULATE"}
	allOrigins       = []string{"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"}
	allEncryptionAlg = []string{"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE"}
)

type createKeyInput struct {
	Description           *string
	KeySpec               string
	CustomerMasterKeySpec string
	KeyUsage              string
	Origin                string
	MultiRegion           bool
	CustomKeyStoreId      string
	XksKeyId              string
}

type keyMetadataOutput struct {
	KeyMetadata *keyMetadata
}

// createKey implements CreateKey for SYMMETRIC_DEFAULT ENCRYPT_DECRYPT keys
// of origin EXTERNAL (created PendingImport) or AWS_KMS (created Enabled
// with random material). Tags are checked and kept (tags.go); Policy is
// accepted and ignored.
func (s *Server) createKey(c *call) (any, error) {
	var in createKeyInput
	if err := decodeInput(c.body, &in); err != nil {
		return nil, err
	}
	spec := in.KeySpec
	if spec == "" {
		spec = in.CustomerMasterKeySpec
	} else if in.CustomerMasterKeySpec != "" && in.CustomerMasterKeySpec != spec {
		return nil, validationError("KeySpec and CustomerMasterKeySpec differ; use KeySpec only")
	}
	if spec == "" {
		spec = specSymmetric
	}
	switch {
	case !slices.Contains(allKeySpecs, spec):
		return nil, enumError("keySpec", spec, allKeySpecs)
	case spec != specSymmetric:
		return nil, newError(excUnsupportedOperation, "kmslocal supports only KeySpec SYMMETRIC_DEFAULT, not %s", spec)
	}
	usage := in.KeyUsage
	switch {
	case usage == "":
		usage = usageEncrypt
	case !slices.Contains(allKeyUsages, usage):
		return nil, enumError("keyUsage", usage, allKeyUsages)
	case usage != usageEncrypt:
		return nil, validationError("KeyUsage %s is not compatible with KeySpec SYMMETRIC_DEFAULT", usage)
	}
	origin := in.Origin
	switch {
	case origin == "":
		origin = originAWSKMS
	case !slices.Contains(allOrigins, origin):
		return nil, enumError("origin", origin, allOrigins)
	case origin != originAWSKMS && origin != originExternal:
		return nil, newError(excUnsupportedOperation, "kmslocal supports only Origin AWS_KMS and EXTERNAL, not %s", origin)
	}
	if in.CustomKeyStoreId != "" || in.XksKeyId != "" {
		return nil, newError(excUnsupportedOperation, "kmslocal has no custom key stores")
	}
	tags, err := createKeyTags(c.body)
	if err != nil {
		return nil, err
	}
	var desc string
	if in.Description != nil {
		desc = *in.Description
		if len(desc) > 8192 {
			return nil, validationError("Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192")
		}
	}
	id := newUUID()
	primary := ""
	if in.MultiRegion {
		id, primary = newMRKID(), c.region
	}
	k := &key{
		ID:            id,
		PrimaryRegion: primary,
		Region:        c.region,
		Created:       time.UnixMilli(c.now.UnixMilli()).UTC(),
		Description:   desc,
		Origin:        origin,
		KeySpec:       spec,
		KeyUsage:      usage,
		MultiRegion:   in.MultiRegion,
		Enabled:       true,
	}
	if len(tags) > 0 {
		k.Tags = tags
	}
	if origin == originAWSKMS {
		k.Material = make([]byte, materialSize)
		rand.Read(k.Material)
		k.MaterialID = materialID(k.ID, k.Material)
	}
	s.st.Keys[keyIndex(k.Region, k.ID)] = k
	s.st.Order = append(s.st.Order, keyIndex(k.Region, k.ID))
	s.dirty = true
	c.keyID = k.ID
	return &keyMetadataOutput{k.metadata()}, nil
}

// describeKey implements DescribeKey.
func (s *Server) describeKey(c *call) (any, error) {
	k, err := s.keyInput(c, &keyIDInput{}, nil)
	if err != nil {
		return nil, err
	}
	return &keyMetadataOutput{k.metadata()}, nil
}

type listKeysInput struct {
	Limit  *int
	Marker string
}

type keyListEntry struct {
	KeyId  string
	KeyArn string
}

type listKeysOutput struct {
	Keys       []keyListEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

// listKeys implements ListKeys: the keys of the request's Region, in
// creation order.
func (s *Server) listKeys(c *call) (any, error) {
	var in listKeysInput
	if err := decodeInput(c.body, &in); err != nil {
		return nil, err
	}
	limit, err := checkLimit(in.Limit, 100, 1000)
	if err != nil {
		return nil, err
	}
	for _, id := range slices.Clone(s.st.Order) {
		s.applyClock(s.st.Keys[id], c.now)
	}
	var entries []keyListEntry
	for _, id := range s.st.Order {
		if k := s.st.Keys[id]; k.Region == c.region { // keys belong to a Region
			entries = append(entries, keyListEntry{KeyId: k.ID, KeyArn: k.arn()})
		}
	}
	keys, next, err := page(entries, func(e keyListEntry) string { return e.KeyId }, in.Marker, limit)
	if err != nil {
		return nil, err
	}
	return &listKeysOutput{Keys: keys, NextMarker: next, Truncated: next != ""}, nil
}

// enableKey implements EnableKey.
func (s *Server) enableKey(c *call) (any, error) { return s.setEnabled(c, true) }

// disableKey implements DisableKey.
func (s *Server) disableKey(c *call) (any, error) { return s.setEnabled(c, false) }

func (s *Server) setEnabled(c *call, enabled bool) (any, error) {
	k, err := s.keyInput(c, &keyIDInput{}, nil)
	if err != nil {
		return nil, err
	}
	switch k.state() {
	case statePendingDeletion:
		return nil, newError(excInvalidState, "%s is pending deletion.", k.arn())
	case statePendingImport:
		return nil, newError(excInvalidState, "%s is pending import.", k.arn())
	}
	if k.Enabled != enabled {
		k.Enabled = enabled
		s.dirty = true
	}
	return struct{}{}, nil
}

type scheduleKeyDeletionInput struct {
	keyIDMember
	PendingWindowInDays *int
}

type scheduleKeyDeletionOutput struct {
	KeyId               string
	DeletionDate        epochTime
	KeyState            string
	PendingWindowInDays int
}

// scheduleKeyDeletion implements ScheduleKeyDeletion. When the deletion
// date passes (by the server clock) the key is deleted on its next lookup.
func (s *Server) scheduleKeyDeletion(c *call) (any, error) {
	var in scheduleKeyDeletionInput
	days := 30
	k, err := s.keyInput(c, &in, func() error {
		if in.PendingWindowInDays == nil {
			return nil
		}
		days = *in.PendingWindowInDays
		if days < 7 || days > 30 {
			return validationError("Value '%d' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30", days)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if k.state() == statePendingDeletion {
		return nil, newError(excInvalidState, "%s is pending deletion.", k.arn())
	}
	d := time.UnixMilli(c.now.UnixMilli()).UTC().Add(time.Duration(days) * 24 * time.Hour)
	k.DeletionDate = &d
	k.PendingWindowInDays = days
	s.dirty = true
	return &scheduleKeyDeletionOutput{KeyId: k.arn(), DeletionDate: epochTime{d}, KeyState: k.state(), PendingWindowInDays: days}, nil
}

// cancelKeyDeletion implements CancelKeyDeletion. As on AWS the key comes
// back Disabled (or PendingImport if it has no material).
func (s *Server) cancelKeyDeletion(c *call) (any, error) {
	k, err := s.keyInput(c, &keyIDInput{}, nil)
	if err != nil {
		return nil, err
	}
	if k.state() != statePendingDeletion {
		return nil, newError(excInvalidState, "%s is not pending deletion.", k.arn())
	}
	k.DeletionDate = nil
	k.PendingWindowInDays = 0
	k.Enabled = false
	s.dirty = true
	return &struct{ KeyId string }{k.arn()}, nil
}

type createAliasInput struct {
	AliasName   string
	TargetKeyId string
}

func (in *createAliasInput) keyMember() (string, string) { return "targetKeyId", in.TargetKeyId }

// createAlias implements CreateAlias.
func (s *Server) createAlias(c *call) (any, error) {
	var in createAliasInput
	k, err := s.keyInput(c, &in, func() error {
		if in.AliasName == "" {
			return requiredError("aliasName")
		}
		if !aliasRE.MatchString(in.AliasName) || strings.HasPrefix(in.AliasName, "alias/aws/") {
			return newError(excInvalidAliasName, "%s is not a valid alias name: use alias/ followed by [a-zA-Z0-9/_-], not alias/aws/", in.AliasName)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if k.state() == statePendingDeletion {
		return nil, newError(excInvalidState, "%s is pending deletion.", k.arn())
	}
	if s.st.Aliases[aliasIndex(c.region, in.AliasName)] != "" {
		return nil, newError(excAlreadyExists, "An alias with the name %s already exists", aliasARN(c.region, in.AliasName))
	}
	s.st.Aliases[aliasIndex(c.region, in.AliasName)] = k.ID
	s.dirty = true
	return struct{}{}, nil
}

// deleteAlias implements DeleteAlias.
func (s *Server) deleteAlias(c *call) (any, error) {
	var in struct{ AliasName string }
	if err := decodeInput(c.body, &in); err != nil {
		return nil, err
	}
	if in.AliasName == "" {
		return nil, requiredError("aliasName")
	}
	if s.st.Aliases[aliasIndex(c.region, in.AliasName)] == "" {
		return nil, newError(excNotFound, "Alias %s is not found.", aliasARN(c.region, in.AliasName))
	}
	delete(s.st.Aliases, aliasIndex(c.region, in.AliasName))
	s.dirty = true
	return struct{}{}, nil
}

// checkEncryptionAlgorithm validates an EncryptionAlgorithm member for a
// symmetric key.
func checkEncryptionAlgorithm(alg string) error {
	switch {
	case alg == "" || alg == specSymmetric:
		return nil
	case slices.Contains(allEncryptionAlg, alg):
		return newError(excInvalidKeyUsage, "EncryptionAlgorithm %s is not valid for a SYMMETRIC_DEFAULT key", alg)
	default:
		return enumError("encryptionAlgorithm", alg, allEncryptionAlg)
	}
}

// checkUsable reports whether k can encrypt or decrypt now, with the
// exceptions of the KMS key state table; if it can and dryRun is set, it
// returns the DryRunOperationException that stops the request there.
func checkUsable(k *key, dryRun bool) error {
	switch k.state() {
	case stateDisabled:
		return newError(excDisabled, "%s is disabled.", k.arn())
	case statePendingImport:
		return newError(excInvalidState, "%s is pending import.", k.arn())
	case statePendingDeletion:
		return newError(excInvalidState, "%s is pending deletion.", k.arn())
	}
	if dryRun {
		return newError(excDryRun, "The request would have succeeded, but the DryRun option is set.")
	}
	return nil
}

type encryptInput struct {
	keyIDMember
	Plaintext           []byte
	EncryptionAlgorithm string
	EncryptionContext   map[string]string
	DryRun              bool
}

type encryptOutput struct {
	KeyId               string
	CiphertextBlob      []byte
	EncryptionAlgorithm string
}

// encrypt implements Encrypt with SYMMETRIC_DEFAULT: AES-256-GCM under the
// key material, the encryption context as additional data.
func (s *Server) encrypt(c *call) (any, error) {
	var in encryptInput
	k, err := s.keyInput(c, &in, func() error {
		if len(in.Plaintext) == 0 {
			return requiredError("plaintext")
		}
		if len(in.Plaintext) > 4096 {
			return validationError("Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096")
		}
		return checkEncryptionAlgorithm(in.EncryptionAlgorithm)
	})
	if err != nil {
		return nil, err
	}
	if err := checkUsable(k, in.DryRun); err != nil {
		return nil, err
	}
	blob, err := sealBlob(k, in.Plaintext, in.EncryptionContext)
	if err != nil {
		return nil, internalError(err)
	}
	return &encryptOutput{KeyId: k.arn(), CiphertextBlob: blob, EncryptionAlgorithm: specSymmetric}, nil
}

type decryptInput struct {
	KeyId               string
	CiphertextBlob      []byte
	EncryptionAlgorithm string
	EncryptionContext   map[string]string
	DryRun              bool
	Recipient           json.RawMessage
}

type decryptOutput struct {
	KeyId               string
	Plaintext           []byte
	EncryptionAlgorithm string
	KeyMaterialId       string
}

// decrypt implements Decrypt of blobs made by Encrypt or GenerateDataKey.
// KeyId is optional; if given it must name the blob's key
// (IncorrectKeyException).
func (s *Server) decrypt(c *call) (any, error) {
	var in decryptInput
	if err := decodeInput(c.body, &in); err != nil {
		return nil, err
	}
	if len(in.CiphertextBlob) == 0 {
		return nil, requiredError("ciphertextBlob")
	}
	if len(in.CiphertextBlob) > 6144 {
		return nil, validationError("Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length less than or equal to 6144")
	}
	if err := checkEncryptionAlgorithm(in.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	if len(in.Recipient) > 0 && string(in.Recipient) != "null" {
		return nil, newError(excUnsupportedOperation, "kmslocal does not support Recipient (Nitro Enclaves attestation)")
	}
	blobKey, blobMaterial, err := blobKeyID(in.CiphertextBlob)
	if err != nil {
		return nil, newError(excInvalidCiphertext, "The ciphertext is invalid: %v", err)
	}
	if in.KeyId != "" {
		named, err := s.lookupKey(c, "keyId", in.KeyId, true)
		if err != nil {
			return nil, err
		}
		if named.ID != blobKey {
			return nil, newError(excIncorrectKey, "The key ID in the request does not identify a KMS key that can perform this operation: the ciphertext was made under another key.")
		}
	}
	k, err := s.lookupKey(c, "keyId", blobKey, false)
	if err != nil {
		return nil, err
	}
	if err := checkUsable(k, in.DryRun); err != nil {
		return nil, err
	}
	v := blobVersion(k, blobMaterial)
	if v == nil || v.Material == nil {
		return nil, newError(excInvalidCiphertext, "The ciphertext was made under key material that %s does not have.", k.arn())
	}
	pt, err := openBlob(k, v, in.CiphertextBlob, in.EncryptionContext)
	if err != nil {
		return nil, newError(excInvalidCiphertext, "The ciphertext or its encryption context is invalid or was changed.")
	}
	return &decryptOutput{KeyId: k.arn(), Plaintext: pt, EncryptionAlgorithm: specSymmetric, KeyMaterialId: v.MaterialID}, nil
}

type generateDataKeyInput struct {
	keyIDMember
	KeySpec           string
	NumberOfBytes     *int
	EncryptionContext map[string]string
	DryRun            bool
	Recipient         json.RawMessage
}

type generateDataKeyOutput struct {
	KeyId          string
	CiphertextBlob []byte
	Plaintext      []byte
	KeyMaterialId  string
}

// generateDataKey implements GenerateDataKey: random bytes, returned in
// the clear and as an Encrypt blob.
func (s *Server) generateDataKey(c *call) (any, error) {
	var in generateDataKeyInput
	var n int
	k, err := s.keyInput(c, &in, func() error {
		switch {
		case in.KeySpec != "" && in.NumberOfBytes != nil:
			return validationError("Specify KeySpec or NumberOfBytes, not both")
		case in.KeySpec == "AES_256":
			n = 32
		case in.KeySpec == "AES_128":
			n = 16
		case in.KeySpec != "":
			return enumError("keySpec", in.KeySpec, []string{"AES_256", "AES_128"})
		case in.NumberOfBytes == nil:
			return validationError("KeySpec or NumberOfBytes is required")
		case *in.NumberOfBytes < 1 || *in.NumberOfBytes > 1024:
			return validationError("Value '%d' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024", *in.NumberOfBytes)
		default:
			n = *in.NumberOfBytes
		}
		if len(in.Recipient) > 0 && string(in.Recipient) != "null" {
			return newError(excUnsupportedOperation, "kmslocal does not support Recipient (Nitro Enclaves attestation)")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := checkUsable(k, in.DryRun); err != nil {
		return nil, err
	}
	pt := make([]byte, n)
	rand.Read(pt)
	blob, err := sealBlob(k, pt, in.EncryptionContext)
	if err != nil {
		return nil, internalError(err)
	}
	return &generateDataKeyOutput{KeyId: k.arn(), CiphertextBlob: blob, Plaintext: pt, KeyMaterialId: k.MaterialID}, nil
}
