package hsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// ErrForeignKey is wrapped by [Token.CheckForeignKey] for a key keyceremony
// did not make the way it makes keys.
var ErrForeignKey = errors.New("the key is not one keyceremony would have made")

// KeyFacts are the attributes of a secret key that decide whether wrapping
// it for KMS is sound.
type KeyFacts struct {
	KeyType     string `json:"key_type"`
	Bits        int    `json:"bits"`
	Sensitive   bool   `json:"sensitive"`
	Extractable bool   `json:"extractable"`
	Encrypt     bool   `json:"encrypt"`
	Decrypt     bool   `json:"decrypt"`
	Sign        bool   `json:"sign"`
	Derive      bool   `json:"derive"`
}

// Usage lists, in words, what the key allows beyond being wrapped: a key
// that is not sensitive, or can encrypt, decrypt, sign or derive, has been
// or can be used outside KMS.
func (f KeyFacts) Usage() []string {
	var out []string
	if !f.Sensitive {
		out = append(out, "is not sensitive (CKA_SENSITIVE false: its value can be read)")
	}
	for _, u := range []struct {
		on   bool
		name string
	}{{f.Encrypt, "encrypt"}, {f.Decrypt, "decrypt"}, {f.Sign, "sign"}, {f.Derive, "derive"}} {
		if u.on {
			out = append(out, "allows "+u.name+" (CKA_"+strings.ToUpper(u.name)+")")
		}
	}
	return out
}

// FindKey finds the one secret key with label (when not empty) and CKA_ID
// id (when not empty), whatever its type: a key that matches is then judged
// by [Token.CheckForeignKey]. Several matches are refused, listing them,
// with an error wrapping [ErrAmbiguous].
func (t *Token) FindKey(label string, id []byte) (*Key, error) {
	if label == "" && len(id) == 0 {
		return nil, errors.New("name the key by label, CKA_ID, or both")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	keys, what, err := t.findKeysLocked(label, id)
	if err != nil {
		return nil, err
	}
	switch len(keys) {
	case 0:
		return nil, fmt.Errorf("%w: no secret key with %s on token %q", ErrKeyNotFound, what, t.info.Label)
	case 1:
		return keys[0], nil
	}
	return nil, t.ambiguousKeys(keys, what, "")
}

// ambiguousKeys refuses a key selection (what) that matches keys, listing
// them; when says when they were seen.
func (t *Token) ambiguousKeys(keys []*Key, what, when string) error {
	var names []string
	for _, k := range keys {
		names = append(names, fmt.Sprintf("%q (id %x)", k.Label, k.ID))
	}
	return fmt.Errorf("%w: %d secret keys with %s on token %q%s: %s; choose one with --key-id (or id= in the URI)", ErrAmbiguous, len(keys), what, t.info.Label, when, strings.Join(names, ", "))
}

// findKeysLocked lists the secret keys the session sees with label and id
// (each when not empty), sorted by id, and names the selection.
func (t *Token) findKeysLocked(label string, id []byte) ([]*Key, string, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY)}
	var what []string
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
		what = append(what, fmt.Sprintf("label %q", label))
	}
	if len(id) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
		what = append(what, "id "+hex.EncodeToString(id))
	}
	hs, err := t.find(tmpl, 16)
	if err != nil {
		return nil, "", err
	}
	var keys []*Key
	for _, h := range hs {
		attrs, err := t.ctx.GetAttributeValue(t.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			return nil, "", fmt.Errorf("failed to read the label and id of a key on token %q: %w", t.info.Label, err)
		}
		keys = append(keys, &Key{handle: h, Label: string(attrs[0].Value), ID: attrs[1].Value})
	}
	slices.SortFunc(keys, func(a, b *Key) int { return bytes.Compare(a.ID, b.ID) })
	return keys, strings.Join(what, " and "), nil
}

