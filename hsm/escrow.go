package hsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// KEKLabel is the CKA_LABEL of an escrow key-encryption key while it lives
// on the token (always as a session object).
const KEKLabel = "keyceremony-escrow-kek"

// ImportKEK imports a 256-bit escrow key-encryption key as a session object
// (CKA_TOKEN false): private, sensitive, not extractable, usable only to wrap
// and unwrap. It zeroes kek before returning, whatever happens, so the host
// copy lives no longer than the import. Destroy the returned key with
// [Token.DestroyKey] when done; closing the token destroys it too.
func (t *Token) ImportKEK(kek []byte) (*Key, error) {
	defer clear(kek)
	if len(kek) != 32 {
		return nil, fmt.Errorf("an escrow key-encryption key must be 32 bytes, got %d", len(kek))
	}
	id := []byte("escrow-kek")
	tmpl := kekTemplate(KEKLabel, id, kek)
	t.mu.Lock()
	defer t.mu.Unlock()
	h, err := t.ctx.CreateObject(t.session, tmpl)
	// The binding copied kek into the attribute; clear that copy too.
	for _, a := range tmpl {
		if a.Type == pkcs11.CKA_VALUE {
			clear(a.Value)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to import the escrow key-encryption key into token %q: %w", t.info.Label, err)
	}
	return &Key{handle: h, Label: KEKLabel, ID: id}, nil
}

// escrowMechLocked returns the mechanism the probe proved to wrap (or, with
// unwrap, to unwrap) RFC 5649, or an error wrapping [ErrMechanism] naming
// what the token's AES key-wrap mechanisms compute instead.
func (t *Token) escrowMechLocked(unwrap bool) (mech, error) {
	caps, err := t.probeLocked()
	if err != nil {
		return mech{}, err
	}
	m, dir := caps.escrowWrap, "wrap"
	if unwrap {
		m, dir = caps.escrowUnwrap, "unwrap"
	}
	if m != nil {
		return *m, nil
	}
	var found []string
	for _, r := range caps.KeyWrap {
		found = append(found, fmt.Sprintf("%s wraps %s and unwraps %s", r.Mechanism, r.Wraps, r.Unwraps))
	}
	what := "it lists no AES key-wrap mechanism"
	if len(found) > 0 {
		what = strings.Join(found, "; ")
	}
	return mech{}, fmt.Errorf("%w: token %q has no mechanism proven to %s RFC 5649 AES key wrap with padding (%s)", ErrMechanism, t.info.Label, dir, what)
}

// EscrowMechanism names the mechanism [Token.WrapKWP] uses: the one the
// probe proved to compute RFC 5649 both ways.
func (t *Token) EscrowMechanism() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := t.escrowMechLocked(false)
	if err != nil {
		return "", err
	}
	return m.String(), nil
}

// RecoveryMechanism names the mechanism [Token.UnwrapKWP] and
// [Token.KWPCheckValue] use: the one the probe proved to unwrap RFC 5649.
// The error wraps [ErrMechanism] when the token has none.
func (t *Token) RecoveryMechanism() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := t.escrowMechLocked(true)
	if err != nil {
		return "", err
	}
	return m.String(), nil
}

// WrapKWP wraps key under kek with AES key wrap with padding (RFC 5649) by
// C_WrapKey, with the mechanism the probe proved computes it
// (CKM_AES_KEY_WRAP_KWP where the token has it): the material never reaches
// host memory. The error wraps [ErrMechanism] when the token has no such
// mechanism.
func (t *Token) WrapKWP(kek, key *Key) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := t.escrowMechLocked(false)
	if err != nil {
		return nil, err
	}
	out, err := t.ctx.WrapKey(t.session, m.pkcs11(), kek.handle, key.handle)
	if err != nil {
		return nil, fmt.Errorf("failed to wrap key %q under the escrow key-encryption key with %s: %w", key.Label, m, err)
	}
	return out, nil
}

// ErrUnwrap is wrapped by [Token.UnwrapKWP] when the token rejects the
// wrapped material: the key-encryption key is not the one it was wrapped
// under, or the wrapped bytes were changed.
var ErrUnwrap = errors.New("wrapped key does not unwrap")

