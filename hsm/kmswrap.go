package hsm

import (
	"crypto"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/keyceremony/keyceremony/wrap"
)

// Wrapped is key material wrapped for a KMS import.
type Wrapped struct {
	// Ciphertext is what KMS's ImportKeyMaterial takes as
	// EncryptedKeyMaterial.
	Ciphertext []byte
	// InHSM is true when the material never left the token in the clear.
	InHSM bool
	// Method says how the wrap was made, for the transcript: for example
	// "C_WrapKey CKM_RSA_PKCS_OAEP SHA-1" or "composed on token:
	// CKM_AES_KEY_WRAP_PAD + CKM_RSA_PKCS_OAEP SHA-1".
	Method string
	// HostReason, set only when InHSM is false, says why the token could not
	// wrap with the algorithm (the mechanism it refused and the CKR_ code).
	HostReason string
}

// WrapForKMS wraps k under the KMS wrapping public key pub with alg, inside
// the token wherever the token can:
//
//   - RSAES_OAEP_*: C_WrapKey with CKM_RSA_PKCS_OAEP (hash and MGF1 per alg)
//     under pub, imported as a session public-key object.
//   - RSA_AES_KEY_WRAP_*: CKM_RSA_AES_KEY_WRAP when the token lists it and
//     accepts the call; otherwise composed on the token: an ephemeral
//     session AES-256 key wraps k with CKM_AES_KEY_WRAP_PAD, pub wraps the
//     ephemeral key with CKM_RSA_PKCS_OAEP, and the ephemeral key is
//     destroyed.
//
// Whether the token can is decided by what it lists and by the CKR_ code of
// the actual call. When it cannot and allowHost is false, the error wraps
// [ErrMechanism] and names the algorithms the token can do inside the HSM.
// When allowHost is true, the material leaves the token once, wrapped under
// a fresh session key, is unwrapped in host memory, checked against the
// token's key check value, wrapped with [wrap.EncryptOnHost], and every host
// buffer holding it is zeroed; the result says so in InHSM and HostReason.
func (t *Token) WrapForKMS(k *Key, pub *rsa.PublicKey, alg wrap.Algorithm, allowHost bool) (*Wrapped, error) {
	if _, err := wrap.ParseAlgorithm(string(alg)); err != nil {
		return nil, err
	}
	var w *Wrapped
	var err error
	if testOnlyForceHost {
		err = fmt.Errorf("%w: in-HSM wrapping switched off by a test", ErrMechanism)
	} else if alg.KeyWrap() {
		w, err = t.wrapRSAAES(k, pub, alg.Hash())
	} else {
		var out []byte
		t.mu.Lock()
		err = t.checkWrapLocked(pkcs11.CKM_RSA_PKCS_OAEP)
		t.mu.Unlock()
		if err == nil {
			out, err = t.WrapOAEP(k, pub, alg.Hash())
		}
		w = &Wrapped{Ciphertext: out, InHSM: true, Method: "C_WrapKey CKM_RSA_PKCS_OAEP " + hashName(alg.Hash())}
	}
	if err == nil {
		if len(w.Ciphertext) < pub.Size() {
			return nil, fmt.Errorf("token %q returned a %d-byte wrap of key %q, shorter than the %d-byte RSA modulus", t.info.Label, len(w.Ciphertext), k.Label, pub.Size())
		}
		return w, nil
	}
	if !errors.Is(err, ErrMechanism) {
		return nil, err
	}
	reason := strings.TrimPrefix(err.Error(), ErrMechanism.Error()+": ")
	if !allowHost {
		can, perr := t.InHSMAlgorithms(pub)
		if perr != nil {
			return nil, perr
		}
		names := make([]string, len(can))
		for i, a := range can {
			names[i] = string(a)
		}
		list := "none"
		if len(names) > 0 {
			list = strings.Join(names, ", ")
		}
		return nil, fmt.Errorf("%w: token %q cannot wrap with %s inside the HSM (%s); inside the HSM it can do: %s; choose one of those, or allow host wrapping (--allow-host-wrap or kms.allow_host_wrap: true), which puts the key material in host memory for a moment",
			ErrMechanism, t.info.Label, alg, reason, list)
	}
	out, err := t.wrapOnHost(k, pub, alg)
	if err != nil {
		return nil, err
	}
	return &Wrapped{Ciphertext: out, InHSM: false, Method: "host: crypto/rsa OAEP " + hashName(alg.Hash()) + kwpSuffix(alg), HostReason: reason}, nil
}

func kwpSuffix(alg wrap.Algorithm) string {
	if alg.KeyWrap() {
		return " + AES-KWP (RFC 5649)"
	}
	return ""
}

func hashName(h crypto.Hash) string {
	if h == crypto.SHA256 {
		return "SHA-256"
	}
	return "SHA-1"
}

