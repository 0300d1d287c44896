package hsm

import (
	"crypto"
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
	// CKM_AES_KEY_WRAP_KWP (RFC 5649) + CKM_RSA_PKCS_OAEP SHA-1".
	Method string
	// HostReason, set only when InHSM is false, says why the token could not
	// wrap with the algorithm (the mechanism it refused and the CKR_ code).
	HostReason string
}

// WrapForKMS wraps k under the KMS wrapping public key pub with alg, inside
// the token wherever the probe ([Token.Probe]) proved the token can:
//
//   - RSAES_OAEP_*: C_WrapKey with CKM_RSA_PKCS_OAEP (hash and MGF1 per alg)
//     under pub, imported as a session public-key object.
//   - RSA_AES_KEY_WRAP_*: CKM_RSA_AES_KEY_WRAP when the token lists it and
//     accepts the call; otherwise composed on the token: an ephemeral
//     session AES-256 key wraps k with the mechanism proven to compute RFC
//     5649 (never an unproven CKM_AES_KEY_WRAP_PAD), pub wraps the
//     ephemeral key with CKM_RSA_PKCS_OAEP, and the ephemeral key is
//     destroyed.
//
// When the token cannot and allowHost is false, the error wraps
// [ErrMechanism] and names the algorithms the token can do inside the HSM.
// When allowHost is true, the material leaves the token once, wrapped under
// a fresh session key with a proven AES key-wrap mechanism, is unwrapped in
// host memory, checked against the key's check value, wrapped with
// [wrap.EncryptOnHost], and every host buffer holding it is zeroed; the
// result says so in InHSM and HostReason.
func (t *Token) WrapForKMS(k *Key, pub *rsa.PublicKey, alg wrap.Algorithm, allowHost bool) (*Wrapped, error) {
	if _, err := wrap.ParseAlgorithm(string(alg)); err != nil {
		return nil, err
	}
	caps, err := t.Probe()
	if err != nil {
		return nil, err
	}
	var w *Wrapped
	switch {
	case testOnlyForceHost:
		err = fmt.Errorf("%w: in-HSM wrapping switched off by a test", ErrMechanism)
	case !caps.KMSInHSM(alg):
		err = fmt.Errorf("%w: %s", ErrMechanism, caps.kmsReason(alg))
	default:
		t.mu.Lock()
		var pubH pkcs11.ObjectHandle
		if pubH, err = t.importRSAPublic(pub); err == nil {
			if alg.KeyWrap() {
				w, err = t.wrapRSAAESLocked(k.handle, k.Label, pubH, alg.Hash())
			} else {
				w, err = t.wrapOAEPLocked(k.handle, k.Label, pubH, alg.Hash())
			}
			_ = t.ctx.DestroyObject(t.session, pubH)
		}
		t.mu.Unlock()
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
		names := make([]string, 0, len(caps.KMS))
		for _, r := range caps.KMS {
			if r.InHSM {
				names = append(names, string(r.Algorithm))
			}
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

// WrapOAEP wraps k under pub with RSA-OAEP (hash and MGF1 both h, empty
// label) by C_WrapKey, so the material is never in host memory. pub is
// imported as a session object that is destroyed afterwards.
//
// When the token refuses the mechanism or its parameters (SoftHSM 2.6.1
// supports only SHA-1), the error wraps [ErrMechanism].
func (t *Token) WrapOAEP(k *Key, pub *rsa.PublicKey, h crypto.Hash) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pubH, err := t.importRSAPublic(pub)
	if err != nil {
		return nil, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, pubH) }()
	w, err := t.wrapOAEPLocked(k.handle, k.Label, pubH, h)
	if err != nil {
		return nil, err
	}
	return w.Ciphertext, nil
}

func (t *Token) wrapOAEPLocked(key pkcs11.ObjectHandle, label string, pubH pkcs11.ObjectHandle, h crypto.Hash) (*Wrapped, error) {
	mech, err := oaepMechanism(h)
	if err != nil {
		return nil, err
	}
	if err := t.checkWrapLocked(pkcs11.CKM_RSA_PKCS_OAEP); err != nil {
		return nil, err
	}
	out, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{mech}, pubH, key)
	if err != nil {
		if refused(err) {
			return nil, fmt.Errorf("%w: token %q cannot wrap with RSA-OAEP-%s: %v", ErrMechanism, t.info.Label, hashName(h), err)
		}
		return nil, wrapFailed(err, label, "RSA-OAEP-"+hashName(h))
	}
	return &Wrapped{Ciphertext: out, InHSM: true, Method: "C_WrapKey CKM_RSA_PKCS_OAEP " + hashName(h)}, nil
}

