package hsm

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/keyceremony/keyceremony/wrap"
)

// CKMAESKeyWrapKWP is PKCS#11 3.0's CKM_AES_KEY_WRAP_KWP: AES key wrap with
// padding as RFC 5649 defines it (miekg/pkcs11 v1.1.2 lacks the constant).
const CKMAESKeyWrapKWP = 0x210B

// Scheme is what an AES key-wrap mechanism computes, named by its standard.
type Scheme string

// The AES key-wrap schemes the probe tells apart.
const (
	// RFC5649 is AES key wrap with padding (RFC 5649), what the escrow
	// blob names: CKM_AES_KEY_WRAP_KWP, and CKM_AES_KEY_WRAP_PAD on SoftHSM.
	RFC5649 Scheme = "RFC 5649"
	// RFC3394 is AES key wrap without padding (RFC 3394).
	RFC3394 Scheme = "RFC 3394"
	// PKCS7RFC3394 is the key padded to 8 bytes as PKCS#7 says, then RFC
	// 3394: what NSS computes for CKM_AES_KEY_WRAP_PAD.
	PKCS7RFC3394 Scheme = "PKCS#7 + RFC 3394"
)

// hostWrap computes scheme on the host, for known-answer tests and the host
// paths.
func hostWrap(s Scheme, kek, key []byte) ([]byte, error) {
	switch s {
	case RFC5649:
		return wrap.KeyWrapPad(kek, key)
	case RFC3394:
		return wrap.KeyWrap(kek, key)
	case PKCS7RFC3394:
		n := 8 - len(key)%8
		return wrap.KeyWrap(kek, append(append([]byte(nil), key...), bytes.Repeat([]byte{byte(n)}, n)...))
	}
	return nil, fmt.Errorf("unknown key wrap scheme %q", s)
}

// hostUnwrap undoes hostWrap.
func hostUnwrap(s Scheme, kek, c []byte) ([]byte, error) {
	switch s {
	case RFC5649:
		return wrap.KeyUnwrapPad(kek, c)
	case RFC3394:
		return wrap.KeyUnwrap(kek, c)
	case PKCS7RFC3394:
		p, err := wrap.KeyUnwrap(kek, c)
		if err != nil {
			return nil, err
		}
		n := 0
		if len(p) > 0 {
			n = int(p[len(p)-1])
		}
		if n < 1 || n > 8 || n > len(p) || !bytes.Equal(p[len(p)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
			clear(p)
			return nil, errors.New("bad PKCS#7 padding")
		}
		out := append([]byte(nil), p[:len(p)-n]...)
		clear(p)
		return out, nil
	}
	return nil, fmt.Errorf("unknown key wrap scheme %q", s)
}

// rfc5649IV32 is RFC 5649's alternative initial value for a 32-byte key:
// CKM_AES_KEY_WRAP (RFC 3394) with it as the IV computes RFC 5649 for
// AES-256 keys exactly, on modules that take an IV parameter (NSS does).
var rfc5649IV32 = []byte{0xA6, 0x59, 0x59, 0xA6, 0, 0, 0, 32}

// mech is a key-wrap mechanism with its parameter.
type mech struct {
	id    uint
	param []byte
}

func (m mech) pkcs11() []*pkcs11.Mechanism {
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(m.id, m.param)}
}

// String names the mechanism for people and transcripts.
func (m mech) String() string {
	if m.param != nil {
		return fmt.Sprintf("%s with IV %X", MechanismName(m.id), m.param)
	}
	return MechanismName(m.id)
}

// KeyWrapResult is what one AES key-wrap mechanism of the token computes,
// found by a known-answer test with a 32-byte key.
type KeyWrapResult struct {
	// Mechanism is the CKM_ name (and parameter).
	Mechanism string `json:"mechanism"`
	// Wraps is the scheme C_WrapKey's output equals, or why none.
	Wraps string `json:"wraps"`
	// Unwraps is the scheme whose host output C_UnwrapKey turns back into
	// the known key, or why none.
	Unwraps string `json:"unwraps"`
	m       mech
	wraps   Scheme
	unwraps Scheme
}

// Proven reports whether the mechanism both wraps and unwraps as s.
func (r KeyWrapResult) Proven(s Scheme) bool { return r.wraps == s && r.unwraps == s }

