// Package wrap names the AWS KMS key-import wrapping algorithms and defines
// the files that cross the air gap: import parameters coming in ([Params]) and
// wrapped key material going out ([Bundle]).
//
// Both formats are versioned JSON, decoded strictly: unknown fields, a wrong
// format string and trailing bytes are errors.
package wrap

import (
	"github.com/keyceremony/keyceremony/internal/strictjson"

	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Algorithm is a KMS WrappingAlgorithm.
type Algorithm string

// The wrapping algorithms KMS accepts for new imports.
const (
	RSAESOAEPSHA1       Algorithm = "RSAES_OAEP_SHA_1"
	RSAESOAEPSHA256     Algorithm = "RSAES_OAEP_SHA_256"
	RSAAESKeyWrapSHA1   Algorithm = "RSA_AES_KEY_WRAP_SHA_1"
	RSAAESKeyWrapSHA256 Algorithm = "RSA_AES_KEY_WRAP_SHA_256"
)

// Algorithms lists every wrapping algorithm keyceremony supports.
var Algorithms = []Algorithm{RSAESOAEPSHA1, RSAESOAEPSHA256, RSAAESKeyWrapSHA1, RSAAESKeyWrapSHA256}

// KeySpecs lists the KMS WrappingKeySpec values keyceremony supports.
var KeySpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096"}

// ParseAlgorithm checks s against the algorithms KMS accepts for new imports.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	if s == "RSAES_PKCS1_V1_5" {
		return "", errors.New("wrapping algorithm RSAES_PKCS1_V1_5 is no longer accepted by KMS for imports (since 2023-10-10): use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256")
	}
	return "", fmt.Errorf("unknown wrapping algorithm %q: use one of RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256", s)
}

// Hash returns the hash the algorithm uses for OAEP and MGF1.
func (a Algorithm) Hash() crypto.Hash {
	if a == RSAESOAEPSHA256 || a == RSAAESKeyWrapSHA256 {
		return crypto.SHA256
	}
	return crypto.SHA1
}

// KeyWrap reports whether the algorithm is a hybrid RSA + AES key wrap.
func (a Algorithm) KeyWrap() bool {
	return a == RSAAESKeyWrapSHA1 || a == RSAAESKeyWrapSHA256
}

// ValidKeySpec reports whether s is a supported WrappingKeySpec.
func ValidKeySpec(s string) bool {
	for _, k := range KeySpecs {
		if k == s {
			return true
		}
	}
	return false
}

// ErrParamsExpired is returned when import parameters are past their
// ParametersValidTo.
var ErrParamsExpired = errors.New("import parameters expired")

// File format identifiers.
const (
	ParamsFormat = "keyceremony/params/v1"
	BundleFormat = "keyceremony/bundle/v1"
)

// Params are KMS import parameters for one key, as fetched online by
// GetParametersForImport and carried into the offline room.
type Params struct {
	Format      string    `json:"format"`
	KeyARN      string    `json:"key_arn"`
	Region      string    `json:"region"`
	Algorithm   Algorithm `json:"wrapping_algorithm"`
	KeySpec     string    `json:"wrapping_key_spec"`
	PublicKey   []byte    `json:"public_key"`
	ImportToken []byte    `json:"import_token"`
	ValidTo     time.Time `json:"parameters_valid_to"`
	// AtFetch is what KMS said of the key when the parameters were fetched
	// (absent in files from AWS's CLI and older keyceremony): a hint that
	// lets an offline ceremony refuse early. Nothing trusts it: upload
	// checks the key again.
	AtFetch *KeyHint `json:"key_at_fetch,omitempty"`
}

// KeyHint is a KMS key as DescribeKey showed it when its import
// parameters were fetched.
type KeyHint struct {
	// State is the KeyState (Enabled, PendingImport, ...).
	State string `json:"key_state"`
	// KeyMaterialID is the current material's KeyMaterialId, if any.
	KeyMaterialID string `json:"current_key_material_id,omitempty"`
	// MultiRegionType is PRIMARY or REPLICA for a multi-Region key, and
	// Replicas the ARNs of a primary's replicas.
	MultiRegionType string   `json:"multi_region_type,omitempty"`
	Replicas        []string `json:"replica_arns,omitempty"`
}

