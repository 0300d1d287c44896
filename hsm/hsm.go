// Package hsm is keyceremony's only door to a PKCS#11 module.
//
// It alone imports github.com/miekg/pkcs11. A [Token] owns the module's
// process-wide lifetime (C_Initialize with the module's initialisation
// parameters, and C_Finalize); the transcript signer is this package's own
// crypto.Signer over C_Sign, so no second library initialises the module.
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
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// DefaultModule is the Debian path of the SoftHSM2 PKCS#11 module, loaded
// only when neither a config, a flag, a URI's module-path nor
// $KEYCEREMONY_PKCS11_MODULE names one; errors then say it was the default.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// ModuleEnv names the environment variable that chooses the PKCS#11 module.
const ModuleEnv = "KEYCEREMONY_PKCS11_MODULE"

// InitArgsEnv names the environment variable that gives the module its
// initialisation parameters when the config and flags give none.
const InitArgsEnv = "KEYCEREMONY_PKCS11_INIT_ARGS"

// Errors callers act on. Each is wrapped in a one-line message that says what
// to do; test with errors.Is.
var (
	ErrModuleNotFound = errors.New("pkcs11 module not found")
	ErrTokenNotFound  = errors.New("token not found")
	ErrAmbiguous      = errors.New("the selection matches several")
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
	// InitArgs are the module's initialisation parameters, passed as
	// C_Initialize's pReserved (NSS softokn needs them: "configdir='sql:DIR'
	// certPrefix='' keyPrefix='' secmod='' flags=optimizeSpace"). Empty
	// means $KEYCEREMONY_PKCS11_INIT_ARGS, then none.
	InitArgs string
	// TokenLabel and TokenSerial select the token; at least one of them,
	// or URI's token or serial, is needed.
	TokenLabel  string
	TokenSerial string
	// URI, when set, narrows the token by every token, slot and library
	// attribute it has (RFC 7512); its object attributes are for the
	// caller that chooses a key.
	URI *URI
	// PIN is the user PIN. Open does not keep it; the caller zeroes it.
	PIN []byte
	// SealKey, when set, is the only kind of transcript signing key
	// [Token.Signer] makes or accepts; empty lets the probe choose.
	SealKey SealKey
	// ProbeAll makes [Token.Probe] try every kind of signing key, not only
	// until one works (keyceremony probe reports them all).
	ProbeAll bool
	// KeyLabel and KeyID, when set, are the secret key the caller will
	// choose ([Token.FindKey]): Open refuses, before it logs in, a
	// selection that matches several keys the token shows without a login
	// (objects with CKA_PRIVATE false). Private keys are seen only after
	// the login; FindKey refuses those, before anything changes.
	KeyLabel string
	KeyID    []byte
}

// ModulePath returns the module path Open would load for c.
func (c Config) ModulePath() string {
	p, _ := c.modulePath()
	return p
}

// modulePath returns the module and, when it is the default, why.
func (c Config) modulePath() (string, string) {
	switch {
	case c.Module != "":
		return c.Module, ""
	case c.URI != nil && c.URI.ModulePath != "":
		return c.URI.ModulePath, ""
	}
	if m := os.Getenv(ModuleEnv); m != "" {
		return m, ""
	}
	return DefaultModule, " (the default: no token.module, --module, module-path or $" + ModuleEnv + " named one)"
}

func (c Config) initArgs() string {
	if c.InitArgs != "" {
		return c.InitArgs
	}
	return os.Getenv(InitArgsEnv)
}

// Info describes a token.
type Info struct {
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	Module       string `json:"module"`
	// SlotID is the slot the token is in (not stable across restarts on
	// every module: select by label or serial).
	SlotID uint `json:"slot_id"`
	// Library is the module's own description (C_GetInfo).
	Library string `json:"library"`
}

// Token is an open, logged-in PKCS#11 token. Its methods are safe for
// concurrent use. Close it to log out and finalize the module.
type Token struct {
	mu      sync.Mutex
	ctx     *pkcs11.Ctx
	args    *initArgs
	slot    uint
	session pkcs11.SessionHandle
	info    Info
	// caps is the probe's result, made once (see [Token.Probe]); probing
	// is the result being made while the probe runs.
	caps, probing *Capabilities
	// seal and probeAll are Config.SealKey and Config.ProbeAll.
	seal     SealKey
	probeAll bool
}

