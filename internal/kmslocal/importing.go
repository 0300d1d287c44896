package kmslocal

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/keyceremony/keyceremony/wrap"
)

// Wrapping algorithms (AlgorithmSpec) accepted for imports.
const (
	algOAEPSHA1      = "RSAES_OAEP_SHA_1"
	algOAEPSHA256    = "RSAES_OAEP_SHA_256"
	algRSAAESSHA1    = "RSA_AES_KEY_WRAP_SHA_1"
	algRSAAESSHA256  = "RSA_AES_KEY_WRAP_SHA_256"
	algPKCS1v15      = "RSAES_PKCS1_V1_5"
	algSM2PKE        = "SM2PKE"
	importTypeNew    = "NEW_KEY_MATERIAL"
	importTypeExists = "EXISTING_KEY_MATERIAL"
)

// tokenLifetime is how long GetParametersForImport's public key and import
// token may be used, as on AWS.
const tokenLifetime = 24 * time.Hour

// maxValidity is how far ahead ValidTo may be, as on AWS.
const maxValidity = 365 * 24 * time.Hour

// wrappingAlgorithmCode and wrappingSpecCode give the one-byte codes that
// import tokens carry.
var (
	wrappingAlgorithmCode = map[string]byte{algOAEPSHA1: 1, algOAEPSHA256: 2, algRSAAESSHA1: 3, algRSAAESSHA256: 4}
	wrappingSpecCode      = map[string]byte{"RSA_2048": 1, "RSA_3072": 2, "RSA_4096": 3}
)

var (
	allAlgorithms    = []string{algPKCS1v15, algOAEPSHA1, algOAEPSHA256, algRSAAESSHA1, algRSAAESSHA256, algSM2PKE}
	allWrappingSpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "SM2"}
)

// importToken is an outstanding import token: the wrapping key pair
// GetParametersForImport handed out and what it was issued for. Its JSON
// form is the state file's; PrivateKey is PKCS #8 DER, in the clear.
type importToken struct {
	ID         string    `json:"id"` // 16 random bytes, hex
	KeyID      string    `json:"keyId"`
	Algorithm  string    `json:"wrappingAlgorithm"`
	KeySpec    string    `json:"wrappingKeySpec"`
	Region     string    `json:"region"` // the key's Region
	Issued     time.Time `json:"issued"` // millisecond precision
	PrivateKey []byte    `json:"privateKey"`
	priv       *rsa.PrivateKey
}

// Import token wire layout. The token is opaque to clients; the server
// authenticates it with HMAC-SHA256 under its token secret (kept in the
// state file), so it can tell a forged or garbled token from a real one
// and an expired one from an unknown one, even after the wrapping key of an
// expired token has been discarded.
//
//	offset size
//	0      4    magic "KLIT"
//	4      1    version 1
//	5      16   token ID
//	21     16   key ID (UUID bytes)
//	37     1    wrapping algorithm code
//	38     1    wrapping key spec code
//	39     8    issue time, Unix milliseconds, big endian
//	47     32   HMAC-SHA256(token secret, bytes 0 to 46)
const (
	tokenBodyLen = 47
	tokenLen     = tokenBodyLen + sha256.Size
)

var tokenMagic = []byte("KLIT\x01")

func (s *Server) tokenMAC(body []byte) []byte {
	m := hmac.New(sha256.New, s.st.Secret)
	m.Write(body)
	return m.Sum(nil)
}

// sealToken returns the wire form of t.
func (s *Server) sealToken(t *importToken) []byte {
	id, _ := hex.DecodeString(t.ID)
	b := make([]byte, 0, tokenLen)
	b = append(b, tokenMagic...)
	b = append(b, id...)
	b = append(b, uuidBytes(t.KeyID)...)
	b = append(b, wrappingAlgorithmCode[t.Algorithm], wrappingSpecCode[t.KeySpec])
	b = binary.BigEndian.AppendUint64(b, uint64(t.Issued.UnixMilli()))
	return append(b, s.tokenMAC(b)...)
}

