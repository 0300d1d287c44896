package ceremony

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// Nothing a ceremony makes is orphaned by a crash. Before it creates a KMS
// key or generates a key on the token, it records its intent (with a signed
// checkpoint): a KMS key is created tagged with the ceremony's ID, the
// key's label and a fresh nonce the intent names; a token key is generated
// with the CKA_ID the intent names. A resume that finds an intent without
// the event of the act looks for what the act made, and adopts it: the KMS
// key by its tags (ListKeys and ListResourceTags, page by page), the token
// key by label and CKA_ID, its check value read from the token. Only when
// there is none does it do the act again.

// Tag keys of the KMS keys a ceremony creates.
const (
	TagCeremony = "keyceremony:ceremony-id"
	TagLabel    = "keyceremony:label"
	TagNonce    = "keyceremony:nonce"
)

// createKMSKey creates k's KMS key, or adopts the one a run that died made
// for the same intent. It returns how the key was adopted ("" when created).
func (s *state) createKMSKey(ctx context.Context, c *awskms.Client, k *keyState) (string, error) {
	// The online steps run keys concurrently (eachKey): what touches the
	// transcript, the UI or s.tagged holds s.mu.
	if err := s.locked(s.begin); err != nil {
		return "", err
	}
	if k.nonce != "" {
		var arn, how string
		err := s.locked(func() (err error) { arn, how, err = s.findKMSKey(ctx, c, k); return err })
		if err != nil || arn != "" {
			k.arn = arn
			return how, err
		}
	} else {
		nonce := make([]byte, 16)
		if _, err := rand.Read(nonce); err != nil {
			return "", err
		}
		k.nonce = hex.EncodeToString(nonce)
		if err := s.locked(func() error {
			return s.recordChange(&events.KMSKeyIntent{Label: k.cfg.Label, Nonce: k.nonce, Tags: s.kmsTags(k)})
		}); err != nil {
			return "", err
		}
	}
	desc := k.cfg.Description
	if desc == "" {
		desc = fmt.Sprintf("keyceremony %s: %s", s.cfg.Ceremony.ID, k.cfg.Label)
	}
	arn, err := c.CreateTaggedKey(ctx, desc, k.cfg.MultiRegion, s.kmsTags(k))
	if err != nil {
		return "", err
	}
	k.arn = arn
	return "", nil
}

func (s *state) kmsTags(k *keyState) map[string]string {
	return map[string]string{TagCeremony: s.cfg.Ceremony.ID, TagLabel: k.cfg.Label, TagNonce: k.nonce}
}

// findKMSKey looks for the KMS key a run that died created for k's intent.
func (s *state) findKMSKey(ctx context.Context, c *awskms.Client, k *keyState) (arn, how string, err error) {
	if s.tagged == nil {
		found, err := c.FindTagged(ctx, map[string]string{TagCeremony: s.cfg.Ceremony.ID})
		if err != nil {
			return "", "", err
		}
		s.tagged = &found
	}
	var match []string
	for _, t := range *s.tagged {
		if t.Tags[TagLabel] == k.cfg.Label && t.Tags[TagNonce] == k.nonce {
			match = append(match, t.ARN)
		}
	}
	if len(match) == 0 {
		return "", "", nil
	}
	d, err := c.Describe(ctx, match[0])
	if err != nil {
		return "", "", err
	}
	if d.Origin != "EXTERNAL" || d.State != "PendingImport" {
		return "", "", fmt.Errorf("KMS key %s, tagged for key %q of this ceremony, is %s with origin %s, not PendingImport with origin EXTERNAL: it was changed outside the ceremony; check it, then untag it (aws kms untag-resource --key-id %s --tag-keys %s) and resume", d.ARN, k.cfg.Label, d.State, d.Origin, d.ARN, TagNonce)
	}
	how = "found by its tags after the process died before recording it"
	if len(match) > 1 {
		// A CreateKey the SDK retried after a lost answer: the others
		// hold nothing; name them so that they can be deleted.
		how += "; other keys with the same tags, never used: " + strings.Join(match[1:], ", ")
		s.ui.Info(fmt.Sprintf("KMS keys %s were created twice for key %q and never used: schedule their deletion (aws kms schedule-key-deletion)", strings.Join(match[1:], ", "), k.cfg.Label))
	}
	s.ui.Info(fmt.Sprintf("KMS key %s for %q adopted: %s", d.ARN, k.cfg.Label, how))
	return d.ARN, how, nil
}