// Open loads the module, finds the one token the selection matches and logs
// in as the user. The token is chosen before any login: a selection that
// matches several tokens is refused, listing them, without a PIN try.
//
// Errors wrap [ErrModuleNotFound], [ErrTokenNotFound], [ErrAmbiguous],
// [ErrWrongPIN] or [ErrPINLocked] with a message that says how to fix it.
func Open(cfg Config) (*Token, error) {
	path, dflt := cfg.modulePath()
	sel, err := cfg.selector()
	if err != nil {
		return nil, err
	}
	if len(cfg.PIN) == 0 {
		return nil, fmt.Errorf("%w: empty PIN: give the user PIN through the prompt, a PIN file or the PIN environment variable", ErrWrongPIN)
	}
	if _, err := os.Stat(path); err != nil {
		hint := "install the module's package or set token.module / --module / $" + ModuleEnv
		if path == DefaultModule {
			hint = "install SoftHSM2 (Debian: apt-get install softhsm2), or name your HSM's module with token.module / --module / $" + ModuleEnv
		}
		return nil, fmt.Errorf("%w: %s%s does not exist: %s", ErrModuleNotFound, path, dflt, hint)
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("%w: %s is not a loadable PKCS#11 module: check --module or %s", ErrModuleNotFound, path, ModuleEnv)
	}
	args := newInitArgs(cfg.initArgs())
	t := &Token{ctx: ctx, args: args, seal: cfg.SealKey, probeAll: cfg.ProbeAll}
	if err := ctx.Initialize(args.options()...); err != nil {
		ctx.Destroy()
		args.free()
		if isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			return nil, errors.New("the PKCS#11 module is already in use in this process: close the other token first")
		}
		hint := "check the module's own configuration"
		if args == nil {
			hint += "; a module that needs initialisation parameters (NSS softokn: configdir=…) gets them from token.init_args or $" + InitArgsEnv
		}
		return nil, fmt.Errorf("failed to initialize %s: %w (%s)", path, err, hint)
	}
	fail := func(err error) (*Token, error) {
		t.finalize()
		return nil, err
	}
	slot, info, err := t.choose(path, dflt, sel)
	if err != nil {
		return fail(err)
	}
	t.slot, t.info = slot, info
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fail(fmt.Errorf("failed to open a session on token %q: %w", info.Label, err))
	}
	t.session = sh
	if cfg.KeyLabel != "" || len(cfg.KeyID) > 0 {
		keys, what, err := t.findKeysLocked(cfg.KeyLabel, cfg.KeyID)
		if err != nil {
			return fail(err)
		}
		if len(keys) > 1 {
			return fail(t.ambiguousKeys(keys, what, " (seen before login; nothing was logged in to)"))
		}
	}
	if err := ctx.Login(sh, pkcs11.CKU_USER, string(cfg.PIN)); err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return fail(loginError(err, info.Label))
	}
	return t, nil
}

// finalize closes every session and unloads the module.
func (t *Token) finalize() {
	_ = t.ctx.CloseAllSessions(t.slot)
	_ = t.ctx.Finalize()
	t.ctx.Destroy()
	t.args.free()
	t.ctx = nil
}

