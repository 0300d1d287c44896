package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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

// Signer is a key pair on the token used as a crypto.Signer: the private key
// never leaves the token, its public key is read once when it is found.
type Signer struct {
	t     *Token
	priv  pkcs11.ObjectHandle
	pub   crypto.PublicKey
	label string
}

var _ crypto.Signer = (*Signer)(nil)

// Public returns the public key read from the token.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Sign signs a SHA-256 digest with CKM_ECDSA and returns the ASN.1 DER
// signature, as crypto/ecdsa does.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, errors.New("the token signer signs SHA-256 digests only")
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	return s.signLocked(digest)
}

func (s *Signer) signLocked(digest []byte) ([]byte, error) {
	t := s.t
	if err := t.ctx.SignInit(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, s.priv); err != nil {
		return nil, fmt.Errorf("failed to sign with key %q on token %q: %w", s.label, t.info.Label, err)
	}
	raw, err := t.ctx.Sign(t.session, digest)
	if err != nil {
		return nil, fmt.Errorf("failed to sign with key %q on token %q: %w", s.label, t.info.Label, err)
	}
	if len(raw) != 64 {
		return nil, fmt.Errorf("token %q returned a %d-byte ECDSA P-256 signature, want 64", t.info.Label, len(raw))
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(raw[:32]))
		b.AddASN1BigInt(new(big.Int).SetBytes(raw[32:]))
	})
	return b.Bytes()
}

// Signer returns the ECDSA P-256 key pair labelled label as a crypto.Signer
// backed by the token. When there is none and create is true, it generates
// one: a token key pair whose private key is private, sensitive, not
// extractable and can only sign. The templates set only attributes that
// PKCS#11 defines for EC keys. Its Public() is an *ecdsa.PublicKey read once
// from the token.
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
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
		pub, priv, err = t.generateECLocked(label, id, true)
		if err != nil {
			return nil, fmt.Errorf("failed to generate signing key %q on token %q: %w", label, t.info.Label, err)
		}
	}
	pk, err := t.ecPublicLocked(pub)
	if err != nil {
		return nil, fmt.Errorf("signing key %q on token %q: %w", label, t.info.Label, err)
	}
	return &Signer{t: t, priv: priv, pub: pk, label: label}, nil
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
