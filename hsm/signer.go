package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// p256OID is the DER of the named curve P-256 (secp256r1), CKA_EC_PARAMS.
var p256OID = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

// SealKey is the algorithm of a transcript signing key, as a config names
// it (token.seal_algorithm).
type SealKey string

// The transcript signing keys keyceremony makes on a token.
const (
	// SealECDSAP256 is an ECDSA P-256 key pair signing with CKM_ECDSA over a
	// SHA-256 digest: small, fast, and what most tokens make.
	SealECDSAP256 SealKey = "ecdsa-p256"
	// SealRSA3072 is a 3072-bit RSA key pair (exponent 65537) signing
	// RSASSA-PKCS1-v1_5 with SHA-256: CKM_RSA_PKCS over the DigestInfo, the
	// RSA signature mechanism nearly every token has (smart cards
	// included, where PSS is often missing), and deterministic.
	SealRSA3072 SealKey = "rsa-3072"
)

// ParseSealKey reads a token.seal_algorithm value: "" (chosen by the
// probe), "ecdsa-p256" or "rsa-3072".
func ParseSealKey(s string) (SealKey, error) {
	switch k := SealKey(s); k {
	case "", SealECDSAP256, SealRSA3072:
		return k, nil
	}
	return "", fmt.Errorf("%q is not a transcript signing key: use ecdsa-p256 or rsa-3072, or leave it out to let the probe choose", s)
}

// String names the algorithm for people.
func (k SealKey) String() string {
	switch k {
	case SealECDSAP256:
		return "ECDSA P-256"
	case SealRSA3072:
		return "RSA 3072 (PKCS#1 v1.5, SHA-256)"
	}
	return string(k)
}

// digestInfoSHA256 is the DER DigestInfo prefix of a SHA-256 digest
// (RFC 8017 section 9.2, note 1): CKM_RSA_PKCS signs prefix || digest.
var digestInfoSHA256 = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}

// Signer is a key pair on the token used as a crypto.Signer: the private key
// never leaves the token, its public key is read once when it is found.
type Signer struct {
	t     *Token
	priv  pkcs11.ObjectHandle
	pub   crypto.PublicKey
	alg   SealKey
	label string
}

var _ crypto.Signer = (*Signer)(nil)

// Public returns the public key read from the token: an *ecdsa.PublicKey
// or an *rsa.PublicKey.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Algorithm says which kind of key it is.
func (s *Signer) Algorithm() SealKey { return s.alg }

// Sign signs a SHA-256 digest and returns the signature crypto/ecdsa (ASN.1
// DER) or crypto/rsa (PKCS#1 v1.5) would: PSS options are refused.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss || opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, errors.New("the token signer signs SHA-256 digests only, RSA keys with PKCS#1 v1.5")
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	return s.signLocked(digest)
}

func (s *Signer) signLocked(digest []byte) ([]byte, error) {
	t := s.t
	m, in, size := pkcs11.CKM_ECDSA, digest, 64
	if s.alg == SealRSA3072 {
		m, in, size = pkcs11.CKM_RSA_PKCS, append(append([]byte(nil), digestInfoSHA256...), digest...), 384
	}
	if err := t.ctx.SignInit(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(uint(m), nil)}, s.priv); err != nil {
		return nil, fmt.Errorf("failed to sign with key %q on token %q: %w", s.label, t.info.Label, err)
	}
	raw, err := t.ctx.Sign(t.session, in)
	if err != nil {
		return nil, fmt.Errorf("failed to sign with key %q on token %q: %w", s.label, t.info.Label, err)
	}
	if len(raw) != size {
		return nil, fmt.Errorf("token %q returned a %d-byte %s signature, want %d", t.info.Label, len(raw), s.alg, size)
	}
	if s.alg == SealRSA3072 {
		return raw, nil
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(raw[:32]))
		b.AddASN1BigInt(new(big.Int).SetBytes(raw[32:]))
	})
	return b.Bytes()
}

// Signer returns the key pair labelled label as a crypto.Signer backed by
// the token: an ECDSA P-256 or RSA 3072 key (any other is refused). When
// there is none and create is true, it generates one: of the kind
// Config.SealKey names, or else the first kind the probe proved the token
// makes and signs with (ECDSA P-256, then RSA 3072). A key found must be of
// the kind Config.SealKey names, when it names one. The private key is a
// token object, private, sensitive, not extractable and can only sign; the
// templates set only attributes PKCS#11 defines for the key type.
func (t *Token) Signer(label string, create bool) (*Signer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	priv, pub, err := t.findKeyPairLocked(label)
	if err != nil {
		return nil, err
	}
	if priv == 0 {
		if !create {
			return nil, fmt.Errorf("%w: no signing key labelled %q on token %q", ErrKeyNotFound, label, t.info.Label)
		}
		alg := t.seal
		if alg == "" {
			caps, err := t.probeLocked()
			if err != nil {
				return nil, err
			}
			if alg = caps.seal; alg == "" {
				return nil, fmt.Errorf("%w: token %q can make no transcript signing key (%s)", ErrMechanism, t.info.Label, caps.Signing)
			}
		}
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
		pub, priv, err = t.generateSealLocked(alg, label, id, true)
		if err != nil {
			return nil, fmt.Errorf("failed to generate %s signing key %q on token %q: %w", alg, label, t.info.Label, err)
		}
	}
	pk, alg, err := t.sealPublicLocked(pub)
	if err != nil {
		return nil, fmt.Errorf("signing key %q on token %q: %w", label, t.info.Label, err)
	}
	if t.seal != "" && alg != t.seal {
		return nil, fmt.Errorf("signing key %q on token %q is %s, but token.seal_algorithm asks for %s: choose another token.signing_key label, or leave seal_algorithm out", label, t.info.Label, alg, t.seal)
	}
	return &Signer{t: t, priv: priv, pub: pk, alg: alg, label: label}, nil
}