// UnwrapKWP unwraps wrapped (RFC 5649, made by [Token.WrapKWP] on this or
// any other token) under kek into a new AES key with the one attribute set
// keyceremony uses for key material: private, sensitive, extractable, no
// usage. With token true it is a persistent token key (a recovery) and the
// call fails with [ErrKeyExists] if the token already holds a secret key with
// the same label or id; with token false it is a session object.
func (t *Token) UnwrapKWP(kek *Key, wrapped []byte, label string, id []byte, token bool) (*Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if label == "" || len(id) == 0 {
		return nil, errors.New("a key needs a label and an id")
	}
	m, err := t.escrowMechLocked(true)
	if err != nil {
		return nil, err
	}
	if token {
		if err := t.checkFreeLocked(label, id, "recover into another token, or destroy the old key first"); err != nil {
			return nil, err
		}
	}
	h, err := t.unwrap(m, kek.handle, wrapped, fmt.Sprintf("key %q", label), unwrapTemplate(label, id, token))
	if err != nil {
		return nil, err
	}
	return &Key{handle: h, Label: label, ID: append([]byte(nil), id...)}, nil
}

// ImportAESKey creates material as a persistent token key with the one
// attribute set keyceremony uses for key material (private, sensitive,
// extractable, no usage), for a recovery whose target token has no
// mechanism proven to unwrap RFC 5649 (recover --host-unwrap). It zeroes
// material, and fails with [ErrKeyExists] like [Token.UnwrapKWP].
func (t *Token) ImportAESKey(material []byte, label string, id []byte) (*Key, error) {
	defer clear(material)
	if len(material) != 32 {
		return nil, fmt.Errorf("key %q is %d bytes, not AES-256", label, len(material))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkFreeLocked(label, id, "recover into another token, or destroy the old key first"); err != nil {
		return nil, err
	}
	tmpl := append(unwrapTemplate(label, id, true), pkcs11.NewAttribute(pkcs11.CKA_VALUE, material))
	h, err := t.ctx.CreateObject(t.session, tmpl)
	for _, a := range tmpl {
		if a.Type == pkcs11.CKA_VALUE {
			clear(a.Value)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to create key %q on token %q from host memory: %w", label, t.info.Label, err)
	}
	return &Key{handle: h, Label: label, ID: append([]byte(nil), id...)}, nil
}

// unwrapTemplate is secretKeyTemplate without the two attributes an unwrap
// template cannot carry: CKA_VALUE_LEN is implied by the wrapped material
// (some modules refuse it), and SoftHSM 2.6.1 refuses CKA_MODIFIABLE in
// C_UnwrapKey (CKR_ATTRIBUTE_READ_ONLY). Neither weakens the key: sensitive
// and no-usage stay set, and PKCS#11 never lets CKA_SENSITIVE be cleared.
func unwrapTemplate(label string, id []byte, token bool) []*pkcs11.Attribute {
	var tmpl []*pkcs11.Attribute
	for _, a := range secretKeyTemplate(label, id, token) {
		if a.Type != pkcs11.CKA_VALUE_LEN && a.Type != pkcs11.CKA_MODIFIABLE {
			tmpl = append(tmpl, a)
		}
	}
	return tmpl
}

func (t *Token) unwrap(m mech, kek pkcs11.ObjectHandle, wrapped []byte, what string, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	h, err := t.ctx.UnwrapKey(t.session, m.pkcs11(), kek, wrapped, tmpl)
	if err != nil {
		switch {
		case isCode(err, pkcs11.CKR_MECHANISM_INVALID), isCode(err, pkcs11.CKR_MECHANISM_PARAM_INVALID):
			return 0, fmt.Errorf("%w: token %q cannot unwrap with %s: %v", ErrMechanism, t.info.Label, m, err)
		// SoftHSM 2.6.1 reports a failed RFC 5649 integrity check as
		// CKR_GENERAL_ERROR; other modules use the WRAPPED_KEY codes.
		case isCode(err, pkcs11.CKR_WRAPPED_KEY_INVALID), isCode(err, pkcs11.CKR_WRAPPED_KEY_LEN_RANGE), isCode(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID), isCode(err, pkcs11.CKR_GENERAL_ERROR):
			return 0, fmt.Errorf("%w: %s: the escrow key-encryption key is not the one it was wrapped under, or the escrow file was changed (%v)", ErrUnwrap, what, err)
		}
		return 0, fmt.Errorf("failed to unwrap %s into token %q: %w", what, t.info.Label, err)
	}
	return h, nil
}

// reportedCheckValue returns the token's CKA_CHECK_VALUE of h, or nil when
// the token has none (NSS answers CKR_ATTRIBUTE_TYPE_INVALID; SoftHSM 2.6.1
// leaves it empty on unwrapped keys).
func (t *Token) reportedCheckValue(h pkcs11.ObjectHandle) ([]byte, error) {
	attrs, err := t.ctx.GetAttributeValue(t.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CHECK_VALUE, nil)})
	if err != nil {
		if isCode(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID) {
			return nil, nil
		}
		return nil, err
	}
	if len(attrs) == 0 || len(attrs[0].Value) == 0 {
		return nil, nil
	}
	return attrs[0].Value, nil
}

