// Package hsm is keyceremony's only door to a PKCS#11 module.
//
// It alone imports github.com/miekg/pkcs11 and github.com/ThalesIgnite/crypto11.
// A [Token] owns the module's process-wide lifetime (C_Initialize and
// C_Finalize): crypto11 is configured first, and a direct miekg session shares
// its login, as ../shared/SOFTHSM.md prescribes.
//
// # Secrets
//
// Key material leaves the token through this package only wrapped under a
// caller's public key ([Token.WrapOAEP], [Token.WrapForKMS]), except on the
// host path of [Token.WrapForKMS], which the caller must ask for explicitly
// and which zeroes every host buffer it used. PINs are taken as []byte and
// zeroed by the caller; the PKCS#11 bindings need a string copy, which lives
// only as long as the login call.
package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"
)

// DefaultModule is the Debian path of the SoftHSM2 PKCS#11 module.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// ModuleEnv names the environment variable that chooses the PKCS#11 module.
const ModuleEnv = "KEYCEREMONY_PKCS11_MODULE"

// Errors callers act on. Each is wrapped in a one-line message that says what
// to do; test with errors.Is.
var (
	ErrModuleNotFound = errors.New("pkcs11 module not found")
	ErrTokenNotFound  = errors.New("token not found")
	ErrWrongPIN       = errors.New("wrong PIN")
	ErrPINLocked      = errors.New("PIN locked")
	ErrKeyExists      = errors.New("key already exists")
	ErrKeyNotFound    = errors.New("key not found")
	ErrMechanism      = errors.New("mechanism not supported by the token")
)

// Config chooses a module, a token and the PIN to log in with.
type Config struct {
	// Module is the path of the PKCS#11 shared library. Empty means
	// $KEYCEREMONY_PKCS11_MODULE, then [DefaultModule].
	Module string
	// TokenLabel and TokenSerial select the token; at least one is needed.
	TokenLabel  string
	TokenSerial string
	// PIN is the user PIN. Open does not keep it; the caller zeroes it.
	PIN []byte
}

// ModulePath returns the module path Open would load for c.
func (c Config) ModulePath() string {
	if c.Module != "" {
		return c.Module
	}
	if m := os.Getenv(ModuleEnv); m != "" {
		return m
	}
	return DefaultModule
}

// Info describes a token.
type Info struct {
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	Module       string `json:"module"`
}

// Token is an open, logged-in PKCS#11 token. Its methods are safe for
// concurrent use. Close it to log out and finalize the module.
type Token struct {
	mu      sync.Mutex
	ctx     *pkcs11.Ctx
	c11     *crypto11.Context
	slot    uint
	session pkcs11.SessionHandle
	info    Info
}

// Open loads the module, finds the token and logs in as the user.
//
// Errors wrap [ErrModuleNotFound], [ErrTokenNotFound], [ErrWrongPIN] or
// [ErrPINLocked] with a message that says how to fix the problem.
func Open(cfg Config) (*Token, error) {
	path := cfg.ModulePath()
	if cfg.TokenLabel == "" && cfg.TokenSerial == "" {
		return nil, fmt.Errorf("%w: no token label or serial given: set token.label, token.serial or token.uri", ErrTokenNotFound)
	}
	if len(cfg.PIN) == 0 {
		return nil, fmt.Errorf("%w: empty PIN: give the user PIN through the prompt, a PIN file or the PIN environment variable", ErrWrongPIN)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %s does not exist: install the module (Debian: apt-get install softhsm2) or set --module / %s", ErrModuleNotFound, path, ModuleEnv)
	}

	// Preflight with a direct context so that every failure gets a precise
	// message, then finalize and hand the module to crypto11, which must
	// initialize it first (../shared/SOFTHSM.md).
	slot, info, err := preflight(path, cfg)
	if err != nil {
		return nil, err
	}
	slotNum := int(slot)
	pin := string(cfg.PIN)
	c11, err := crypto11.Configure(&crypto11.Config{Path: path, SlotNumber: &slotNum, Pin: pin})
	if err != nil {
		return nil, fmt.Errorf("failed to configure crypto11 on token %q: %w", info.Label, err)
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		_ = c11.Close()
		return nil, fmt.Errorf("%w: %s could not be loaded", ErrModuleNotFound, path)
	}
	if err := ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		_ = c11.Close()
		return nil, fmt.Errorf("failed to initialize %s: %w", path, err)
	}
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		_ = c11.Close()
		return nil, fmt.Errorf("failed to open a session on token %q: %w", info.Label, err)
	}
	if err := ctx.Login(sh, pkcs11.CKU_USER, pin); err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = ctx.CloseSession(sh)
		_ = c11.Close()
		return nil, loginError(err, info.Label)
	}
	return &Token{ctx: ctx, c11: c11, slot: slot, session: sh, info: info}, nil
}

