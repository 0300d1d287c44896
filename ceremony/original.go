package ceremony

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
)

// Pin says how the signer of an original transcript is pinned out of band.
// Recovery, drills and share checks are rooted in the transcript, so the pin
// is what ties them to the real ceremony: age does not authenticate senders,
// and the transcript publishes every custodian's recipient, so anyone can
// make an escrow and shares that agree with each other.
type Pin struct {
	// Fingerprint is the hex SHA-256 of the signer's DER public key, as the
	// witnesses wrote it down.
	Fingerprint string
	// Words are the seal words the witnesses wrote down, typed back.
	Words string
	// PublicKey is a signing key read from KeyFile. keyceremony cannot tell
	// whether that file is genuine (it often lies beside the transcript), so
	// it pins the signer but does not confirm the ceremony.
	PublicKey crypto.PublicKey
	KeyFile   string
	// Insecure accepts a transcript whose signer is not pinned, or no
	// transcript at all: the result proves nothing about the real escrow.
	Insecure bool
}

// ErrUnpinned: no pin and no explicit --insecure-unpinned.
var ErrUnpinned = errors.New("the original transcript's signer is not pinned: give --fingerprint HEX or --seal-words \"…\" as the witnesses wrote them down, or --insecure-unpinned to go on without proof")

// MismatchError says that a file is not what the original transcript
// recorded: another escrow blob, forged or of another ceremony.
type MismatchError struct{ Reason string }

func (e *MismatchError) Error() string { return e.Reason }

// Genuine reports whether the pin came from outside the files at hand
// (a fingerprint or seal words typed back), so that a check rooted in it
// confirms the real ceremony.
func (p Pin) Genuine() bool { return p.Fingerprint != "" || p.Words != "" }

func (p Pin) set() bool { return p.Genuine() || p.PublicKey != nil }

