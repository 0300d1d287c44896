package hsm

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// KeyIndex holds the labels and CKA_IDs of a token's secret keys, read in
// one listing, so that a batch checks N labels with one search instead of
// two per key (SoftHSM reads every object file on each search).
type KeyIndex struct {
	labels map[string]bool
	ids    map[string]bool
}

// HasLabel reports whether a secret key with label is on the token.
func (x *KeyIndex) HasLabel(label string) bool { return x.labels[label] }

// HasID reports whether a secret key with CKA_ID id is on the token.
func (x *KeyIndex) HasID(id []byte) bool { return x.ids[string(id)] }

// SecretKeyIndex lists the token's secret keys once.
func (t *Token) SecretKeyIndex() (*KeyIndex, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x := &KeyIndex{labels: map[string]bool{}, ids: map[string]bool{}}
	if err := t.ctx.FindObjectsInit(t.session, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY)}); err != nil {
		return nil, fmt.Errorf("failed to list the keys of token %q: %w", t.info.Label, err)
	}
	var all []pkcs11.ObjectHandle
	var err error
	for {
		var hs []pkcs11.ObjectHandle
		hs, _, err = t.ctx.FindObjects(t.session, 256)
		if err != nil || len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	if ferr := t.ctx.FindObjectsFinal(t.session); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list the keys of token %q: %w", t.info.Label, err)
	}
	for _, h := range all {
		attrs, err := t.ctx.GetAttributeValue(t.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			return nil, fmt.Errorf("failed to read a key's label on token %q: %w", t.info.Label, err)
		}
		for _, a := range attrs {
			switch a.Type {
			case pkcs11.CKA_LABEL:
				x.labels[string(a.Value)] = true
			case pkcs11.CKA_ID:
				x.ids[string(a.Value)] = true
			}
		}
	}
	return x, nil
}

// GenerateAESKeyIndexed is GenerateAESKey checking the label and id
// against x (one listing for a whole batch) instead of searching the token;
// the new key is added to x. x must come from SecretKeyIndex of this token
// in the same session, with nothing else creating keys meanwhile.
func (t *Token) GenerateAESKeyIndexed(x *KeyIndex, label string, id []byte) (*Key, error) {
	if x == nil {
		return nil, errors.New("no key index")
	}
	if x.labels[label] || x.ids[string(id)] {
		return nil, fmt.Errorf("%w: token %q already holds a secret key with label %q or id %x: choose a new label and id, or destroy the old key first", ErrKeyExists, t.info.Label, label, id)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if label == "" || len(id) == 0 {
		return nil, errors.New("a key needs a label and an id")
	}
	h, err := t.ctx.GenerateKey(t.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, secretKeyTemplate(label, id, true))
	if err != nil {
		return nil, fmt.Errorf("failed to generate AES-256 key %q on token %q: %w", label, t.info.Label, err)
	}
	x.labels[label], x.ids[string(id)] = true, true
	return &Key{handle: h, Label: label, ID: append([]byte(nil), id...)}, nil
}