// openToken checks an import token presented for key k and returns its
// wrapping key: InvalidImportTokenException if it is malformed, forged,
// issued for another key or no longer known; ExpiredImportTokenException if
// it is more than tokenLifetime old by the server clock.
func (s *Server) openToken(c *call, k *key, raw []byte) (*importToken, error) {
	if len(raw) != tokenLen || !bytes.HasPrefix(raw, tokenMagic) ||
		!hmac.Equal(raw[tokenBodyLen:], s.tokenMAC(raw[:tokenBodyLen])) {
		return nil, newError(excInvalidImportToken, "The import token is malformed or was not issued by this server.")
	}
	id := hex.EncodeToString(raw[5:21])
	if !bytes.Equal(raw[21:37], uuidBytes(k.ID)) {
		return nil, newError(excInvalidImportToken, "The import token was issued for a different KMS key, not %s.", k.arn())
	}
	issued := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[39:47])))
	if validTo := issued.Add(tokenLifetime); c.now.After(validTo) {
		return nil, newError(excExpiredImportToken, "The import token expired at %s (24 hours after it was issued). Call GetParametersForImport for a new public key and import token.", validTo.UTC().Format(time.RFC3339))
	}
	t := s.st.Tokens[id]
	if t != nil && t.KeyID == k.ID && t.Region != k.Region {
		return nil, newError(excInvalidImportToken, "The import token was issued for the key in %s, not %s; each Region's key needs its own import parameters.", t.Region, k.arn())
	}
	if t == nil || t.KeyID != k.ID || !t.Issued.Equal(issued) ||
		wrappingAlgorithmCode[t.Algorithm] != raw[37] || wrappingSpecCode[t.KeySpec] != raw[38] {
		return nil, newError(excInvalidImportToken, "The import token is not known to this server (was it issued before a restart without a state file?).")
	}
	return t, nil
}

// pruneTokens forgets expired tokens and their private keys. openToken still
// recognises them as expired from their authenticated issue time.
func (s *Server) pruneTokens(now time.Time) {
	for id, t := range s.st.Tokens {
		if now.After(t.Issued.Add(tokenLifetime)) {
			delete(s.st.Tokens, id)
			s.dirty = true
		}
	}
}

// checkWrapping validates GetParametersForImport's WrappingAlgorithm and
// WrappingKeySpec.
func checkWrapping(alg, spec string) error {
	switch {
	case alg == "":
		return requiredError("wrappingAlgorithm")
	case alg == algPKCS1v15:
		return validationError("WrappingAlgorithm RSAES_PKCS1_V1_5 is no longer accepted for importing key material (AWS KMS refuses it since 2023-10-10); use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256")
	case alg == algSM2PKE:
		return newError(excUnsupportedOperation, "WrappingAlgorithm SM2PKE is available only in AWS China Regions and not in kmslocal")
	case wrappingAlgorithmCode[alg] == 0:
		return enumError("wrappingAlgorithm", alg, allAlgorithms)
	case spec == "":
		return requiredError("wrappingKeySpec")
	case spec == "SM2":
		return newError(excUnsupportedOperation, "WrappingKeySpec SM2 is available only in AWS China Regions and not in kmslocal")
	case wrappingSpecCode[spec] == 0:
		return enumError("wrappingKeySpec", spec, allWrappingSpecs)
	}
	return nil
}

// prefetchWrappingKey takes a key pair of the requested size from the pool
// (or generates one) before the request takes the server lock. Requests that
// turn out invalid return it to the pool unused.
func (s *Server) prefetchWrappingKey(c *call) {
	var in struct{ WrappingKeySpec string }
	if json.Unmarshal(c.body, &in) != nil {
		return
	}
	if bits, ok := wrappingKeyBits[in.WrappingKeySpec]; ok {
		c.wrapKey, _ = s.pool.get(bits) // nil on error; reported by the handler
	}
}

type getParametersForImportInput struct {
	keyIDMember
	WrappingAlgorithm string
	WrappingKeySpec   string
}

type getParametersForImportOutput struct {
	KeyId             string
	ImportToken       []byte
	PublicKey         []byte
	ParametersValidTo epochTime
}

// getParametersForImport implements GetParametersForImport.
func (s *Server) getParametersForImport(c *call) (any, error) {
	var in getParametersForImportInput
	k, err := s.keyInput(c, &in, func() error {
		if err := checkWrapping(in.WrappingAlgorithm, in.WrappingKeySpec); err != nil {
			return err
		}
		return s.offersWrapping(in.WrappingAlgorithm)
	})
	if err != nil {
		return nil, err
	}
	if err := checkImportable(k); err != nil {
		return nil, err
	}
	priv := c.wrapKey
	if priv == nil {
		return nil, internalError(errors.New("no RSA wrapping key could be generated"))
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, internalError(fmt.Errorf("failed to encode a wrapping key: %w", err))
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, internalError(fmt.Errorf("failed to encode a wrapping key: %w", err))
	}
	c.wrapKey = nil // handed out: never back into the pool

	s.pruneTokens(c.now)
	id := make([]byte, 16)
	rand.Read(id)
	t := &importToken{
		ID:         hex.EncodeToString(id),
		KeyID:      k.ID,
		Algorithm:  in.WrappingAlgorithm,
		KeySpec:    in.WrappingKeySpec,
		Region:     k.Region,
		Issued:     time.UnixMilli(c.now.UnixMilli()).UTC(),
		PrivateKey: der,
		priv:       priv,
	}
	s.st.Tokens[t.ID] = t
	s.dirty = true
	return &getParametersForImportOutput{
		KeyId:             k.arn(),
		ImportToken:       s.sealToken(t),
		PublicKey:         pub,
		ParametersValidTo: epochTime{t.Issued.Add(tokenLifetime)},
	}, nil
}