// generateKey generates k on the token with mk, or adopts the key a run
// that died generated for the same intent. It returns the key, how it
// was adopted ("" when generated), and whether a half-made key with its
// label and id was destroyed first. k's intent must be signed by a
// checkpoint already; generateKey runs for several keys at once and
// writes nothing to k or the transcript.
func (s *state) generateKey(mk *hsm.KeyMaker, k *keyState) (*hsm.Key, string, bool, error) {
	if !k.genIntent {
		return nil, "", false, fmt.Errorf("key %q: no signed intent to generate it", k.cfg.Label)
	}
	halfMade := false
	if k.intentReplayed {
		// A run that died may have made it: look before making it.
		key, err := s.tok.FindAESKey(k.cfg.Label, k.id)
		switch {
		case err == nil:
			if halfMade, err = s.halfMade(k, key); err != nil || !halfMade {
				return key, "found on the token by label and id after the process died before recording it", false, err
			}
		case !errors.Is(err, hsm.ErrKeyNotFound):
			return nil, "", false, err
		}
	}
	var key *hsm.Key
	var err error
	if s.keyIndex != nil && !halfMade { // the listing holds the half-made key's label
		// Checked against the one listing openToken read: linear in N.
		key, err = mk.GenerateAESKeyIndexed(s.keyIndex, k.cfg.Label, k.id)
	} else {
		key, err = s.tok.GenerateAESKey(k.cfg.Label, k.id)
	}
	if err != nil {
		return nil, "", halfMade, err
	}
	return key, "", halfMade, nil
}

// halfMade reports whether key, found by the label and id of k's signed
// intent, is one the token was generating when the process died (SoftHSM
// leaves the template without the value): not generated here (CKA_LOCAL
// false) and, as the token says positively, without a value (CKA_VALUE_LEN
// 0). Such a key is destroyed, losing nothing, to be generated again. A key
// not generated here that holds material, or of which the token does not
// say it holds none, is refused: this ceremony did not make it, and
// destroying it could destroy material.
func (s *state) halfMade(k *keyState, key *hsm.Key) (bool, error) {
	local, err := s.tok.GeneratedHere(key)
	if err != nil || local {
		return false, err
	}
	if empty, err := s.tok.HoldsNoValue(key); err != nil || !empty {
		return false, fmt.Errorf("%w: token %q holds a key labelled %q with id %x that was not generated on it (CKA_LOCAL false) and holds material, or does not say it holds none: this ceremony did not make it; move it away (or destroy it) and resume", hsm.ErrKeyExists, s.tok.Info().Label, k.cfg.Label, k.id)
	}
	if err := s.tok.DestroyKey(key); err != nil {
		return false, err
	}
	return true, s.locked(func() error {
		s.ui.Info(fmt.Sprintf("key %q: the token held it half-made (its label and id without a value: the process died while the token generated it); destroyed, generating it again", k.cfg.Label))
		return nil
	})
}

// checkTokenID is openToken's check that the CKA_ID k will be generated
// with (its keys[].id, or the one its intent recorded) is free on the
// token, or is the key a resumed ceremony intended to generate: a key
// holding it under another label would make generate-keys fail after the
// KMS keys were made. A random id is drawn at generation.
func (s *state) checkTokenID(k *keyState) error {
	id := k.id
	if !k.genIntent {
		id, _ = hex.DecodeString(k.cfg.ID)
	}
	if len(id) == 0 || (s.keyIndex != nil && !s.keyIndex.HasID(id)) {
		return nil
	}
	key, err := s.tok.FindKey("", id)
	switch {
	case errors.Is(err, hsm.ErrKeyNotFound):
		return nil
	case err == nil && s.resumed && k.genIntent && key.Label == k.cfg.Label:
		return nil // generateKey adopts it
	case err != nil && !errors.Is(err, hsm.ErrAmbiguous):
		return err
	}
	return fmt.Errorf("%w: token %q already holds a secret key with id %x: choose another keys[].id for %q, or leave it out for a random one", hsm.ErrKeyExists, s.tok.Info().Label, id, k.cfg.Label)
}

// recordGenerateIntent chooses k's CKA_ID and records that k is about to
// be generated with it; the intent counts once a checkpoint signs it, which
// must happen before the key is made.
func (s *state) recordGenerateIntent(k *keyState) error {
	if k.cfg.ID != "" {
		k.id, _ = hex.DecodeString(k.cfg.ID)
	} else {
		k.id = make([]byte, 8)
		if _, err := rand.Read(k.id); err != nil {
			return err
		}
	}
	if err := s.record(&events.GenerateKeyIntent{Label: k.cfg.Label, ID: hex.EncodeToString(k.id)}); err != nil {
		return err
	}
	k.genIntent = true
	return nil
}

// checkTokenLabel is openToken's check that k's label is free on the token,
// or holds the key a resumed ceremony intended to generate there.
func (s *state) checkTokenLabel(k *keyState) error {
	if s.keyIndex != nil && !s.keyIndex.HasLabel(k.cfg.Label) {
		return nil // one listing of the token's keys says it is free
	}
	tok := s.tok.Info().Label
	key, err := s.tok.FindAESKey(k.cfg.Label, nil)
	switch {
	case errors.Is(err, hsm.ErrKeyNotFound):
		return nil
	case err != nil:
		return err
	case s.resumed && k.genIntent && string(key.ID) == string(k.id):
		return nil // generateKey adopts it
	case s.resumed:
		return fmt.Errorf("%w: token %q holds a key labelled %q (id %x) that this ceremony did not generate: its transcript records no intent to generate it; choose a new label in keys[].label", hsm.ErrKeyExists, tok, k.cfg.Label, key.ID)
	}
	return fmt.Errorf("%w: token %q already holds a key labelled %q: choose a new label in keys[].label", hsm.ErrKeyExists, tok, k.cfg.Label)
}