// CheckValue returns the key's check value (KCV): for AES, the first 3 bytes
// of AES-ECB(key, zero block). It is CKA_CHECK_VALUE where the token reports
// one; where it has none, it is computed inside the token
// ([Token.Probe] checks both ways against a known key).
func (t *Token) CheckValue(k *Key) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, err := t.reportedCheckValue(k.handle)
	if err != nil {
		return nil, fmt.Errorf("failed to read the check value of key %q: %w", k.Label, err)
	}
	if v != nil {
		return v, nil
	}
	kcv, err := t.computedCheckValueLocked(k.handle)
	if err != nil {
		return nil, fmt.Errorf("token %q reports no check value for key %q, and computing it failed: %w", t.info.Label, k.Label, err)
	}
	return kcv, nil
}

// computedCheckValueLocked computes h's check value inside the token: h is
// wrapped under a fresh session AES key with a key-wrap mechanism the probe
// proved, and unwrapped as an encrypt-only session copy whose encryption of a
// zero block gives the check value. Both session objects are destroyed.
func (t *Token) computedCheckValueLocked(h pkcs11.ObjectHandle) ([]byte, error) {
	caps := t.caps
	if caps == nil {
		caps = t.probing
	}
	if caps == nil {
		var err error
		if caps, err = t.probeLocked(); err != nil {
			return nil, err
		}
	}
	m, _, ok := caps.transport()
	if !ok {
		return nil, fmt.Errorf("%w: no AES key-wrap mechanism proven to work both ways", ErrMechanism)
	}
	tmp, err := t.ctx.GenerateKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		append(sessionKeyTemplate("keyceremony-kcv-transport", false, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32)))
	if err != nil {
		return nil, fmt.Errorf("failed to make a session key: %w", err)
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, tmp) }()
	wrapped, err := t.ctx.WrapKey(t.session, m.pkcs11(), tmp, h)
	if err != nil {
		return nil, fmt.Errorf("failed to wrap the key under a session key: %w", err)
	}
	return t.unwrapCheckValue(m, tmp, wrapped)
}

// KWPCheckValue returns the key check value (first 3 bytes of AES-ECB of a
// zero block, as in CKA_CHECK_VALUE) of the AES key wrapped (RFC 5649) under
// kek, computed inside the token: the key is unwrapped as a session object
// usable only to encrypt, the zero block encrypted, and the object
// destroyed. Errors wrap [ErrUnwrap] as [Token.UnwrapKWP]'s do.
func (t *Token) KWPCheckValue(kek *Key, wrapped []byte) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := t.escrowMechLocked(true)
	if err != nil {
		return nil, err
	}
	return t.unwrapCheckValue(m, kek.handle, wrapped)
}

func (t *Token) unwrapCheckValue(m mech, kek pkcs11.ObjectHandle, wrapped []byte) ([]byte, error) {
	tmpl := sessionKeyTemplate("keyceremony-escrow-check", false, pkcs11.CKA_ENCRYPT)
	h, err := t.unwrap(m, kek, wrapped, "the wrapped key", tmpl)
	if err != nil {
		return nil, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, h) }()
	if err := t.ctx.EncryptInit(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}, h); err != nil {
		return nil, fmt.Errorf("failed to compute a key check value on token %q: %w", t.info.Label, err)
	}
	out, err := t.ctx.Encrypt(t.session, make([]byte, 16))
	if err != nil {
		return nil, fmt.Errorf("failed to compute a key check value on token %q: %w", t.info.Label, err)
	}
	if len(out) < 3 {
		return nil, fmt.Errorf("token %q returned %d bytes for one AES block", t.info.Label, len(out))
	}
	return out[:3], nil
}