// choose finds the one slot whose token the selection matches.
func (t *Token) choose(path, dflt string, sel *selection) (uint, Info, error) {
	lib, err := t.ctx.GetInfo()
	if err != nil {
		return 0, Info{}, fmt.Errorf("failed to read the module information of %s: %w", path, err)
	}
	slots, err := t.ctx.GetSlotList(true)
	if err != nil {
		return 0, Info{}, fmt.Errorf("failed to list slots of %s: %w", path, err)
	}
	library := trim(lib.ManufacturerID) + " " + trim(lib.LibraryDescription)
	var seen, match []string
	var found []uint
	var infos []Info
	for _, s := range slots {
		ti, err := t.ctx.GetTokenInfo(s)
		if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		si, err := t.ctx.GetSlotInfo(s)
		if err != nil {
			continue
		}
		info := Info{Label: trim(ti.Label), Serial: trim(ti.SerialNumber), Manufacturer: trim(ti.ManufacturerID),
			Model: trim(ti.Model), Module: path, SlotID: s, Library: library}
		desc := fmt.Sprintf("%q (serial %s, slot %d, %s %s)", info.Label, info.Serial, s, info.Manufacturer, info.Model)
		seen = append(seen, desc)
		if !sel.matches(lib, si, ti, s) {
			continue
		}
		if ti.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0 {
			return 0, Info{}, fmt.Errorf("%w: the user PIN of token %q is locked: the security officer must unlock it", ErrPINLocked, info.Label)
		}
		found, infos, match = append(found, s), append(infos, info), append(match, desc)
	}
	switch len(found) {
	case 1:
		return found[0], infos[0], nil
	case 0:
		have := "none"
		if len(seen) > 0 {
			have = strings.Join(seen, ", ")
		}
		return 0, Info{}, fmt.Errorf("%w: no token with %s in %s%s (tokens present: %s): check the token selection and the module, or initialize a token with the module's own tool", ErrTokenNotFound, sel, path, dflt, have)
	}
	return 0, Info{}, fmt.Errorf("%w: %d tokens match %s in %s: %s; nothing was logged in to: select one by serial (token.serial, serial=) or slot-id", ErrAmbiguous, len(found), sel, path, strings.Join(match, ", "))
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

// ulong reads a CK_ULONG attribute value (native byte order: little-endian
// on the platforms keyceremony runs on).
func ulong(b []byte) uint64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func trim(s string) string { return strings.TrimRight(s, " \x00") }

// Info describes the open token.
func (t *Token) Info() Info { return t.info }

// Close logs out and finalizes the module. The Token is unusable afterwards.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx == nil {
		return nil
	}
	_ = t.ctx.Logout(t.session)
	t.finalize()
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

// GeneratedHere reports whether k was generated on the token (CKA_LOCAL:
// made by C_GenerateKey, not created or unwrapped). A key SoftHSM was
// generating when the process died can be on the token with its label
// and id but without its value: SoftHSM writes the template first and the
// value, CKA_LOCAL and the check value in a second write.
func (t *Token) GeneratedHere(k *Key) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	attrs, err := t.ctx.GetAttributeValue(t.session, k.handle, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LOCAL, nil)})
	if err != nil {
		return false, fmt.Errorf("failed to read CKA_LOCAL of key %q: %w", k.Label, err)
	}
	return len(attrs[0].Value) > 0 && attrs[0].Value[0] != 0, nil
}

// HoldsNoValue reports whether k holds no key material, as far as the
// token can show it ([Token.emptyLocked]). false, with or without an error,
// means it may hold some.
func (t *Token) HoldsNoValue(k *Key) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.emptyLocked(k)
}

// emptyLocked reports whether k holds no value: its CKA_VALUE_LEN reads 0
// and it is extractable yet cannot be wrapped to anything (a wrap under a
// session key is how its size is measured). CKA_VALUE_LEN alone is not
// proof: SoftHSM 2.6.1 reports 0 for keys it unwrapped, which hold
// material. A key that is not extractable cannot be shown empty.
func (t *Token) emptyLocked(k *Key) (bool, error) {
	attrs, err := t.ctx.GetAttributeValue(t.session, k.handle, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
	})
	if err != nil {
		return false, fmt.Errorf("failed to read CKA_VALUE_LEN of key %q: %w", k.Label, err)
	}
	if len(attrs[0].Value) == 0 || ulong(attrs[0].Value) != 0 || len(attrs[1].Value) == 0 || attrs[1].Value[0] == 0 {
		return false, nil
	}
	bits, err := t.wrappedBitsLocked(k)
	return err != nil || bits <= 0, nil
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

// PublicKeyPEM encodes an ECDSA or RSA public key as a PEM "PUBLIC KEY" block.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