func preflight(path string, cfg Config) (uint, Info, error) {
	ctx := pkcs11.New(path)
	if ctx == nil {
		return 0, Info{}, fmt.Errorf("%w: %s is not a loadable PKCS#11 module: check --module or %s", ErrModuleNotFound, path, ModuleEnv)
	}
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		if isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			return 0, Info{}, errors.New("the PKCS#11 module is already in use in this process: close the other token first")
		}
		return 0, Info{}, fmt.Errorf("failed to initialize %s: %w (for SoftHSM check SOFTHSM2_CONF)", path, err)
	}
	defer func() { _ = ctx.Finalize() }()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, Info{}, fmt.Errorf("failed to list slots of %s: %w", path, err)
	}
	var seen []string
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		label := strings.TrimRight(ti.Label, " \x00")
		serial := strings.TrimRight(ti.SerialNumber, " \x00")
		if label != "" {
			seen = append(seen, fmt.Sprintf("%q", label))
		}
		if cfg.TokenLabel != "" && label != cfg.TokenLabel || cfg.TokenSerial != "" && serial != cfg.TokenSerial {
			continue
		}
		info := Info{
			Label:        label,
			Serial:       serial,
			Manufacturer: strings.TrimRight(ti.ManufacturerID, " \x00"),
			Model:        strings.TrimRight(ti.Model, " \x00"),
			Module:       path,
		}
		if ti.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0 {
			return 0, Info{}, fmt.Errorf("%w: the user PIN of token %q is locked: the security officer must unlock it", ErrPINLocked, label)
		}
		sh, err := ctx.OpenSession(s, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return 0, Info{}, fmt.Errorf("failed to open a session on token %q: %w", label, err)
		}
		err = ctx.Login(sh, pkcs11.CKU_USER, string(cfg.PIN))
		if err == nil {
			_ = ctx.Logout(sh)
		}
		_ = ctx.CloseSession(sh)
		if err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
			return 0, Info{}, loginError(err, label)
		}
		return s, info, nil
	}
	want := "label " + fmt.Sprintf("%q", cfg.TokenLabel)
	if cfg.TokenLabel == "" {
		want = "serial " + fmt.Sprintf("%q", cfg.TokenSerial)
	}
	have := "none"
	if len(seen) > 0 {
		have = strings.Join(seen, ", ")
	}
	return 0, Info{}, fmt.Errorf("%w: no token with %s in %s (tokens present: %s): check token.label/token.serial, or initialize one with softhsm2-util --init-token", ErrTokenNotFound, want, path, have)
}

func loginError(err error, label string) error {
	switch {
	case isCode(err, pkcs11.CKR_PIN_INCORRECT):
		return fmt.Errorf("%w for token %q: nothing was changed; try again with the user PIN", ErrWrongPIN, label)
	case isCode(err, pkcs11.CKR_PIN_LOCKED):
		return fmt.Errorf("%w: the user PIN of token %q is locked: the security officer must unlock it", ErrPINLocked, label)
	case isCode(err, pkcs11.CKR_ARGUMENTS_BAD), isCode(err, pkcs11.CKR_PIN_LEN_RANGE), isCode(err, pkcs11.CKR_PIN_INVALID):
		return fmt.Errorf("%w for token %q: the PIN has an invalid length or characters; try again with the user PIN", ErrWrongPIN, label)
	}
	return fmt.Errorf("failed to log in to token %q: %w", label, err)
}

func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// Info describes the open token.
func (t *Token) Info() Info { return t.info }

// Close logs out and finalizes the module. The Token is unusable afterwards.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx == nil {
		return nil
	}
	_ = t.ctx.CloseSession(t.session)
	err := t.c11.Close()
	t.ctx.Destroy()
	t.ctx = nil
	if err != nil {
		return fmt.Errorf("failed to close token %q: %w", t.info.Label, err)
	}
	return nil
}