// RSAPublicKey parses the wrapping public key and checks that its size
// matches the key spec.
func (p *Params) RSAPublicKey() (*rsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(p.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("import parameters for %s: public key is not a DER SubjectPublicKeyInfo: %w", p.KeyARN, err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("import parameters for %s: public key is %T, not RSA", p.KeyARN, k)
	}
	want := map[string]int{"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}[p.KeySpec]
	if rk.N.BitLen() != want {
		return nil, fmt.Errorf("import parameters for %s: public key has %d bits but the key spec says %s", p.KeyARN, rk.N.BitLen(), p.KeySpec)
	}
	return rk, nil
}

// CheckValid returns an error wrapping [ErrParamsExpired] when now is past
// the parameters' ValidTo.
func (p *Params) CheckValid(now time.Time) error {
	if !now.Before(p.ValidTo) {
		return fmt.Errorf("%w: the import parameters for %s expired at %s: fetch new ones with keyceremony params fetch", ErrParamsExpired, p.KeyARN, p.ValidTo.UTC().Format(time.RFC3339))
	}
	return nil
}

func (p *Params) validate() error {
	switch {
	case p.Format != ParamsFormat:
		return fmt.Errorf("format is %q, want %q", p.Format, ParamsFormat)
	case p.KeyARN == "":
		return errors.New("key_arn is empty")
	case len(p.PublicKey) == 0:
		return errors.New("public_key is empty")
	case len(p.ImportToken) == 0:
		return errors.New("import_token is empty")
	case p.ValidTo.IsZero():
		return errors.New("parameters_valid_to is missing")
	case !ValidKeySpec(p.KeySpec):
		return fmt.Errorf("wrapping_key_spec %q is not one of RSA_2048, RSA_3072, RSA_4096", p.KeySpec)
	case p.AtFetch != nil && !hintRE.MatchString(p.AtFetch.State+p.AtFetch.KeyMaterialID+p.AtFetch.MultiRegionType):
		return errors.New("key_at_fetch holds characters KMS never uses in a key state, material id or multi-Region type")
	}
	if p.AtFetch != nil {
		for _, r := range p.AtFetch.Replicas {
			if !arnRE.MatchString(r) {
				return fmt.Errorf("key_at_fetch.replica_arns: %q is not a KMS key ARN", r)
			}
		}
	}
	if _, err := ParseAlgorithm(string(p.Algorithm)); err != nil {
		return fmt.Errorf("wrapping_algorithm: %w", err)
	}
	_, err := p.RSAPublicKey()
	return err
}

// Marshal encodes p, indented, with a final newline.
func (p *Params) Marshal() ([]byte, error) {
	p.Format = ParamsFormat
	return marshal(p)
}

// hintRE is what the fields of a KeyHint may hold.
var hintRE = regexp.MustCompile(`^[A-Za-z0-9_]{0,200}$`)

// arnRE is a KMS key ARN.
var arnRE = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]{1,32}:[0-9]{12}:key/[A-Za-z0-9-]{1,64}$`)

// ParseParams decodes and validates a params file.
func ParseParams(b []byte) (*Params, error) {
	var p Params
	if err := strictjson.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("invalid params file: %w", err)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("invalid params file: %w", err)
	}
	return &p, nil
}

// Bundle is wrapped key material for one KMS key, ready for upload.
type Bundle struct {
	Format               string    `json:"format"`
	KeyARN               string    `json:"key_arn"`
	Region               string    `json:"region"`
	Algorithm            Algorithm `json:"wrapping_algorithm"`
	KeySpec              string    `json:"wrapping_key_spec"`
	ImportToken          []byte    `json:"import_token"`
	ParamsValidTo        time.Time `json:"parameters_valid_to"`
	EncryptedKeyMaterial []byte    `json:"encrypted_key_material"`
	// KeyCheckValue is the hex key check value of the material, from the token.
	KeyCheckValue string `json:"key_check_value"`
	// TranscriptHash is the SHA-256 of the transcript as it stood when the
	// bundle was made, binding the bundle to its ceremony.
	TranscriptHash string `json:"transcript_hash,omitempty"`
}

// Marshal encodes b, indented, with a final newline.
func (b *Bundle) Marshal() ([]byte, error) {
	b.Format = BundleFormat
	return marshal(b)
}

// ParseBundle decodes and validates a bundle file.
func ParseBundle(data []byte) (*Bundle, error) {
	var b Bundle
	if err := strictjson.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("invalid bundle file: %w", err)
	}
	switch {
	case b.Format != BundleFormat:
		return nil, fmt.Errorf("invalid bundle file: format is %q, want %q", b.Format, BundleFormat)
	case b.KeyARN == "":
		return nil, errors.New("invalid bundle file: key_arn is empty")
	case len(b.ImportToken) == 0:
		return nil, errors.New("invalid bundle file: import_token is empty")
	case len(b.EncryptedKeyMaterial) == 0:
		return nil, errors.New("invalid bundle file: encrypted_key_material is empty")
	case b.ParamsValidTo.IsZero():
		return nil, errors.New("invalid bundle file: parameters_valid_to is missing")
	}
	if _, err := ParseAlgorithm(string(b.Algorithm)); err != nil {
		return nil, fmt.Errorf("invalid bundle file: wrapping_algorithm: %w", err)
	}
	return &b, nil
}

// CheckValid returns an error wrapping [ErrParamsExpired] when the bundle's
// import token is past its validity at now.
func (b *Bundle) CheckValid(now time.Time) error {
	if !now.Before(b.ParamsValidTo) {
		return fmt.Errorf("%w: the import token in the bundle for %s expired at %s: fetch new parameters with keyceremony params fetch and wrap again", ErrParamsExpired, b.KeyARN, b.ParamsValidTo.UTC().Format(time.RFC3339))
	}
	return nil
}

func marshal(v any) ([]byte, error) {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