// checkImportable reports whether key material can be imported into k at
// all: only EXTERNAL keys, and not while pending deletion. Per the KMS key
// state table, Enabled and Disabled keys accept a re-import.
func checkImportable(k *key) error {
	if k.Origin != originExternal {
		return newError(excUnsupportedOperation, "%s origin is %s which is not valid for this operation.", k.arn(), k.Origin)
	}
	if k.state() == statePendingDeletion {
		return newError(excInvalidState, "%s is pending deletion.", k.arn())
	}
	return nil
}

type importKeyMaterialInput struct {
	keyIDMember
	ImportToken            []byte
	EncryptedKeyMaterial   []byte
	ExpirationModel        string
	ValidTo                *epochTime
	ImportType             string
	KeyMaterialDescription *string
	KeyMaterialId          string
}

type importKeyMaterialOutput struct {
	KeyId         string
	KeyMaterialId string
}

var materialDescriptionRE = regexp.MustCompile(`^[a-zA-Z0-9:/_\s.-]{0,256}$`)

// checkExpiration validates ExpirationModel and ValidTo against now and
// returns the model (defaulted) and ValidTo.
func checkExpiration(model string, validTo *epochTime, now time.Time) (string, *time.Time, error) {
	switch model {
	case "", expires:
		if validTo == nil {
			return "", nil, validationError("ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES (the default)")
		}
		t := validTo.Time
		if !t.After(now) {
			return "", nil, validationError("ValidTo %s is not in the future", t.Format(time.RFC3339))
		}
		if t.After(now.Add(maxValidity)) {
			return "", nil, validationError("ValidTo %s is more than 365 days from now", t.Format(time.RFC3339))
		}
		return expires, &t, nil
	case doesNotExpire:
		if validTo != nil {
			return "", nil, validationError("ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE")
		}
		return doesNotExpire, nil, nil
	default:
		return "", nil, enumError("expirationModel", model, []string{expires, doesNotExpire})
	}
}