// Key is a secret key object on the token.
type Key struct {
	handle pkcs11.ObjectHandle
	// Label is the key's CKA_LABEL.
	Label string
	// ID is the key's CKA_ID.
	ID []byte
}

// GenerateAESKey generates a 256-bit AES key as a persistent token object,
// with every attribute set explicitly: private, sensitive, extractable (only
// so that it can be wrapped for KMS and escrow), and usable for nothing else
// (no encrypt, decrypt, sign, verify, wrap, unwrap or derive).
//
// It returns an error wrapping [ErrKeyExists] if a secret key with the same
// label or ID is already on the token: a ceremony never reuses a key.
func (t *Token) GenerateAESKey(label string, id []byte) (*Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if label == "" || len(id) == 0 {
		return nil, errors.New("a key needs a label and an id")
	}
	if err := t.checkFreeLocked(label, id, "choose a new label and id, or destroy the old key first"); err != nil {
		return nil, err
	}
	tmpl := secretKeyTemplate(label, id, true)
	h, err := t.ctx.GenerateKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
	if err != nil {
		return nil, fmt.Errorf("failed to generate AES-256 key %q on token %q: %w", label, t.info.Label, err)
	}
	return &Key{handle: h, Label: label, ID: append([]byte(nil), id...)}, nil
}

// checkFreeLocked returns an error wrapping [ErrKeyExists], ending with
// fix, when a secret key with the label or the id is on the token. t.mu is
// held.
func (t *Token) checkFreeLocked(label string, id []byte, fix string) error {
	for _, tmpl := range [][]*pkcs11.Attribute{
		{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)},
		{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id)},
	} {
		hs, err := t.find(tmpl, 1)
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			return fmt.Errorf("%w: token %q already holds a secret key with label %q or id %x: %s", ErrKeyExists, t.info.Label, label, id, fix)
		}
	}
	return nil
}

// secretKeyTemplate is the one attribute set for key material keyceremony
// keeps: nothing is left to the module's (often permissive) defaults.
func secretKeyTemplate(label string, id []byte, token bool) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
}

// FindAESKey finds the secret key with the given label and, when id is not
// empty, CKA_ID. It returns an error wrapping [ErrKeyNotFound] when there is
// none and an error when there are several.
func (t *Token) FindAESKey(label string, id []byte) (*Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if len(id) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	hs, err := t.find(tmpl, 2)
	if err != nil {
		return nil, err
	}
	switch len(hs) {
	case 0:
		return nil, fmt.Errorf("%w: no AES key labelled %q on token %q", ErrKeyNotFound, label, t.info.Label)
	case 1:
	default:
		return nil, fmt.Errorf("token %q holds several AES keys labelled %q: give the key id too", t.info.Label, label)
	}
	attrs, err := t.ctx.GetAttributeValue(t.session, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
	if err != nil {
		return nil, fmt.Errorf("failed to read the id of key %q: %w", label, err)
	}
	return &Key{handle: hs[0], Label: label, ID: attrs[0].Value}, nil
}

func (t *Token) find(tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := t.ctx.FindObjectsInit(t.session, tmpl); err != nil {
		return nil, fmt.Errorf("failed to search token %q: %w", t.info.Label, err)
	}
	hs, _, err := t.ctx.FindObjects(t.session, max)
	if ferr := t.ctx.FindObjectsFinal(t.session); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("failed to search token %q: %w", t.info.Label, err)
	}
	return hs, nil
}

// CheckValue returns the key's check value (KCV) as the token reports it in
// CKA_CHECK_VALUE: for AES, the first 3 bytes of AES-ECB(key, zero block).
func (t *Token) CheckValue(k *Key) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	attrs, err := t.ctx.GetAttributeValue(t.session, k.handle, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CHECK_VALUE, nil)})
	if err != nil {
		return nil, fmt.Errorf("failed to read the check value of key %q: %w", k.Label, err)
	}
	if len(attrs) == 0 || len(attrs[0].Value) == 0 {
		// SoftHSM 2.6.1 leaves CKA_CHECK_VALUE empty on keys made by
		// C_UnwrapKey (recovered from escrow): compute it on the token.
		kcv, err := t.derivedCheckValue(k)
		if err != nil {
			return nil, fmt.Errorf("token %q reports no check value for key %q, and computing it failed: %w", t.info.Label, k.Label, err)
		}
		return kcv, nil
	}
	return attrs[0].Value, nil
}