// KMSResult is whether the token wraps for one KMS algorithm inside the HSM.
type KMSResult struct {
	Algorithm wrap.Algorithm `json:"algorithm"`
	InHSM     bool           `json:"in_hsm"`
	// Method says how (as in [Wrapped.Method]) or, when InHSM is false, why not.
	Method string `json:"method"`
}

// Capabilities is what the token can do for keyceremony, each item found by
// doing it on throw-away session objects: never assumed from a module's name
// or mechanism list.
type Capabilities struct {
	// AESGenerate is "ok" or why the token cannot generate an AES-256 key
	// with the ceremony's attribute template.
	AESGenerate string `json:"aes_generate"`
	// CheckValue is "reported" (CKA_CHECK_VALUE, checked against a known
	// key), "computed" (the token has none; keyceremony computes it inside
	// the token) or why neither works.
	CheckValue string `json:"check_value"`
	// Signing is the transcript signing key a ceremony makes on this token
	// (its [SealKey] String: "ECDSA P-256", or "RSA 3072 (PKCS#1 v1.5,
	// SHA-256)" where the token cannot make a P-256 key), or why none.
	Signing string `json:"signing"`
	// SigningECDSAP256 and SigningRSA3072 say whether the token made a key
	// pair of that kind as session objects and signed with it ("ok"), why
	// not, or why it was not tried (RSA is tried only when P-256 fails,
	// token.seal_algorithm names it, or keyceremony probe asks for all).
	SigningECDSAP256 string `json:"signing_ecdsa_p256,omitempty"`
	SigningRSA3072   string `json:"signing_rsa_3072,omitempty"`
	// KeyWrap lists each AES key-wrap mechanism the module lists.
	KeyWrap []KeyWrapResult `json:"key_wrap"`
	// EscrowMechanism is the mechanism that makes an escrow: proven to
	// compute RFC 5649 both ways (CKM_AES_KEY_WRAP_KWP preferred), or ""
	// when there is none.
	EscrowMechanism string `json:"escrow_mechanism"`
	// RecoveryMechanism is the mechanism that recovers an escrow: proven to
	// unwrap RFC 5649, or "" when there is none (recover --host-unwrap).
	RecoveryMechanism string `json:"recovery_mechanism"`
	// KMS is the in-HSM result of each KMS wrapping algorithm.
	KMS                      []KMSResult `json:"kms"`
	escrowWrap, escrowUnwrap *mech
	// seal is the kind of signing key Signing names, "" when none.
	seal SealKey
}

// What a probe item says when the token can; anything else says why not.
const capOK = "ok"

// transport returns a mechanism proven both ways, and its scheme, for taking
// a key out under a session key (host wrap) or copying it on the token.
func (c *Capabilities) transport() (mech, Scheme, bool) {
	if c.escrowWrap != nil {
		return *c.escrowWrap, RFC5649, true
	}
	for _, s := range []Scheme{RFC3394, PKCS7RFC3394} {
		for _, r := range c.KeyWrap {
			if r.Proven(s) {
				return r.m, s, true
			}
		}
	}
	return mech{}, "", false
}

// KMSInHSM reports whether the token wraps for alg inside the HSM.
func (c *Capabilities) KMSInHSM(alg wrap.Algorithm) bool {
	for _, r := range c.KMS {
		if r.Algorithm == alg {
			return r.InHSM
		}
	}
	return false
}

// Lacks lists, in words, what the token lacks for a ceremony that wraps for
// KMS with alg (host wrapping allowed or not) and escrows with RFC 5649.
// Empty means a ceremony can run.
func (c *Capabilities) Lacks(alg wrap.Algorithm, allowHost bool) []string {
	var out []string
	if c.AESGenerate != capOK {
		out = append(out, "AES-256 key generation ("+c.AESGenerate+")")
	}
	if c.CheckValue != "reported" && c.CheckValue != "computed" {
		out = append(out, "a key check value ("+c.CheckValue+")")
	}
	if c.seal == "" {
		out = append(out, "a transcript signing key ("+c.Signing+")")
	}
	if c.escrowWrap == nil {
		out = append(out, "an AES key-wrap mechanism that computes RFC 5649 (CKM_AES_KEY_WRAP_KWP) for the escrow")
	}
	if alg != "" && !c.KMSInHSM(alg) {
		_, _, transport := c.transport()
		switch {
		case !allowHost:
			out = append(out, fmt.Sprintf("wrapping for KMS with %s inside the HSM (%s; or allow host wrapping)", alg, c.kmsReason(alg)))
		case !transport:
			out = append(out, fmt.Sprintf("wrapping for KMS with %s, in the HSM or on the host (no AES key-wrap mechanism to take the key out)", alg))
		}
	}
	return out
}