// normWords puts seal words in one form: lower case, single spaces.
func normWords(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// Original is what a verified original transcript says about its escrow:
// the public half that shares, blobs and recovered keys are checked against.
type Original struct {
	// File and SHA256 name the transcript.
	File   string
	SHA256 string
	// Signer is the seal's signer fingerprint; PinnedBy says how it was
	// pinned, for the record and the output; Genuine as [Pin.Genuine].
	Signer   string
	PinnedBy string
	Genuine  bool
	// Escrow holds the commitments shares are checked against.
	Escrow        escrow.Commitments
	KEKCheckValue string
	// BlobSHA256 is the SHA-256 of the escrow blob in canonical form.
	BlobSHA256 string
	// ShareFormat is the share files' format the escrow event records, ""
	// when it records none (older transcripts).
	ShareFormat string
	Custodians  []OriginalCustodian
	// KCVs maps each key label to its check value at generation.
	KCVs map[string]string
}

// OriginalCustodian is one custodian as the transcript's escrow event names
// them.
type OriginalCustodian struct {
	Name          string
	Index         int
	RecipientType string
	// Recipient is the public recipient ("" for a passphrase).
	Recipient string
}

// OpenOriginal reads and verifies the original transcript at path, checks its
// signer against pin, and returns what its escrow event recorded. A pin that
// does not match is a *transcripts.VerifyError; a missing pin is
// [ErrUnpinned] unless pin.Insecure.
func OpenOriginal(path string, pin Pin) (*Original, error) {
	if !pin.set() && !pin.Insecure {
		return nil, ErrUnpinned
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read the original transcript: %w", err)
	}
	opts := transcripts.Options{PublicKey: pin.PublicKey, Fingerprint: pin.Fingerprint}
	res, err := transcripts.VerifyBytes(data, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	o := &Original{File: path, SHA256: evidence.Hash(data), Signer: res.Seal.Fingerprint, Genuine: pin.Genuine(), KCVs: map[string]string{}}
	switch {
	case pin.Words != "":
		if normWords(pin.Words) != normWords(res.Seal.Words) {
			return nil, fmt.Errorf("%s: %w", path, &transcripts.VerifyError{Class: transcripts.ClassSignature, Line: res.EventCount + 2, Field: "words",
				Reason: "the seal words given are not this transcript's: it is not the transcript the witnesses saw sealed", Expected: normWords(pin.Words), Found: normWords(res.Seal.Words)})
		}
		o.PinnedBy = "seal words typed back"
		if pin.Fingerprint != "" {
			o.PinnedBy += " and signer fingerprint"
		}
	case pin.Fingerprint != "":
		o.PinnedBy = "signer fingerprint " + res.Seal.Fingerprint
	case pin.PublicKey != nil:
		o.PinnedBy = fmt.Sprintf("public key file %s (not confirmed: keyceremony cannot tell whether that file is genuine)", filepath.Base(pin.KeyFile))
	default:
		o.PinnedBy = "nothing (--insecure-unpinned)"
	}
	if err := o.readEvents(res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return o, nil
}

// readEvents takes the escrow event and the key check values, from the
// events that count (not the void ones: see transcripts).
func (o *Original) readEvents(res *transcripts.Result) error {
	for _, e := range res.Events {
		if g, ok := e.Data.(*events.GenerateKey); ok {
			o.KCVs[g.Label] = g.KeyCheckValue
		}
	}
	e := res.Escrow()
	if e == nil {
		return errors.New("the transcript has no escrow event: this ceremony made no escrow")
	}
	o.Escrow = escrow.Commitments{CeremonyID: res.Header.CeremonyID, Threshold: e.Threshold, Shares: e.Shares, Commitments: e.Commitments}
	o.KEKCheckValue, o.BlobSHA256, o.ShareFormat = e.KEKCheckValue, e.FileSHA256, e.ShareFormat
	for _, c := range e.Custodians {
		o.Custodians = append(o.Custodians, OriginalCustodian{Name: c.Name, Index: c.Index, RecipientType: c.RecipientType, Recipient: c.Recipient})
	}
	c := &o.Escrow
	if c.Threshold < 1 || len(c.Commitments) != c.Threshold || len(o.Custodians) != c.Shares || o.BlobSHA256 == "" || o.KEKCheckValue == "" {
		return errors.New("the transcript's escrow event is malformed")
	}
	for i, oc := range o.Custodians {
		if oc.Index != i+1 || oc.Name == "" {
			return errors.New("the transcript's escrow event lists its custodians out of order")
		}
	}
	return nil
}

// CheckShare checks an opened share against the transcript: same ceremony
// and commitments (the Feldman check), the custodian name and index the
// transcript gave that share, the escrow blob it names, and its format
// when the transcript records one. Failures are *escrow.ShareError.
func (o *Original) CheckShare(sh *escrow.Share) error {
	if err := o.Escrow.Verify(sh); err != nil {
		return err
	}
	bad := func(reason string, args ...any) error {
		return &escrow.ShareError{File: sh.File, Custodian: sh.Custodian, Index: sh.Index, Reason: fmt.Sprintf(reason, args...)}
	}
	if o.ShareFormat != "" && sh.Format != o.ShareFormat {
		return bad("is a %s share, but the transcript recorded %s shares for this escrow: it is not the share file the custodian was given", sh.Format, o.ShareFormat)
	}
	if want := o.Custodians[sh.Index-1].Name; sh.Custodian != want {
		return bad("names custodian %q, but the transcript gave share %d to %q: the share was relabelled; use %s's own share file", sh.Custodian, sh.Index, want, want)
	}
	if sh.EscrowSHA256 != o.BlobSHA256 {
		return bad("was made with escrow blob sha256 %s, the transcript recorded %s: it belongs to another escrow", short(sh.EscrowSHA256), short(o.BlobSHA256))
	}
	return nil
}

// CheckOpener checks that the identity that opened sh is the one the
// transcript sealed that share to: the same public key (compared as keys),
// or a passphrase for a passphrase custodian. A share sealed to one
// custodian and opened by another's key was re-sealed: it counts for no one.
func (o *Original) CheckOpener(sh *escrow.Share, id *escrow.Identity) error {
	c := o.Custodians[sh.Index-1]
	ok := id.Kind == c.RecipientType
	if ok && c.Recipient != "" {
		r, err := escrow.ParseRecipient(c.Recipient)
		ok = err == nil && r.Key == id.Key
	}
	if ok {
		return nil
	}
	return &escrow.ShareError{File: sh.File, Custodian: sh.Custodian, Index: sh.Index,
		Reason: fmt.Sprintf("was opened by %s, but the transcript sealed share %d to %s's %s: it was re-sealed to another custodian and counts for no one", id, sh.Index, c.Name, recipientName(c))}
}

func recipientName(c OriginalCustodian) string {
	if c.Recipient == "" {
		return c.RecipientType
	}
	return c.RecipientType + " key"
}

// CheckBlob checks that b is the escrow blob the transcript recorded: its
// canonical SHA-256, commitments, KEK check value, custodians and key check
// values.
func (o *Original) CheckBlob(b *escrow.Blob, name string) error {
	bad := func(format string, args ...any) error { return &MismatchError{Reason: fmt.Sprintf(format, args...)} }
	sum, err := b.SHA256()
	if err != nil {
		return err
	}
	if sum != o.BlobSHA256 {
		return bad("%s is not the escrow blob the transcript of ceremony %s recorded (sha256 %s, transcript says %s): use that ceremony's escrow.json", name, o.Escrow.CeremonyID, short(sum), short(o.BlobSHA256))
	}
	// Implied by the hash; checked again so that the message says what.
	if b.CeremonyID != o.Escrow.CeremonyID || !equalStrings(b.Commitments, o.Escrow.Commitments) || b.KEKCheckValue != o.KEKCheckValue {
		return bad("the commitments of %s differ from the transcript's", name)
	}
	for _, bc := range b.Custodians {
		if bc.Index < 1 || bc.Index > len(o.Custodians) || o.Custodians[bc.Index-1].Name != bc.Name {
			return bad("%s names custodian %q for share %d, the transcript does not", name, bc.Name, bc.Index)
		}
	}
	for _, k := range b.Keys {
		if want, ok := o.KCVs[k.Label]; !ok || want != k.KeyCheckValue {
			return bad("%s: key %q has check value %s, the transcript recorded %q", name, k.Label, k.KeyCheckValue, want)
		}
	}
	return nil
}

// record puts in d what the recovery transcript says about the original.
func (o *Original) record(d *events.Recovery) {
	d.OriginalTranscript, d.OriginalTranscriptSHA256 = filepath.Base(o.File), o.SHA256
	d.OriginalSigner, d.PinnedBy, d.PinConfirmed = o.Signer, o.PinnedBy, &o.Genuine
}