// KeyFacts reads what decides whether k is sound to wrap for KMS.
func (t *Token) KeyFacts(k *Key) (KeyFacts, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	attrs, err := t.ctx.GetAttributeValue(t.session, k.handle, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, nil),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, nil),
	})
	if err != nil {
		return KeyFacts{}, fmt.Errorf("failed to read the attributes of key %q on token %q: %w", k.Label, t.info.Label, err)
	}
	flag := func(b []byte) bool { return len(b) > 0 && b[0] != 0 }
	f := KeyFacts{KeyType: fmt.Sprintf("CKK_0x%X", ulong(attrs[0].Value)), Bits: int(ulong(attrs[1].Value)) * 8,
		Sensitive: flag(attrs[2].Value), Extractable: flag(attrs[3].Value), Encrypt: flag(attrs[4].Value),
		Decrypt: flag(attrs[5].Value), Sign: flag(attrs[6].Value), Derive: flag(attrs[7].Value)}
	if ulong(attrs[0].Value) == pkcs11.CKK_AES {
		f.KeyType = "AES"
	}
	if f.Bits == 0 && f.Extractable {
		// SoftHSM 2.6.1 has no CKA_VALUE_LEN on unwrapped keys: the
		// length of a wrap under a session key tells it.
		if f.Bits, err = t.wrappedBitsLocked(k); err != nil {
			return f, err
		}
	}
	return f, nil
}

// wrappedBitsLocked returns the size of k's value in bits, from the length
// of its wrap under a throw-away session key with a key-wrap mechanism the
// probe proved (the wrap is discarded; the session key destroyed).
func (t *Token) wrappedBitsLocked(k *Key) (int, error) {
	caps, err := t.probeLocked()
	if err != nil {
		return 0, err
	}
	m, scheme, ok := caps.transport()
	if !ok {
		return 0, fmt.Errorf("token %q reports no CKA_VALUE_LEN for key %q and has no proven key-wrap mechanism to measure it", t.info.Label, k.Label)
	}
	tmp, err := t.sessionAESLocked(nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = t.ctx.DestroyObject(t.session, tmp) }()
	out, err := t.ctx.WrapKey(t.session, m.pkcs11(), tmp, k.handle)
	if err != nil {
		return 0, fmt.Errorf("failed to measure key %q on token %q: %w", k.Label, t.info.Label, err)
	}
	n := len(out) - 8
	if scheme == PKCS7RFC3394 {
		n -= 8 // a whole block of padding after a multiple of 8 bytes
	}
	return 8 * n, nil
}

// CheckForeignKey refuses, with an error wrapping [ErrForeignKey], a key
// that is not AES-256 or not extractable (neither can be imported into KMS
// as SYMMETRIC_DEFAULT), and, unless acceptUsage, one whose Usage is not
// empty. It returns the facts for the transcript.
func (t *Token) CheckForeignKey(k *Key, acceptUsage bool) (KeyFacts, error) {
	f, err := t.KeyFacts(k)
	if err != nil {
		return f, err
	}
	switch {
	case f.KeyType != "AES" || f.Bits != 256:
		return f, fmt.Errorf("%w: key %q on token %q is %s of %d bits; KMS imports only AES-256 material as SYMMETRIC_DEFAULT: choose the AES-256 key", ErrForeignKey, k.Label, t.info.Label, f.KeyType, f.Bits)
	case !f.Extractable:
		return f, fmt.Errorf("%w: key %q on token %q is not extractable (CKA_EXTRACTABLE false): it can never leave the token, not even wrapped, so it cannot be imported into KMS; generate the key with keyceremony, which makes it extractable for wrapping only", ErrForeignKey, k.Label, t.info.Label)
	}
	if u := f.Usage(); len(u) > 0 && !acceptUsage {
		return f, fmt.Errorf("%w: key %q on token %q %s: it may have been used outside KMS; if you know why, accept it with --accept-key-usage (recorded in the transcript)", ErrForeignKey, k.Label, t.info.Label, strings.Join(u, ", "))
	}
	return f, nil
}