// wrapRSAAESLocked makes an RSA_AES_KEY_WRAP_* wrap inside the token. The
// composed path needs the RFC 5649 mechanism the probe proved: it uses
// t.caps, which the probe fills in (its key-wrap part runs first).
func (t *Token) wrapRSAAESLocked(key pkcs11.ObjectHandle, label string, pubH pkcs11.ObjectHandle, h crypto.Hash) (*Wrapped, error) {
	oaep, err := oaepMechanism(h)
	if err != nil {
		return nil, err
	}
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
		out, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_AES_KEY_WRAP, params)}, pubH, key)
		if err == nil {
			return &Wrapped{Ciphertext: out, InHSM: true, Method: "C_WrapKey CKM_RSA_AES_KEY_WRAP " + hashName(h)}, nil
		}
		if !refused(err) {
			return nil, wrapFailed(err, label, "CKM_RSA_AES_KEY_WRAP")
		}
		direct = fmt.Sprintf("CKM_RSA_AES_KEY_WRAP refused (%v), ", err)
	}
	var kwp *mech
	if t.caps != nil {
		kwp = t.caps.escrowWrap
	} else if t.probing != nil {
		kwp = t.probing.escrowWrap
	}
	if kwp == nil {
		return nil, fmt.Errorf("%w: %stoken %q has no AES key-wrap mechanism proven to compute RFC 5649", ErrMechanism, direct, t.info.Label)
	}
	if err := t.checkWrapLocked(pkcs11.CKM_RSA_PKCS_OAEP); err != nil {
		return nil, fmt.Errorf("%s%w", direct, err)
	}
	// Compose it: an ephemeral session AES-256 key, never on the token's
	// storage, usable only to wrap, destroyed before returning.
	eph, err := t.sessionAESLocked(nil)
	if err != nil {
		if refused(err) {
			return nil, fmt.Errorf("%w: %stoken %q cannot make an ephemeral AES-256 key: %v", ErrMechanism, direct, t.info.Label, err)
		}
		return nil, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, eph) }()
	// A nil parameter: SoftHSM refuses an explicit IV (../shared/SOFTHSM.md).
	tail, err := t.ctx.WrapKey(t.session, kwp.pkcs11(), eph, key)
	if err != nil {
		if refused(err) {
			return nil, fmt.Errorf("%w: %stoken %q cannot wrap with %s: %v", ErrMechanism, direct, t.info.Label, kwp, err)
		}
		return nil, wrapFailed(err, label, kwp.String())
	}
	head, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{oaep}, pubH, eph)
	if err != nil {
		if refused(err) {
			return nil, fmt.Errorf("%w: %stoken %q cannot wrap with CKM_RSA_PKCS_OAEP %s: %v", ErrMechanism, direct, t.info.Label, hashName(h), err)
		}
		return nil, fmt.Errorf("failed to wrap the ephemeral AES key with CKM_RSA_PKCS_OAEP: %w", err)
	}
	method := "composed on token: " + kwp.String() + " (RFC 5649) + CKM_RSA_PKCS_OAEP " + hashName(h)
	if direct != "" {
		method += " (" + strings.TrimSuffix(direct, ", ") + ")"
	}
	return &Wrapped{Ciphertext: append(head, tail...), InHSM: true, Method: method}, nil
}

