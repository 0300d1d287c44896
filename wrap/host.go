package wrap

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
)

// EncryptOnHost wraps material for KMS under pub with alg in host memory,
// using crypto/rsa for RSA-OAEP and [KeyWrapPad] for the AES part. It is the
// fallback for tokens that cannot wrap inside the HSM; callers must have the
// operator's permission to use it, and zero material afterwards.
//
// For RSAES_OAEP_* the result is RSA-OAEP(material); for RSA_AES_KEY_WRAP_*
// it is RSA-OAEP(ephemeral AES-256 key) || KWP(ephemeral key, material). The
// ephemeral key is zeroed before it returns. rnd is usually crypto/rand.Reader.
func EncryptOnHost(rnd io.Reader, alg Algorithm, pub *rsa.PublicKey, material []byte) ([]byte, error) {
	if _, err := ParseAlgorithm(string(alg)); err != nil {
		return nil, err
	}
	if len(material) == 0 {
		return nil, errors.New("no key material to wrap")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	h := alg.Hash().New()
	if !alg.KeyWrap() {
		out, err := rsa.EncryptOAEP(h, rnd, pub, material, nil)
		if err != nil {
			return nil, fmt.Errorf("failed to wrap with %s on the host: %w", alg, err)
		}
		return out, nil
	}
	eph := make([]byte, 32)
	defer clear(eph)
	if _, err := io.ReadFull(rnd, eph); err != nil {
		return nil, fmt.Errorf("failed to make an ephemeral AES key: %w", err)
	}
	head, err := rsa.EncryptOAEP(h, rnd, pub, eph, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to wrap the ephemeral AES key with %s on the host: %w", alg, err)
	}
	tail, err := KeyWrapPad(eph, material)
	if err != nil {
		return nil, fmt.Errorf("failed to wrap the key material with AES-KWP on the host: %w", err)
	}
	return append(head, tail...), nil
}

// DecryptOnHost reverses [EncryptOnHost] with the wrapping private key: what
// KMS does on import. keyceremony never holds a KMS private key; this is for
// tests and for the loopback KMS. The caller zeroes the result.
func DecryptOnHost(alg Algorithm, priv *rsa.PrivateKey, ciphertext []byte) ([]byte, error) {
	if _, err := ParseAlgorithm(string(alg)); err != nil {
		return nil, err
	}
	h := alg.Hash().New()
	if !alg.KeyWrap() {
		return rsa.DecryptOAEP(h, nil, priv, ciphertext, nil)
	}
	n := priv.Size()
	if len(ciphertext) <= n {
		return nil, fmt.Errorf("%s ciphertext is %d bytes, want more than the %d-byte RSA part", alg, len(ciphertext), n)
	}
	eph, err := rsa.DecryptOAEP(h, nil, priv, ciphertext[:n], nil)
	if err != nil {
		return nil, err
	}
	defer clear(eph)
	return KeyUnwrapPad(eph, ciphertext[n:])
}
