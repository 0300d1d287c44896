package hsm

import (
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// KeyIndex holds the labels and CKA_IDs of a token's secret keys, read in
// one listing, so that a batch checks N labels with one search instead of
// two per key (SoftHSM reads every object file on each search).
// Its methods are safe for concurrent use.
type KeyIndex struct {
	mu      sync.Mutex
	labels  map[string]bool
	ids     map[string]bool
	unnamed int
}

// Unnamed is the number of secret keys with neither label nor CKA_ID: a
// key generation cut short by a crash can leave one (SoftHSM writes a new
// object in steps, its label and id last).
func (x *KeyIndex) Unnamed() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.unnamed
}

// HasLabel reports whether a secret key with label is on the token.
func (x *KeyIndex) HasLabel(label string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.labels[label]
}

// HasID reports whether a secret key with CKA_ID id is on the token.
func (x *KeyIndex) HasID(id []byte) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.ids[string(id)]
}

// reserve returns an error wrapping [ErrKeyExists] when label or id is in
// x, and otherwise adds both, before the key is made: two keys being made
// at once cannot both take them. A key whose generation then fails stays
// in x (as if it were on the token: a retry makes it in a new run).
func (x *KeyIndex) reserve(t *Token, label string, id []byte) error {
	if x == nil {
		return errors.New("no key index")
	}
	if label == "" || len(id) == 0 {
		return errors.New("a key needs a label and an id")
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.labels[label] || x.ids[string(id)] {
		return fmt.Errorf("%w: token %q already holds a secret key with label %q or id %x: choose a new label and id, or destroy the old key first", ErrKeyExists, t.info.Label, label, id)
	}
	x.labels[label], x.ids[string(id)] = true, true
	return nil
}

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
		named := false
		for _, a := range attrs {
			named = named || len(a.Value) > 0
			switch a.Type {
			case pkcs11.CKA_LABEL:
				x.labels[string(a.Value)] = true
			case pkcs11.CKA_ID:
				x.ids[string(a.Value)] = true
			}
		}
		if !named {
			x.unnamed++
		}
	}
	return x, nil
}

// GenerateAESKeyIndexed is GenerateAESKey checking the label and id
// against x (one listing for a whole batch) instead of searching the token;
// the new key is added to x. x must come from SecretKeyIndex of this token
// in the same session, with nothing else creating keys meanwhile.
func (t *Token) GenerateAESKeyIndexed(x *KeyIndex, label string, id []byte) (*Key, error) {
	if err := x.reserve(t, label, id); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.generateIn(t.session, label, id)
}
