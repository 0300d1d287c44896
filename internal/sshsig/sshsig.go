// Package sshsig makes and checks SSH signatures in OpenSSH's SSHSIG format
// (PROTOCOL.sshsig), the format of `ssh-keygen -Y sign`, and reads OpenSSH
// allowed-signers files, so that a signature made here verifies with
// `ssh-keygen -Y verify` and the other way round.
//
// The key and signature algorithms are golang.org/x/crypto/ssh's; this
// package only frames the signed data and the armoured blob.
package sshsig

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

const (
	magic      = "SSHSIG"
	version    = 1
	armorBegin = "-----BEGIN SSH SIGNATURE-----"
	armorEnd   = "-----END SSH SIGNATURE-----"
)

// ErrVerify is returned (wrapped) when a signature does not verify.
var ErrVerify = errors.New("ssh signature does not verify")

// Signature is a decoded SSHSIG signature.
type Signature struct {
	PublicKey ssh.PublicKey
	Namespace string
	HashAlg   string // "sha256" or "sha512"
	Sig       *ssh.Signature
}

// signedData is the blob the key signs (PROTOCOL.sshsig, "Signed Data").
func signedData(namespace, hashAlg string, msg []byte) ([]byte, error) {
	var h []byte
	switch hashAlg {
	case "sha256":
		s := sha256.Sum256(msg)
		h = s[:]
	case "sha512":
		s := sha512.Sum512(msg)
		h = s[:]
	default:
		return nil, fmt.Errorf("unsupported hash algorithm %q", hashAlg)
	}
	return append([]byte(magic), ssh.Marshal(struct {
		Namespace string
		Reserved  string
		HashAlg   string
		Hash      string
	}{namespace, "", hashAlg, string(h)})...), nil
}

type wireSig struct {
	Version   uint32
	PublicKey string
	Namespace string
	Reserved  string
	HashAlg   string
	Signature string
}

// Sign signs msg under namespace with SHA-512, as `ssh-keygen -Y sign -n
// namespace` does, and returns the armoured signature. RSA keys sign with
// rsa-sha2-512.
func Sign(signer ssh.Signer, namespace string, msg []byte) ([]byte, error) {
	if namespace == "" {
		return nil, errors.New("ssh signature namespace must not be empty")
	}
	data, err := signedData(namespace, "sha512", msg)
	if err != nil {
		return nil, err
	}
	var sig *ssh.Signature
	if as, ok := signer.(ssh.AlgorithmSigner); ok && signer.PublicKey().Type() == ssh.KeyAlgoRSA {
		sig, err = as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = signer.Sign(rand.Reader, data)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to make ssh signature: %w", err)
	}
	blob := append([]byte(magic), ssh.Marshal(wireSig{
		Version: version, PublicKey: string(signer.PublicKey().Marshal()), Namespace: namespace,
		HashAlg: "sha512", Signature: string(ssh.Marshal(sig)),
	})...)
	return armor(blob), nil
}

func armor(blob []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(blob)
	var b bytes.Buffer
	b.WriteString(armorBegin + "\n")
	for len(enc) > 70 {
		b.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	b.WriteString(enc + "\n" + armorEnd + "\n")
	return b.Bytes()
}

// ErrMalformed is returned (wrapped) by [Parse] for input that is not an
// SSHSIG signature as OpenSSH reads one.
var ErrMalformed = errors.New("malformed ssh signature")

// dearmor reads the armour as OpenSSH's sshsig_dearmor does: the file starts
// with the BEGIN line and its newline exactly, the body ends at the first
// newline followed by the END marker (what follows the marker is ignored),
// and the body is base64 with ASCII white space anywhere, padding required
// and the unused bits of the last character zero (b64_pton).
func dearmor(armored []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(armored, []byte(armorBegin+"\n"))
	if !ok {
		return nil, fmt.Errorf("%w: the file does not start with the line %s", ErrMalformed, armorBegin)
	}
	end := bytes.Index(rest, []byte("\n"+armorEnd))
	if end < 0 {
		return nil, fmt.Errorf("%w: no line %s after the base64", ErrMalformed, armorEnd)
	}
	body := rest[:end]
	// OpenSSH copies the body as a C string: a NUL at its very end is
	// dropped, one anywhere else refuses the signature.
	if i := bytes.IndexByte(body, 0); i >= 0 {
		if i != len(body)-1 {
			return nil, fmt.Errorf("%w: NUL byte in the base64", ErrMalformed)
		}
		body = body[:i]
	}
	blob, err := decodeBase64(body)
	if err != nil {
		return nil, fmt.Errorf("%w: the body is not base64: %s", ErrMalformed, printable(err.Error()))
	}
	return blob, nil
}

// decodeBase64 is OpenSSH's b64_pton: ASCII white space (C isspace) is
// skipped anywhere, padding is required and the unused bits of the last
// character must be zero.
func decodeBase64(b []byte) ([]byte, error) {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\v', '\f', '\r':
		default:
			clean = append(clean, c)
		}
	}
	return base64.StdEncoding.Strict().DecodeString(string(clean))
}