// InHSMAlgorithms lists the KMS wrapping algorithms the probe proved the
// token does inside the HSM ([Capabilities.KMS]). pub is not used: the
// probe decrypts its own throw-away wraps on the host.
func (t *Token) InHSMAlgorithms(_ *rsa.PublicKey) ([]wrap.Algorithm, error) {
	caps, err := t.Probe()
	if err != nil {
		return nil, err
	}
	var out []wrap.Algorithm
	for _, r := range caps.KMS {
		if r.InHSM {
			out = append(out, r.Algorithm)
		}
	}
	return out, nil
}

// sessionAESLocked makes a session AES-256 key usable only to wrap and be
// wrapped: generated on the token when value is nil, else imported.
func (t *Token) sessionAESLocked(value []byte) (pkcs11.ObjectHandle, error) {
	tmpl := sessionKeyTemplate("", value == nil, pkcs11.CKA_WRAP)
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
	for _, a := range tmpl {
		if a.Type == pkcs11.CKA_VALUE {
			clear(a.Value)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("failed to import a session AES key into token %q: %w", t.info.Label, err)
	}
	return h, nil
}

// takeOut is the one way key material reaches host memory: k is wrapped
// under a random session key with a key-wrap mechanism the probe proved, and
// unwrapped on the host; the material is checked against k's check value.
// The caller zeroes the result.
func (t *Token) takeOut(k *Key) ([]byte, error) {
	caps, err := t.Probe()
	if err != nil {
		return nil, err
	}
	m, scheme, ok := caps.transport()
	if !ok {
		return nil, fmt.Errorf("%w: token %q has no AES key-wrap mechanism that the probe proved, to take key %q out", ErrMechanism, t.info.Label, k.Label)
	}
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
	kekH, err := t.sessionAESLocked(append([]byte(nil), kek...))
	if err != nil {
		t.mu.Unlock()
		return nil, err
	}
	sealed, err := t.ctx.WrapKey(t.session, m.pkcs11(), kekH, k.handle)
	derr := t.ctx.DestroyObject(t.session, kekH)
	t.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("failed to take key %q out of token %q under a session key (%s): %w", k.Label, t.info.Label, m, err)
	}
	if derr != nil {
		return nil, fmt.Errorf("failed to destroy the session key on token %q: %w", t.info.Label, derr)
	}
	material, err := hostUnwrap(scheme, kek, sealed)
	clear(sealed)
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap key %q in host memory: %w", k.Label, err)
	}
	if len(material) != 32 {
		clear(material)
		return nil, fmt.Errorf("key %q is not an AES-256 key", k.Label)
	}
	got := checkValue(material)
	if subtle.ConstantTimeCompare(got, kcv) != 1 {
		clear(material)
		return nil, fmt.Errorf("key %q: the material taken out of token %q does not match its key check value", k.Label, t.info.Label)
	}
	return material, nil
}

// wrapOnHost is the host path of WrapForKMS.
func (t *Token) wrapOnHost(k *Key, pub *rsa.PublicKey, alg wrap.Algorithm) ([]byte, error) {
	material, err := t.takeOut(k)
	if err != nil {
		return nil, err
	}
	defer clear(material)
	return wrap.EncryptOnHost(rand.Reader, alg, pub, material)
}

// wrapFailed explains a failed C_WrapKey of a key; CKR_KEY_UNEXTRACTABLE
// gets what it means.
func wrapFailed(err error, label, how string) error {
	if isCode(err, pkcs11.CKR_KEY_UNEXTRACTABLE) {
		return fmt.Errorf("failed to wrap key %q with %s: %w: the key is not extractable (CKA_EXTRACTABLE false) and can never leave the token, not even wrapped; a key for KMS must be generated extractable, as keyceremony's ceremony does", label, how, err)
	}
	return fmt.Errorf("failed to wrap key %q with %s: %w", label, how, err)
}