func (c *Capabilities) kmsReason(alg wrap.Algorithm) string {
	for _, r := range c.KMS {
		if r.Algorithm == alg {
			return r.Method
		}
	}
	return "not probed"
}

// Probe finds out, on throw-away session objects, what the token can do for
// keyceremony: AES-256 generation with the ceremony's template, the key
// check value, the transcript signing key, what each AES key-wrap mechanism
// the module lists computes (a known-answer test against the host's RFC
// 5649, RFC 3394 and PKCS#7 + RFC 3394), and each KMS wrapping algorithm
// inside the token (checked by decrypting on the host). It runs once per
// Token; later calls return the first result. Every session object it made
// is destroyed before it returns.
func (t *Token) Probe() (*Capabilities, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.probeLocked()
}

func (t *Token) probeLocked() (*Capabilities, error) {
	if t.caps != nil {
		return t.caps, nil
	}
	p := &prober{t: t, c: &Capabilities{}}
	t.probing = p.c
	defer func() { t.probing = nil }()
	defer p.destroy()
	if err := p.run(); err != nil {
		return nil, fmt.Errorf("failed to probe token %q: %w", t.info.Label, err)
	}
	t.caps = p.c
	return p.c, nil
}

type prober struct {
	t       *Token
	c       *Capabilities
	objects []pkcs11.ObjectHandle
	key     []byte
	kek     []byte
	kcv     []byte
	keyH    pkcs11.ObjectHandle
	kekH    pkcs11.ObjectHandle
}

func (p *prober) destroy() {
	for _, h := range p.objects {
		_ = p.t.ctx.DestroyObject(p.t.session, h)
	}
	clear(p.key)
	clear(p.kek)
}

func (p *prober) keep(h pkcs11.ObjectHandle) pkcs11.ObjectHandle {
	p.objects = append(p.objects, h)
	return h
}

func (p *prober) run() error {
	t := p.t
	p.key, p.kek = make([]byte, 32), make([]byte, 32)
	if _, err := rand.Read(p.key); err != nil {
		return err
	}
	if _, err := rand.Read(p.kek); err != nil {
		return err
	}
	p.kcv = checkValue(p.key)

	// AES-256 generation with the ceremony's template, as a session object.
	if h, err := t.ctx.GenerateKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, secretKeyTemplate("keyceremony-probe", []byte("probe"), false)); err != nil {
		p.c.AESGenerate = ckr(err)
	} else {
		p.keep(h)
		p.c.AESGenerate = capOK
	}
	// The known key, with the ceremony's attributes, and a known KEK.
	var err error
	if p.keyH, err = t.ctx.CreateObject(t.session, append(unwrapTemplate("keyceremony-probe-key", []byte("probe-key"), false), pkcs11.NewAttribute(pkcs11.CKA_VALUE, p.key))); err != nil {
		return fmt.Errorf("failed to create a session AES key: %w", err)
	}
	p.keep(p.keyH)
	if p.kekH, err = t.ctx.CreateObject(t.session, kekTemplate("keyceremony-probe-kek", []byte("probe-kek"), p.kek)); err != nil {
		return fmt.Errorf("failed to create a session AES key-encryption key: %w", err)
	}
	p.keep(p.kekH)
	if err := p.keyWrap(); err != nil {
		return err
	}
	p.checkValue()
	p.signing()
	return p.kms()
}