// Parse decodes an armoured SSHSIG signature as `ssh-keygen -Y verify` reads
// one; every error wraps [ErrMalformed].
func Parse(armored []byte) (*Signature, error) {
	blob, err := dearmor(armored)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(blob, []byte(magic)) {
		return nil, fmt.Errorf("%w: no SSHSIG preamble", ErrMalformed)
	}
	var w wireSig
	if err := ssh.Unmarshal(blob[len(magic):], &w); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, printable(err.Error()))
	}
	if w.Version != version {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrMalformed, w.Version)
	}
	pub, err := parseKey([]byte(w.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %s", ErrMalformed, printable(err.Error()))
	}
	sig := new(ssh.Signature)
	if err := ssh.Unmarshal([]byte(w.Signature), sig); err != nil {
		return nil, fmt.Errorf("%w: signature: %s", ErrMalformed, printable(err.Error()))
	}
	// Bytes after the signature blob are a security key's flags and
	// counter, and nothing for any other key: OpenSSH refuses them
	// ("unexpected trailing data"), so a signature cannot be altered
	// without breaking it.
	if sk := isSecurityKey(pub); sk && len(sig.Rest) != 5 || !sk && len(sig.Rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the signature blob", ErrMalformed, len(sig.Rest))
	}
	if w.HashAlg != "sha256" && w.HashAlg != "sha512" {
		return nil, fmt.Errorf("%w: unsupported hash %q", ErrMalformed, printable(w.HashAlg))
	}
	return &Signature{PublicKey: pub, Namespace: w.Namespace, HashAlg: w.HashAlg, Sig: sig}, nil
}

// parseKey is ssh.ParsePublicKey plus what OpenSSH checks when it reads a key
// blob: a certificate's signature must verify (by a CA key that is not a
// certificate itself).
func parseKey(blob []byte) (ssh.PublicKey, error) {
	k, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, err
	}
	c, ok := k.(*ssh.Certificate)
	if !ok {
		return k, nil
	}
	if _, ok := c.SignatureKey.(*ssh.Certificate); ok {
		return nil, errors.New("certificate signed by a certificate")
	}
	// x/crypto keeps its signed-bytes helper to itself: the certificate
	// without its signature, less the signature's empty length field.
	unsigned := *c
	unsigned.Signature = nil
	signed := unsigned.Marshal()
	signed = signed[:len(signed)-4]
	if !bytes.HasPrefix(blob, signed) {
		return nil, errors.New("certificate is not in canonical form")
	}
	if err := c.SignatureKey.Verify(signed, c.Signature); err != nil {
		return nil, fmt.Errorf("certificate signature does not verify: %w", err)
	}
	return k, nil
}

// isSecurityKey reports whether k (or the key k certifies) is a FIDO key.
func isSecurityKey(k ssh.PublicKey) bool {
	if c, ok := k.(*ssh.Certificate); ok {
		k = c.Key
	}
	t := k.Type()
	return t == ssh.KeyAlgoSKED25519 || t == ssh.KeyAlgoSKECDSA256
}

// Verify checks that s signs msg under namespace with its embedded key.
// Who that key belongs to is the caller's question (see [AllowedSigners]).
func (s *Signature) Verify(namespace string, msg []byte) error {
	if s.Namespace != namespace {
		return fmt.Errorf("%w: namespace is %q, want %q", ErrVerify, s.Namespace, namespace)
	}
	// DSA keys are 1024-bit and SHA-1: OpenSSH still verifies them in
	// SSHSIG; we deliberately do not.
	if plain(s.PublicKey).Type() == "ssh-dss" {
		return fmt.Errorf("%w: DSA (ssh-dss) keys are not accepted", ErrVerify)
	}
	// ssh-keygen refuses SHA-1 RSA signatures in SSHSIG; so do we.
	if s.Sig.Format == ssh.KeyAlgoRSA {
		return fmt.Errorf("%w: RSA signature uses SHA-1 (ssh-rsa)", ErrVerify)
	}
	data, err := signedData(namespace, s.HashAlg, msg)
	if err != nil {
		return err
	}
	if err := s.PublicKey.Verify(data, s.Sig); err != nil {
		return fmt.Errorf("%w: %v", ErrVerify, err)
	}
	// A security key signature must assert user presence (flags, then a
	// 4-byte counter). ssh-keygen -Y verify does not check the flag; we
	// are deliberately stricter: a witness is a person who touched the key.
	if isSecurityKey(s.PublicKey) {
		if len(s.Sig.Rest) < 5 || s.Sig.Rest[0]&0x01 == 0 {
			return fmt.Errorf("%w: the security key signature does not assert user presence", ErrVerify)
		}
	}
	return nil
}

// Fingerprint is the key's OpenSSH SHA256 fingerprint ("SHA256:...").
func Fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// match is OpenSSH's match_pattern_list: list is comma-separated patterns
// with '*' and '?'; a pattern starting with '!' that matches denies, whatever
// else matches. Like OpenSSH, a pattern of 1023 bytes or more fails the list.
func match(list, s string) bool {
	allowed := false
	for list != "" {
		neg := list[0] == '!'
		if neg {
			list = list[1:]
		}
		p, rest, _ := strings.Cut(list, ",")
		list = rest
		if len(p) >= 1023 {
			return false
		}
		if !wildcard(p, s) {
			continue
		}
		if neg {
			return false
		}
		allowed = true
	}
	return allowed
}

// wildcard matches s against p, where '*' matches any run of bytes and '?'
// any one byte; every other byte matches itself (OpenSSH's match_pattern).
// It keeps only the last '*' to return to, so it takes at most
// len(p)*len(s) steps, whatever the pattern.
func wildcard(p, s string) bool {
	pi, si := 0, 0
	star, next := -1, 0 // the last '*' seen, and where its run would end next
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, next = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case star >= 0:
			// Let the last '*' take one more byte and try again after it.
			next++
			pi, si = star+1, next
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
