package hsm

import (
	"fmt"

	"github.com/miekg/pkcs11"
)

// KeyMaker generates secret keys on the token in sessions of its own, so
// that several keys can be generated at once: a module initialised with
// CKF_OS_LOCKING_OK (as [Open] does; one that cannot lock refuses
// C_Initialize) takes calls from several threads, each in its own session,
// and SoftHSM on a disk spends most of a key's time waiting for its file
// writes. Its methods are safe for concurrent use. Close it when done.
type KeyMaker struct {
	t    *Token
	free chan pkcs11.SessionHandle // nil: the token's own session
	n    int
}

// KeyMaker opens up to n more read/write sessions on the token (logged in,
// as every session of the process is once one is). It opens what the token
// allows: no more than its ulMaxRwSessionCount leaves, stopping at the
// first refusal (CKR_SESSION_COUNT). When it opens none, keys are generated
// one at a time in the token's own session. [KeyMaker.Sessions] says how
// many keys it generates at once.
func (t *Token) KeyMaker(n int) *KeyMaker {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := &KeyMaker{t: t, n: 1}
	if n <= 1 || t.ctx == nil {
		return m
	}
	if ti, err := t.ctx.GetTokenInfo(t.slot); err == nil && ti.MaxRwSessionCount != 0 && ti.MaxRwSessionCount != pkcs11.CK_UNAVAILABLE_INFORMATION {
		// 0 is CK_EFFECTIVELY_INFINITE.
		left := int(ti.MaxRwSessionCount) - int(ti.RwSessionCount)
		if ti.RwSessionCount == pkcs11.CK_UNAVAILABLE_INFORMATION {
			left = int(ti.MaxRwSessionCount) - 1
		}
		n = min(n, left)
	}
	var open []pkcs11.SessionHandle
	for range n {
		sh, err := t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			break
		}
		open = append(open, sh)
	}
	if len(open) == 0 {
		return m
	}
	m.free, m.n = make(chan pkcs11.SessionHandle, len(open)), len(open)
	for _, sh := range open {
		m.free <- sh
	}
	return m
}

// Sessions returns how many keys m generates at once.
func (m *KeyMaker) Sessions() int { return m.n }

// GenerateAESKeyIndexed is [Token.GenerateAESKeyIndexed] in one of m's
// sessions: it waits for a free one.
func (m *KeyMaker) GenerateAESKeyIndexed(x *KeyIndex, label string, id []byte) (*Key, error) {
	if m.free == nil {
		return m.t.GenerateAESKeyIndexed(x, label, id)
	}
	if err := x.reserve(m.t, label, id); err != nil {
		return nil, err
	}
	sh := <-m.free
	defer func() { m.free <- sh }()
	return m.t.generateIn(sh, label, id)
}

// Close closes m's sessions; keys it generated stay on the token, their
// handles valid in the token's own session.
func (m *KeyMaker) Close() {
	if m.free == nil {
		return
	}
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	for range m.n {
		sh := <-m.free
		if m.t.ctx != nil {
			_ = m.t.ctx.CloseSession(sh)
		}
	}
	m.free = nil
}

// generateIn generates a token AES key in session sh (not t.session, so t.mu
// is not needed: sessions are used by one thread at a time each).
func (t *Token) generateIn(sh pkcs11.SessionHandle, label string, id []byte) (*Key, error) {
	h, err := t.ctx.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, secretKeyTemplate(label, id, true))
	if err != nil {
		return nil, fmt.Errorf("failed to generate AES-256 key %q on token %q: %w", label, t.info.Label, err)
	}
	return &Key{handle: h, Label: label, ID: append([]byte(nil), id...)}, nil
}

// DestroyEmptySecretKeys destroys the secret keys on the token that hold
// nothing: no label, no CKA_ID, not generated here (CKA_LOCAL false) and
// no value ([Token.emptyLocked]). SoftHSM writes such an object first when it
// creates a key, then its template, then its value; a process killed in
// between leaves it. No one can use or find it. It returns how many it
// destroyed.
func (t *Token) DestroyEmptySecretKeys() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hs, err := t.find([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, []byte{}),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{}),
	}, 256)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range hs {
		attrs, err := t.ctx.GetAttributeValue(t.session, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
			pkcs11.NewAttribute(pkcs11.CKA_LOCAL, nil),
		})
		if err != nil || len(attrs[0].Value) > 0 || len(attrs[1].Value) > 0 || len(attrs[2].Value) > 0 && attrs[2].Value[0] != 0 {
			continue
		}
		if empty, err := t.emptyLocked(&Key{handle: h}); err != nil || !empty {
			continue
		}
		if err := t.ctx.DestroyObject(t.session, h); err != nil {
			return n, fmt.Errorf("failed to destroy an empty secret key on token %q: %w", t.info.Label, err)
		}
		n++
	}
	return n, nil
}