// importKeyMaterial implements ImportKeyMaterial. The checks run in this
// order, each with its KMS exception: request members (ValidationException),
// the key (NotFoundException, UnsupportedOperationException for non-EXTERNAL
// keys, KMSInvalidStateException when pending deletion), the token
// (InvalidImportTokenException, ExpiredImportTokenException), the unwrap
// (InvalidCiphertextException) and the material itself
// (IncorrectKeyMaterialException if the key ever had other material).
func (s *Server) importKeyMaterial(c *call) (any, error) {
	var in importKeyMaterialInput
	var model string
	var validTo *time.Time
	k, err := s.keyInput(c, &in, func() error {
		switch {
		case len(in.ImportToken) == 0:
			return requiredError("importToken")
		case len(in.EncryptedKeyMaterial) == 0:
			return requiredError("encryptedKeyMaterial")
		case len(in.ImportToken) > 6144:
			return validationError("Value at 'importToken' failed to satisfy constraint: Member must have length less than or equal to 6144")
		case len(in.EncryptedKeyMaterial) > 6144:
			return validationError("Value at 'encryptedKeyMaterial' failed to satisfy constraint: Member must have length less than or equal to 6144")
		}
		var err error
		if model, validTo, err = checkExpiration(in.ExpirationModel, in.ValidTo, c.now); err != nil {
			return err
		}
		switch in.ImportType {
		case "", importTypeExists, importTypeNew:
		default:
			return enumError("importType", in.ImportType, []string{importTypeNew, importTypeExists})
		}
		if in.KeyMaterialDescription != nil && !materialDescriptionRE.MatchString(*in.KeyMaterialDescription) {
			return validationError("KeyMaterialDescription must be at most 256 characters of [a-zA-Z0-9:/_ .-]")
		}
		if in.KeyMaterialId != "" && in.ImportType == importTypeNew {
			return validationError("KeyMaterialId cannot be specified with ImportType NEW_KEY_MATERIAL")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := checkImportable(k); err != nil {
		return nil, err
	}
	target, err := s.importTarget(k, in.ImportType, in.KeyMaterialId)
	if err != nil {
		return nil, err
	}

	t, err := s.openToken(c, k, in.ImportToken)
	if err != nil {
		return nil, err
	}
	material, err := unwrapMaterial(t.Algorithm, t.priv, in.EncryptedKeyMaterial)
	if err != nil {
		return nil, newError(excInvalidCiphertext, "The encrypted key material could not be decrypted with the wrapping key and algorithm (%s) of this import token: %v", t.Algorithm, err)
	}
	id := materialID(k.ID, material)
	if err := s.placeMaterial(k, target, material, id, model, validTo, in.KeyMaterialDescription); err != nil {
		clear(material)
		return nil, err
	}
	s.dirty = true
	return &importKeyMaterialOutput{KeyId: k.arn(), KeyMaterialId: id}, nil
}

// unwrapMaterial decrypts EncryptedKeyMaterial under a token's private key:
// RSAES_OAEP_SHA_* is RSA-OAEP (hash and MGF1 hash the same, empty label)
// of the material; RSA_AES_KEY_WRAP_SHA_* is RSA-OAEP of a 256-bit AES key,
// followed by the material wrapped under that key with RFC 5649 AES key
// wrap with padding. The material must be 32 bytes (SYMMETRIC_DEFAULT).
// Error texts say which step failed, never anything about the bytes.
func unwrapMaterial(alg string, priv *rsa.PrivateKey, ct []byte) ([]byte, error) {
	var h crypto.Hash
	switch alg {
	case algOAEPSHA1, algRSAAESSHA1:
		h = crypto.SHA1
	case algOAEPSHA256, algRSAAESSHA256:
		h = crypto.SHA256
	default:
		return nil, fmt.Errorf("unknown wrapping algorithm %q", alg)
	}
	newHash := sha256.New
	if h == crypto.SHA1 {
		newHash = sha1.New
	}
	var material []byte
	switch alg {
	case algOAEPSHA1, algOAEPSHA256:
		if len(ct) != priv.Size() {
			return nil, fmt.Errorf("ciphertext is %d bytes, want %d for this wrapping key", len(ct), priv.Size())
		}
		m, err := rsa.DecryptOAEP(newHash(), nil, priv, ct, nil)
		if err != nil {
			return nil, errors.New("RSA-OAEP decryption failed")
		}
		material = m
	default:
		if len(ct) < priv.Size()+16 {
			return nil, fmt.Errorf("ciphertext is %d bytes, too short for RSA-%d followed by an AES key wrap", len(ct), priv.N.BitLen())
		}
		aesKey, err := rsa.DecryptOAEP(newHash(), nil, priv, ct[:priv.Size()], nil)
		if err != nil {
			return nil, errors.New("RSA-OAEP decryption of the AES key failed")
		}
		defer clear(aesKey)
		if len(aesKey) != 32 {
			return nil, fmt.Errorf("the RSA-OAEP part holds a %d-byte AES key, want 32", len(aesKey))
		}
		m, err := wrap.KeyUnwrapPad(aesKey, ct[priv.Size():])
		if err != nil {
			return nil, fmt.Errorf("AES key unwrap with padding (RFC 5649) failed: %w", err)
		}
		material = m
	}
	if len(material) != materialSize {
		n := len(material)
		clear(material)
		return nil, fmt.Errorf("the key material is %d bytes, want %d for SYMMETRIC_DEFAULT", n, materialSize)
	}
	return material, nil
}

// keyIDInput is the input of the requests that name a key and, for some,
// one of its materials.
type keyIDInput struct {
	keyIDMember
	KeyMaterialId string
}

type deleteImportedKeyMaterialOutput struct {
	KeyId         string
	KeyMaterialId string `json:",omitempty"`
}

// deleteImportedKeyMaterial implements DeleteImportedKeyMaterial: the
// material is dropped and the key returns to PendingImport (a key pending
// deletion stays so). On a key without material it changes nothing.
func (s *Server) deleteImportedKeyMaterial(c *call) (any, error) {
	var in keyIDInput
	k, err := s.keyInput(c, &in, nil)
	if err != nil {
		return nil, err
	}
	if k.Origin != originExternal {
		return nil, newError(excUnsupportedOperation, "%s origin is %s which is not valid for this operation.", k.arn(), k.Origin)
	}
	id := k.MaterialID
	if in.KeyMaterialId != "" {
		id = in.KeyMaterialId
	}
	v := k.version(id)
	if in.KeyMaterialId != "" && v == nil {
		return nil, newError(excNotFound, "Key material ID %s is not associated with %s.", in.KeyMaterialId, k.arn())
	}
	switch {
	case v != nil && v == k.Pending && !k.isReplica():
		// Pending material is not yet bound to the key: it goes away
		// entirely, here and on the replicas of a primary.
		clear(v.Material)
		k.Pending = nil
		s.dropPendingFromReplicas(k)
		s.dirty = true
	case v != nil && v.Material != nil:
		v.drop()
		s.dirty = true
	}
	return &deleteImportedKeyMaterialOutput{KeyId: k.arn(), KeyMaterialId: id}, nil
}