// keyWrap runs the known-answer test of every AES key-wrap mechanism listed,
// and of CKM_AES_KEY_WRAP with RFC 5649's IV for 32-byte keys.
func (p *prober) keyWrap() error {
	t := p.t
	schemes := []Scheme{RFC5649, RFC3394, PKCS7RFC3394}
	want := map[Scheme][]byte{}
	for _, s := range schemes {
		c, err := hostWrap(s, p.kek, p.key)
		if err != nil {
			return err
		}
		want[s] = c
	}
	var ms []mech
	for _, id := range []uint{CKMAESKeyWrapKWP, pkcs11.CKM_AES_KEY_WRAP_PAD, pkcs11.CKM_AES_KEY_WRAP} {
		if _, listed, err := t.mechanismLocked(id); err != nil {
			return err
		} else if listed {
			ms = append(ms, mech{id: id})
		}
	}
	if len(ms) > 0 && ms[len(ms)-1].id == pkcs11.CKM_AES_KEY_WRAP {
		ms = append(ms, mech{id: pkcs11.CKM_AES_KEY_WRAP, param: rfc5649IV32})
	}
	for _, m := range ms {
		r := KeyWrapResult{Mechanism: m.String(), m: m}
		out, err := t.ctx.WrapKey(t.session, m.pkcs11(), p.kekH, p.keyH)
		if err != nil {
			r.Wraps = "refused: " + ckr(err)
		} else {
			r.Wraps = fmt.Sprintf("none of RFC 5649, RFC 3394, PKCS#7 + RFC 3394 (%d bytes)", len(out))
			for _, s := range schemes {
				if bytes.Equal(out, want[s]) {
					r.Wraps, r.wraps = string(s), s
				}
			}
		}
		r.Unwraps = "none of RFC 5649, RFC 3394, PKCS#7 + RFC 3394"
		order := schemes
		if r.wraps != "" {
			order = append([]Scheme{r.wraps}, schemes...)
		}
		for _, s := range order {
			if kcv, err := t.unwrapCheckValue(m, p.kekH, want[s]); err == nil && bytes.Equal(kcv, p.kcv) {
				r.Unwraps, r.unwraps = string(s), s
				break
			}
		}
		p.c.KeyWrap = append(p.c.KeyWrap, r)
	}
	for i := range p.c.KeyWrap {
		r := &p.c.KeyWrap[i]
		if p.c.escrowWrap == nil && r.Proven(RFC5649) {
			p.c.escrowWrap, p.c.EscrowMechanism = &r.m, r.Mechanism
		}
		if p.c.escrowUnwrap == nil && r.unwraps == RFC5649 {
			p.c.escrowUnwrap, p.c.RecoveryMechanism = &r.m, r.Mechanism
		}
	}
	return nil
}

// checkValue checks the token's CKA_CHECK_VALUE of the known key, or that
// keyceremony can compute it inside the token when the token has none.
func (p *prober) checkValue() {
	t := p.t
	reported, err := t.reportedCheckValue(p.keyH)
	switch {
	case err != nil:
		p.c.CheckValue = "reading CKA_CHECK_VALUE failed: " + ckr(err)
	case reported != nil && bytes.Equal(reported, p.kcv):
		p.c.CheckValue = "reported"
	case reported != nil:
		p.c.CheckValue = fmt.Sprintf("the token reports check value %x for a key whose check value is %x", reported, p.kcv)
	default:
		kcv, err := t.computedCheckValueLocked(p.keyH)
		switch {
		case err != nil:
			p.c.CheckValue = "the token has no CKA_CHECK_VALUE and computing it failed: " + err.Error()
		case !bytes.Equal(kcv, p.kcv):
			p.c.CheckValue = fmt.Sprintf("the token has no CKA_CHECK_VALUE and computes %x for a key whose check value is %x", kcv, p.kcv)
		default:
			p.c.CheckValue = "computed"
		}
	}
}

// signing makes a signing key pair of each kind the ceremony may use, as
// session objects, signs with it and verifies the signature on the host:
// ECDSA P-256 first (unless token.seal_algorithm names RSA), then RSA 3072
// when P-256 failed, is asked for, or every kind is probed.
func (p *prober) signing() {
	want := p.t.seal
	ec, rsaResult := "not tried: rsa-3072 was asked for", "not tried: the token makes ECDSA P-256 keys"
	if want != SealRSA3072 {
		ec = p.trySeal(SealECDSAP256)
	}
	if want == SealRSA3072 || want == "" && (ec != capOK || p.t.probeAll) {
		rsaResult = p.trySeal(SealRSA3072)
	} else if want == SealECDSAP256 {
		rsaResult = "not tried: ecdsa-p256 was asked for"
	}
	p.c.SigningECDSAP256, p.c.SigningRSA3072 = ec, rsaResult
	switch {
	case want != "" && map[SealKey]string{SealECDSAP256: ec, SealRSA3072: rsaResult}[want] == capOK:
		p.c.seal = want
	case want == "" && ec == capOK:
		p.c.seal = SealECDSAP256
	case want == "" && rsaResult == capOK:
		p.c.seal = SealRSA3072
	}
	p.c.Signing = p.c.seal.String()
	if p.c.seal == "" {
		p.c.Signing = fmt.Sprintf("none: ECDSA P-256: %s; RSA 3072: %s", ec, rsaResult)
	}
}