// WrapOAEP wraps k under pub with RSA-OAEP (hash and MGF1 both h, empty
// label) by C_WrapKey, so the material is never in host memory. pub is
// imported as a session object that is destroyed afterwards.
//
// When the token refuses the mechanism or its parameters (SoftHSM 2.6.1
// supports only SHA-1), the error wraps [ErrMechanism].
func (t *Token) WrapOAEP(k *Key, pub *rsa.PublicKey, h crypto.Hash) ([]byte, error) {
	var hashMech, mgf uint
	switch h {
	case crypto.SHA1:
		hashMech, mgf = pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1
	case crypto.SHA256:
		hashMech, mgf = pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256
	default:
		return nil, fmt.Errorf("unsupported OAEP hash %v", h)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pubH, err := t.importRSAPublic(pub)
	if err != nil {
		return nil, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, pubH) }()
	mech := pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(hashMech, mgf, pkcs11.CKZ_DATA_SPECIFIED, nil))
	out, err := t.ctx.WrapKey(t.session, []*pkcs11.Mechanism{mech}, pubH, k.handle)
	if err != nil {
		if isCode(err, pkcs11.CKR_MECHANISM_INVALID) || isCode(err, pkcs11.CKR_ARGUMENTS_BAD) || isCode(err, pkcs11.CKR_MECHANISM_PARAM_INVALID) {
			return nil, fmt.Errorf("%w: token %q cannot wrap with RSA-OAEP-%s: %v", ErrMechanism, t.info.Label, h, err)
		}
		return nil, fmt.Errorf("failed to wrap key %q with RSA-OAEP-%s: %w", k.Label, h, err)
	}
	return out, nil
}

func (t *Token) importRSAPublic(pub *rsa.PublicKey) (pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, pub.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, bigEndian(pub.E)),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "keyceremony-kms-wrapping-key"),
	}
	h, err := t.ctx.CreateObject(t.session, tmpl)
	if err != nil {
		return 0, fmt.Errorf("failed to import the KMS wrapping public key into token %q: %w", t.info.Label, err)
	}
	return h, nil
}

func bigEndian(e int) []byte {
	var b []byte
	for ; e > 0; e >>= 8 {
		b = append([]byte{byte(e)}, b...)
	}
	return b
}

// DestroyKey destroys k on the token. It cannot be undone.
func (t *Token) DestroyKey(k *Key) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ctx.DestroyObject(t.session, k.handle); err != nil {
		return fmt.Errorf("failed to destroy key %q on token %q: %w", k.Label, t.info.Label, err)
	}
	return nil
}

// Signer returns the ECDSA P-256 key pair labelled label as a crypto.Signer
// backed by the token (through crypto11). When there is none and create is
// true, it generates one: private, sensitive, not extractable, sign only.
// Its Public() is an *ecdsa.PublicKey read once from the token.
func (t *Token) Signer(label string, create bool) (crypto.Signer, error) {
	s, err := t.c11.FindKeyPair(nil, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("failed to look up signing key %q on token %q: %w", label, t.info.Label, err)
	}
	if s == nil {
		if !create {
			return nil, fmt.Errorf("%w: no signing key labelled %q on token %q", ErrKeyNotFound, label, t.info.Label)
		}
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
		pubAttrs, _ := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
		privAttrs, _ := crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
		_ = pubAttrs.Set(crypto11.CkaPrivate, false)
		_ = pubAttrs.Set(crypto11.CkaEncrypt, false)
		_ = pubAttrs.Set(crypto11.CkaWrap, false)
		_ = pubAttrs.Set(crypto11.CkaDerive, false)
		_ = privAttrs.Set(crypto11.CkaPrivate, true)
		_ = privAttrs.Set(crypto11.CkaDecrypt, false)
		_ = privAttrs.Set(crypto11.CkaUnwrap, false)
		_ = privAttrs.Set(crypto11.CkaDerive, false)
		s, err = t.c11.GenerateECDSAKeyPairWithAttributes(pubAttrs, privAttrs, elliptic.P256())
		if err != nil {
			return nil, fmt.Errorf("failed to generate signing key %q on token %q: %w", label, t.info.Label, err)
		}
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("signing key %q on token %q is not ECDSA P-256", label, t.info.Label)
	}
	return s, nil
}

// PublicKeyPEM encodes an ECDSA or RSA public key as a PEM "PUBLIC KEY" block.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