// generateSealLocked makes a signing key pair of kind alg, on the token or
// as session objects.
func (t *Token) generateSealLocked(alg SealKey, label string, id []byte, token bool) (pub, priv pkcs11.ObjectHandle, err error) {
	if alg == SealRSA3072 {
		return t.generateRSALocked(label, id, token)
	}
	return t.generateECLocked(label, id, token)
}

// generateRSALocked makes an RSA 3072 key pair (exponent 65537) whose
// private key can only sign, on the token or as session objects.
func (t *Token) generateRSALocked(label string, id []byte, token bool) (pub, priv pkcs11.ObjectHandle, err error) {
	pubTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 3072),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	privTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	return t.ctx.GenerateKeyPair(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubTmpl, privTmpl)
}

// generateECLocked makes a P-256 key pair, on the token or as session objects.
func (t *Token) generateECLocked(label string, id []byte, token bool) (pub, priv pkcs11.ObjectHandle, err error) {
	pubTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p256OID),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	privTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	return t.ctx.GenerateKeyPair(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}, pubTmpl, privTmpl)
}

// findKeyPairLocked finds the one private key labelled label and its public
// key (same label, and same CKA_ID when the private key has one). It
// returns 0 handles when there is no private key.
func (t *Token) findKeyPairLocked(label string) (priv, pub pkcs11.ObjectHandle, err error) {
	privs, err := t.find([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 2)
	if err != nil {
		return 0, 0, err
	}
	switch len(privs) {
	case 0:
		return 0, 0, nil
	case 1:
	default:
		return 0, 0, fmt.Errorf("%w: token %q holds several private keys labelled %q: give the signing key a unique label", ErrAmbiguous, t.info.Label, label)
	}
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}
	if a, err := t.ctx.GetAttributeValue(t.session, privs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)}); err == nil && len(a) == 1 && len(a[0].Value) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, a[0].Value))
	}
	pubs, err := t.find(tmpl, 2)
	if err != nil {
		return 0, 0, err
	}
	if len(pubs) != 1 {
		return 0, 0, fmt.Errorf("token %q holds %d public keys for the signing key %q, want 1", t.info.Label, len(pubs), label)
	}
	return privs[0], pubs[0], nil
}

// sealPublicLocked reads a signing key's public key object: an ECDSA P-256
// or RSA 3072 (exponent 65537) key.
func (t *Token) sealPublicLocked(h pkcs11.ObjectHandle) (crypto.PublicKey, SealKey, error) {
	attrs, err := t.ctx.GetAttributeValue(t.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return nil, "", fmt.Errorf("failed to read the public key: %w", err)
	}
	switch ulong(attrs[0].Value) {
	case pkcs11.CKK_EC:
		pk, err := t.ecPublicLocked(h)
		return pk, SealECDSAP256, err
	case pkcs11.CKK_RSA:
		pk, err := t.rsaPublicLocked(h)
		return pk, SealRSA3072, err
	}
	return nil, "", errors.New("it is neither an ECDSA P-256 nor an RSA 3072 key")
}

// rsaPublicLocked reads an RSA 3072 public key object.
func (t *Token) rsaPublicLocked(h pkcs11.ObjectHandle) (*rsa.PublicKey, error) {
	attrs, err := t.ctx.GetAttributeValue(t.session, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to read the public key: %w", err)
	}
	n, e := new(big.Int).SetBytes(attrs[0].Value), new(big.Int).SetBytes(attrs[1].Value)
	if n.BitLen() != 3072 || !e.IsInt64() || e.Int64() != 65537 {
		return nil, fmt.Errorf("it is a %d-bit RSA key with exponent %s, not RSA 3072 with exponent 65537", n.BitLen(), e)
	}
	return &rsa.PublicKey{N: n, E: 65537}, nil
}

// ecPublicLocked reads a P-256 public key object.
func (t *Token) ecPublicLocked(h pkcs11.ObjectHandle) (*ecdsa.PublicKey, error) {
	attrs, err := t.ctx.GetAttributeValue(t.session, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to read the public key: %w", err)
	}
	if string(attrs[1].Value) != string(p256OID) {
		return nil, errors.New("it is not an ECDSA P-256 key")
	}
	point := attrs[2].Value
	// CKA_EC_POINT is a DER OCTET STRING; some modules return the raw point.
	var inner []byte
	if len(point) != 65 {
		if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
			point = inner
		}
	}
	pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("its public point does not decode: %w", err)
	}
	return pk, nil
}