func oaepMechanism(h crypto.Hash) (*pkcs11.Mechanism, error) {
	switch h {
	case crypto.SHA1:
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil)), nil
	case crypto.SHA256:
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)), nil
	}
	return nil, fmt.Errorf("unsupported OAEP hash %v", h)
}

// testOnlyForceRSAAES makes wrapRSAAES try CKM_RSA_AES_KEY_WRAP even when
// the token does not list it, so tests can see the fallback on the CKR_ code.
var testOnlyForceRSAAES = false

// testOnlyForceHost makes WrapForKMS act as if the token refused alg, so
// tests and benchmarks can time the host path on SoftHSM for SHA-1 too.
var testOnlyForceHost = false

// wrapRSAAES makes an RSA_AES_KEY_WRAP_* wrap inside the token.
func (t *Token) wrapRSAAES(k *Key, pub *rsa.PublicKey, h crypto.Hash) (*Wrapped, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	oaep, err := oaepMechanism(h)
	if err != nil {
		return nil, err
	}
	pubH, err := t.importRSAPublic(pub)
	if err != nil {
		return nil, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, pubH) }()

	m, listed, err := t.mechanismLocked(pkcs11.CKM_RSA_AES_KEY_WRAP)
	if err != nil {
		return nil, err
	}
	var direct string
	if listed && m.CanWrap() || testOnlyForceRSAAES {
		hm, mgf := uint(pkcs11.CKM_SHA_1), uint(pkcs11.CKG_MGF1_SHA1)
		if h == crypto.SHA256 {
			hm, mgf = pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256
		}
		params := &pkcs11.RSAAESKeyWrapParams{AESKeyBits: 256, OAEPParams: pkcs11.OAEPParams{HashAlg: hm, MGF: mgf, SourceType: pkcs11.CKZ_DATA_SPECIFIED}}
		out, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_AES_KEY_WRAP, params)}, pubH, k.handle)
		if err == nil {
			return &Wrapped{Ciphertext: out, InHSM: true, Method: "C_WrapKey CKM_RSA_AES_KEY_WRAP " + hashName(h)}, nil
		}
		if !refused(err) {
			return nil, fmt.Errorf("failed to wrap key %q with CKM_RSA_AES_KEY_WRAP: %w", k.Label, err)
		}
		direct = fmt.Sprintf("CKM_RSA_AES_KEY_WRAP refused (%v), ", err)
	}

	// Compose it: an ephemeral session AES-256 key, never on the token's
	// storage, usable only to wrap, destroyed before returning.
	for _, id := range []uint{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_KEY_WRAP_PAD, pkcs11.CKM_RSA_PKCS_OAEP} {
		if id == pkcs11.CKM_AES_KEY_GEN {
			if _, listed, err := t.mechanismLocked(id); err != nil {
				return nil, err
			} else if !listed {
				return nil, fmt.Errorf("%w: %stoken %q does not list CKM_AES_KEY_GEN", ErrMechanism, direct, t.info.Label)
			}
			continue
		}
		if err := t.checkWrapLocked(id); err != nil {
			if direct != "" {
				return nil, fmt.Errorf("%s%w", direct, err)
			}
			return nil, err
		}
	}
	eph, err := t.ctx.GenerateKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "keyceremony-ephemeral-kek"),
	})
	if err != nil {
		if refused(err) {
			return nil, fmt.Errorf("%w: %stoken %q cannot make an ephemeral AES-256 key: %v", ErrMechanism, direct, t.info.Label, err)
		}
		return nil, fmt.Errorf("failed to generate an ephemeral AES key on token %q: %w", t.info.Label, err)
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, eph) }()
	// A nil parameter: SoftHSM refuses an explicit IV (../shared/SOFTHSM.md).
	tail, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, eph, k.handle)
	if err != nil {
		if refused(err) {
			return nil, fmt.Errorf("%w: %stoken %q cannot wrap with CKM_AES_KEY_WRAP_PAD: %v", ErrMechanism, direct, t.info.Label, err)
		}
		return nil, fmt.Errorf("failed to wrap key %q with CKM_AES_KEY_WRAP_PAD: %w", k.Label, err)
	}
	head, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{oaep}, pubH, eph)
	if err != nil {
		if refused(err) {
			return nil, fmt.Errorf("%w: %stoken %q cannot wrap with CKM_RSA_PKCS_OAEP %s: %v", ErrMechanism, direct, t.info.Label, hashName(h), err)
		}
		return nil, fmt.Errorf("failed to wrap the ephemeral AES key with CKM_RSA_PKCS_OAEP: %w", err)
	}
	if err := t.ctx.DestroyObject(t.session, eph); err != nil {
		return nil, fmt.Errorf("failed to destroy the ephemeral AES key on token %q: %w", t.info.Label, err)
	}
	if len(head) != pub.Size() {
		return nil, fmt.Errorf("token %q returned a %d-byte RSA-OAEP block for a %d-byte modulus", t.info.Label, len(head), pub.Size())
	}
	method := "composed on token: CKM_AES_KEY_WRAP_PAD + CKM_RSA_PKCS_OAEP " + hashName(h)
	if direct != "" {
		method += " (" + strings.TrimSuffix(direct, ", ") + ")"
	}
	return &Wrapped{Ciphertext: append(head, tail...), InHSM: true, Method: method}, nil
}