// trySeal checks that the module lists the mechanisms of kind alg (the key
// pair generation, for RSA with 3072 bits in its key size range, and the
// signature), makes a session key pair, signs a digest with it and verifies
// the signature on the host: "ok", or what failed.
func (p *prober) trySeal(alg SealKey) string {
	t := p.t
	gen, sign := uint(pkcs11.CKM_EC_KEY_PAIR_GEN), uint(pkcs11.CKM_ECDSA)
	if alg == SealRSA3072 {
		gen, sign = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS
	}
	for _, id := range []uint{gen, sign} {
		m, listed, err := t.mechanismLocked(id)
		switch {
		case err != nil:
			return err.Error()
		case !listed:
			return "the module does not list " + MechanismName(id)
		case id == pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN && m.MaxKeySize > 0 && (m.MinKeySize > 3072 || m.MaxKeySize < 3072):
			return fmt.Sprintf("the module's %s makes keys of %d to %d bits, not 3072", m.Name, m.MinKeySize, m.MaxKeySize)
		}
	}
	pub, priv, err := t.generateSealLocked(alg, "keyceremony-probe-signer", []byte("probe-signer"), false)
	if err != nil {
		return "key pair generation failed: " + ckr(err)
	}
	p.keep(pub)
	p.keep(priv)
	pk, got, err := t.sealPublicLocked(pub)
	if err != nil {
		return "public key: " + err.Error()
	}
	if got != alg {
		return "the token made a key of another type"
	}
	s := &Signer{t: t, priv: priv, pub: pk, alg: alg, label: "probe"}
	digest := sha256.Sum256([]byte("keyceremony probe"))
	sig, err := s.signLocked(digest[:])
	if err != nil {
		return "signing failed: " + ckr(err)
	}
	var ok bool
	switch k := pk.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest[:], sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
	}
	if !ok {
		return "its signatures do not verify"
	}
	return capOK
}

// kms wraps the known key for each KMS algorithm inside the token under a
// throw-away RSA key and decrypts on the host: in-HSM means it gave the key.
func (p *prober) kms() error {
	t := p.t
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pubH, err := t.importRSAPublic(&priv.PublicKey)
	if err != nil {
		return err
	}
	p.keep(pubH)
	for _, alg := range []wrap.Algorithm{wrap.RSAESOAEPSHA1, wrap.RSAESOAEPSHA256, wrap.RSAAESKeyWrapSHA1, wrap.RSAAESKeyWrapSHA256} {
		r := KMSResult{Algorithm: alg}
		var w *Wrapped
		var err error
		if alg.KeyWrap() {
			w, err = t.wrapRSAAESLocked(p.keyH, "probe", pubH, alg.Hash())
		} else {
			w, err = t.wrapOAEPLocked(p.keyH, "probe", pubH, alg.Hash())
		}
		if err != nil {
			r.Method = strings.TrimPrefix(err.Error(), ErrMechanism.Error()+": ")
		} else if got, derr := wrap.DecryptOnHost(alg, priv, w.Ciphertext); derr != nil || !bytes.Equal(got, p.key) {
			r.Method = w.Method + " does not give the key back"
		} else {
			r.InHSM, r.Method = true, w.Method
		}
		p.c.KMS = append(p.c.KMS, r)
	}
	return nil
}

func checkValue(key []byte) []byte {
	b, _ := aes.NewCipher(key)
	var blk [16]byte
	b.Encrypt(blk[:], blk[:])
	return append([]byte(nil), blk[:3]...)
}

// ckr names the CKR_ code of a PKCS#11 error, or the error.
func ckr(err error) string {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}

// sessionKeyTemplate is the one attribute set of every throw-away AES key:
// a session object, private, sensitive, extractable only when asked, and
// allowed only the usages given (CKA_WRAP, CKA_ENCRYPT, …).
func sessionKeyTemplate(label string, extractable bool, usages ...uint) []*pkcs11.Attribute {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, extractable),
	}
	for _, u := range []uint{pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT, pkcs11.CKA_SIGN, pkcs11.CKA_VERIFY, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE} {
		tmpl = append(tmpl, pkcs11.NewAttribute(u, slices.Contains(usages, u)))
	}
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	return tmpl
}

// kekTemplate is a session AES key-encryption key with a known value:
// sensitive, not extractable, wrap and unwrap only.
func kekTemplate(label string, id, value []byte) []*pkcs11.Attribute {
	return append(sessionKeyTemplate(label, false, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_VALUE, value))
}
