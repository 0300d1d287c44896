package transcripts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// The seal algorithms: the signature a seal and every checkpoint carry,
// named in the seal's "algorithm" and the header's signing_key.algorithm.
// Both sign the SHA-256 of the payload; openssl dgst -sha256 -verify checks
// either.
const (
	// SealECDSAP256 is ECDSA on P-256 with SHA-256, the signature an ASN.1
	// DER ECDSA-Sig-Value: the seal of every token that can make a P-256
	// key (and of every transcript before RSA seals existed).
	SealECDSAP256 = "ECDSA-P256-SHA256"
	// SealRSA3072 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017) under a
	// 3072-bit RSA key with public exponent 65537: the seal of a token that
	// cannot make a P-256 key.
	SealRSA3072 = "RSA-3072-PKCS1v15-SHA256"
)

// SealAlgorithm is the seal algorithm of the first transcripts, kept for
// readers of old code: [SealECDSAP256].
const SealAlgorithm = SealECDSAP256

// SealAlgorithmOf names the seal algorithm of pub: [SealECDSAP256] for an
// ECDSA P-256 key, [SealRSA3072] for a 3072-bit RSA key with exponent
// 65537, and "" for any other key, which cannot seal a transcript.
func SealAlgorithmOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return SealECDSAP256
		}
	case *rsa.PublicKey:
		if k.N.BitLen() == 3072 && k.E == 65537 {
			return SealRSA3072
		}
	}
	return ""
}

// ParseSealKey parses a DER SubjectPublicKeyInfo that must be a seal key
// (see [SealAlgorithmOf]) and returns it with its algorithm.
func ParseSealKey(spki []byte) (crypto.PublicKey, string, error) {
	k, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, "", err
	}
	alg := SealAlgorithmOf(k)
	if alg == "" {
		return nil, "", fmt.Errorf("a %s, not an ECDSA P-256 or RSA 3072 key", keyKind(k))
	}
	return k, alg, nil
}

func keyKind(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name + " key"
	case *rsa.PublicKey:
		return fmt.Sprintf("%d-bit RSA key with exponent %d", k.N.BitLen(), k.E)
	}
	return fmt.Sprintf("%T", k)
}

// verifySignature reports whether sig is a signature by pub, under alg,
// of the SHA-256 digest.
func verifySignature(alg string, pub crypto.PublicKey, digest, sig []byte) bool {
	if SealAlgorithmOf(pub) != alg {
		return false
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	}
	return false
}

// signDigest signs the SHA-256 digest with signer and checks the signature
// against its public key, which must be a seal key; it returns the
// signature and the algorithm.
func signDigest(signer crypto.Signer, digest []byte) ([]byte, string, error) {
	alg := SealAlgorithmOf(signer.Public())
	if alg == "" {
		return nil, "", fmt.Errorf("transcript signing key is a %s: it must be ECDSA P-256 or RSA 3072", keyKind(signer.Public()))
	}
	// crypto.SHA256 as the options: RSA signers then use PKCS#1 v1.5.
	sig, err := signer.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return nil, "", err
	}
	if !verifySignature(alg, signer.Public(), digest, sig) {
		return nil, "", fmt.Errorf("the %s signature made by the token does not verify: the token or signing key is faulty", alg)
	}
	return sig, alg, nil
}

// sealKey returns the key the header names and its algorithm, checking
// that the header's algorithm, when it names one, is the key's (headers
// written before RSA seals name none: their key is ECDSA P-256). Failures
// are *VerifyError of ClassSignature on line 1.
func (h *Header) sealKey() (crypto.PublicKey, string, error) {
	fail := func(field, reason, expected, found string) error {
		return &VerifyError{Class: ClassSignature, Line: 1, Field: field, Reason: reason, Expected: expected, Found: found}
	}
	k, alg, err := ParseSealKey(h.SigningKey.PublicKey)
	if err != nil {
		return nil, "", fail("signing_key.public_key", "not a seal key: "+err.Error(), "", "")
	}
	if a := h.SigningKey.Algorithm; a != alg && (a != "" || alg != SealECDSAP256) {
		return nil, "", fail("signing_key.algorithm", "is not the algorithm of signing_key.public_key", alg, a)
	}
	return k, alg, nil
}