// InHSMAlgorithms lists the KMS wrapping algorithms the token can do inside
// the HSM for the public key pub. It decides by trying: each OAEP hash is
// probed with C_WrapKey of a fresh session AES key (never key material)
// under pub, and the AES part by the token's mechanism list and a
// CKM_AES_KEY_WRAP_PAD call between two session keys.
func (t *Token) InHSMAlgorithms(pub *rsa.PublicKey) ([]wrap.Algorithm, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pubH, err := t.importRSAPublic(pub)
	if err != nil {
		return nil, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, pubH) }()
	a, err := t.sessionAESLocked(nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, a) }()
	b, err := t.sessionAESLocked(nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, b) }()
	_, kwpErr := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, a, b)
	if kwpErr != nil && !refused(kwpErr) {
		return nil, fmt.Errorf("failed to probe CKM_AES_KEY_WRAP_PAD on token %q: %w", t.info.Label, kwpErr)
	}
	var out []wrap.Algorithm
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		m, _ := oaepMechanism(h)
		_, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{m}, pubH, a)
		if err != nil {
			if refused(err) {
				continue
			}
			return nil, fmt.Errorf("failed to probe CKM_RSA_PKCS_OAEP on token %q: %w", t.info.Label, err)
		}
		if h == crypto.SHA1 {
			out = append(out, wrap.RSAESOAEPSHA1)
		} else {
			out = append(out, wrap.RSAESOAEPSHA256)
		}
	}
	if kwpErr == nil {
		for _, alg := range append([]wrap.Algorithm(nil), out...) {
			if alg == wrap.RSAESOAEPSHA1 {
				out = append(out, wrap.RSAAESKeyWrapSHA1)
			} else {
				out = append(out, wrap.RSAAESKeyWrapSHA256)
			}
		}
	}
	return out, nil
}

// sessionAESLocked makes a session AES-256 key usable only to wrap and be
// wrapped: generated on the token when value is nil, else imported.
func (t *Token) sessionAESLocked(value []byte) (pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, value == nil),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	}
	if value == nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32))
		h, err := t.ctx.GenerateKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		if err != nil {
			return 0, fmt.Errorf("failed to generate a session AES key on token %q: %w", t.info.Label, err)
		}
		return h, nil
	}
	tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_VALUE, value))
	h, err := t.ctx.CreateObject(t.session, tmpl)
	if err != nil {
		return 0, fmt.Errorf("failed to import a session AES key into token %q: %w", t.info.Label, err)
	}
	return h, nil
}

// wrapOnHost is the host path: the material leaves the token once, wrapped
// with CKM_AES_KEY_WRAP_PAD under a random session key made on the host, is
// unwrapped in host memory, checked against the token's CKA_CHECK_VALUE,
// wrapped for KMS with crypto/rsa and AES-KWP, and zeroed.
func (t *Token) wrapOnHost(k *Key, pub *rsa.PublicKey, alg wrap.Algorithm) ([]byte, error) {
	kcv, err := t.CheckValue(k)
	if err != nil {
		return nil, err
	}
	kek := make([]byte, 32)
	defer clear(kek)
	if _, err := rand.Read(kek); err != nil {
		return nil, fmt.Errorf("failed to make a session key: %w", err)
	}
	t.mu.Lock()
	kekH, err := t.sessionAESLocked(kek)
	if err != nil {
		t.mu.Unlock()
		return nil, err
	}
	sealed, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, kekH, k.handle)
	derr := t.ctx.DestroyObject(t.session, kekH)
	t.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("failed to take key %q out of token %q under a session key (CKM_AES_KEY_WRAP_PAD): %w", k.Label, t.info.Label, err)
	}
	if derr != nil {
		return nil, fmt.Errorf("failed to destroy the session key on token %q: %w", t.info.Label, derr)
	}
	material, err := wrap.KeyUnwrapPad(kek, sealed)
	clear(sealed)
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap key %q in host memory: %w", k.Label, err)
	}
	defer clear(material)
	// The material in host memory must be the token's key: compare check values.
	blk, err := aes.NewCipher(material)
	if err != nil {
		return nil, fmt.Errorf("key %q is not an AES key: %w", k.Label, err)
	}
	var zero [16]byte
	blk.Encrypt(zero[:], zero[:])
	ok := len(kcv) <= len(zero) && subtle.ConstantTimeCompare(zero[:len(kcv)], kcv) == 1
	clear(zero[:])
	if !ok {
		return nil, fmt.Errorf("key %q: the material taken out of token %q does not match its key check value", k.Label, t.info.Label)
	}
	return wrap.EncryptOnHost(rand.Reader, alg, pub, material)
}
