// Package transcripts writes, seals and verifies ceremony transcripts.
//
// # Format (keyceremony/transcript/v1)
//
// A transcript is UTF-8 text, one JSON object per line, each line ending in
// a newline. The first line is the [Header], each following line an [Event],
// the last line the [Seal]. Every line carries "prev": the hex SHA-256 of the
// previous line's bytes (without its newline); the header's prev is 64
// zeros. So each line commits to every line before it, and the last line's
// hash commits to the whole transcript.
//
// The seal signs, on the token, with ECDSA P-256 or, where the token cannot
// make a P-256 key, RSA 3072 PKCS#1 v1.5, both over SHA-256 (see
// [SealECDSAP256], [SealRSA3072]), a short text, the seal payload (see [SealPayload]), that names the
// ceremony, the number of lines before the seal, the SHA-256 of the last of
// them and the signer's fingerprint. The ceremony writes that payload and the
// signature beside the transcript, so that
//
//	openssl dgst -sha256 -verify signing-key.pem -signature seal.sig seal.payload
//
// checks the seal without keyceremony, and witnesses co-sign the same payload
// with their SSH keys (namespace "keyceremony"; see [WitnessNamespace]). The
// SHA-256 of the payload is also shown as PGP words ([Words]) to read aloud
// and write down.
//
// A transcript never holds a secret: key material, PINs and shares appear
// only as hashes or public values.
package transcripts

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// Format is the format identifier written in the header.
const Format = "keyceremony/transcript/v1"

// WitnessNamespace is the SSH signature namespace witnesses sign the seal
// payload under (ssh-keygen -Y sign -n keyceremony).
const WitnessNamespace = "keyceremony"

// testOnlyAfterLine is called with the number of lines in the transcript
// file after each line is written (0 right after the file is created). It
// does nothing except in a binary built with the crashtest tag, whose crash
// tests kill the process there (see crashtest.go).
var testOnlyAfterLine = func(lines int) {}

// testOnlyBeforeLine is called with the number the line about to be
// written will have (1 for the header), the open file and the line. It does
// nothing except in a crashtest binary, whose crash tests write part of the
// line there and kill the process: a torn last line (see crashtest.go).
var testOnlyBeforeLine = func(n int, f *os.File, line []byte) {}

var zeroHash = hex.EncodeToString(make([]byte, sha256.Size))

// Header is the first line of a transcript.
type Header struct {
	Type       string `json:"type"` // "header"
	Format     string `json:"format"`
	CeremonyID string `json:"ceremony_id"`
	// Tool names the program that wrote the transcript (name, version,
	// revision); Build says exactly which binary it was.
	Tool  string `json:"tool"`
	Build *Build `json:"build,omitempty"`
	// ConfigHash is the hex SHA-256 of the ceremony's config file.
	ConfigHash string `json:"config_sha256,omitempty"`
	Operator   string `json:"operator,omitempty"`
	// SigningKey is the key that will seal the transcript. When set, the
	// seal must be made by it.
	SigningKey *SigningKey `json:"signing_key,omitempty"`
	// TimeSource says where event times come from.
	TimeSource string `json:"time_source,omitempty"`
	// Script lists the numbered steps of the ceremony script; events carry
	// these numbers in "step_no", and verification reports any script step
	// that no event carries. ScriptHash is the hex SHA-256 of the printed
	// script (keyceremony script).
	Script     []ScriptStep `json:"script,omitempty"`
	ScriptHash string       `json:"script_sha256,omitempty"`
	Started    time.Time    `json:"started"`
	Prev       string       `json:"prev"`
}

// Build describes the running binary: Go and module versions from its build
// info, and the SHA-256 of the executable file.
type Build struct {
	GoVersion    string   `json:"go_version"`
	Main         Module   `json:"main"`
	Modules      []Module `json:"modules,omitempty"`
	Settings     []string `json:"settings,omitempty"` // vcs.revision=..., etc.
	BinarySHA256 string   `json:"binary_sha256,omitempty"`
}

// Module is one module of a build.
type Module struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Sum     string `json:"sum,omitempty"`
}

// SigningKey is the public key that seals a transcript.
type SigningKey struct {
	// Label is the key's label on the token.
	Label string `json:"label,omitempty"`
	// PublicKey is the DER SubjectPublicKeyInfo.
	PublicKey []byte `json:"public_key"`
	// Fingerprint is the hex SHA-256 of PublicKey.
	Fingerprint string `json:"fingerprint"`
	// Algorithm is the seal algorithm of PublicKey ([SealECDSAP256] or
	// [SealRSA3072]); headers written before RSA seals have none, and
	// their key is ECDSA P-256.
	Algorithm string `json:"algorithm,omitempty"`
}

// NewSigningKey describes a seal key (ECDSA P-256 or RSA 3072, see
// [SealAlgorithmOf]) for a header.
func NewSigningKey(label string, pub crypto.PublicKey) (*SigningKey, error) {
	alg := SealAlgorithmOf(pub)
	if alg == "" {
		return nil, fmt.Errorf("transcript signing key is a %s: it must be ECDSA P-256 or RSA 3072", keyKind(pub))
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to encode signing key: %w", err)
	}
	return &SigningKey{Label: label, PublicKey: spki, Fingerprint: Fingerprint(spki), Algorithm: alg}, nil
}

// Fingerprint is the hex SHA-256 of a DER SubjectPublicKeyInfo.
func Fingerprint(spki []byte) string {
	h := sha256.Sum256(spki)
	return hex.EncodeToString(h[:])
}

// ScriptStep is one numbered step of a ceremony script.
type ScriptStep struct {
	No    int    `json:"no"`
	ID    string `json:"id"`
	Title string `json:"title"`
}

// Event is one line of a transcript between header and seal. Its Data is
// one of the types of package [events], named by Step.
type Event struct {
	Type string `json:"type"` // "event"
	Seq  int    `json:"seq"`
	// StepNo is the number of the script step the event belongs to, 0 when
	// none.
	StepNo int         `json:"step_no,omitempty"`
	Time   time.Time   `json:"time"`
	Step   string      `json:"step"`
	Actor  string      `json:"actor,omitempty"`
	Data   events.Data `json:"data,omitempty"`
	Prev   string      `json:"prev"`
}

// Seal is the last line: the signature over the seal payload.
type Seal struct {
	Type string `json:"type"` // "seal"
	Seq  int    `json:"seq"`
	// Algorithm is [SealECDSAP256] or [SealRSA3072].
	Algorithm string `json:"algorithm"`
	// PublicKey is the signer's DER SubjectPublicKeyInfo.
	PublicKey []byte `json:"public_key"`
	// Fingerprint is the hex SHA-256 of PublicKey.
	Fingerprint string `json:"fingerprint"`
	// PayloadHash is the hex SHA-256 of the seal payload.
	PayloadHash string `json:"payload_sha256"`
	// Words is PayloadHash's first 16 bytes as PGP words, to read aloud.
	Words string `json:"words"`
	// Signature is the seal payload's signature: an ASN.1 DER
	// ECDSA-Sig-Value, or the RSA PKCS#1 v1.5 signature.
	Signature []byte `json:"signature"`
	Prev      string `json:"prev"`
}

// SealPayload returns the text a seal signs, for a transcript of ceremony
// id whose lines before the seal number lines, the last of them hashing to
// lastLine (hex SHA-256), sealed by the key with the given fingerprint.
func SealPayload(ceremonyID string, lines int, lastLine, fingerprint string) []byte {
	return []byte(Format + " seal\n" +
		"ceremony_id: " + strconv.Quote(ceremonyID) + "\n" +
		"lines: " + strconv.Itoa(lines) + "\n" +
		"last_line_sha256: " + lastLine + "\n" +
		"signer_fingerprint: " + fingerprint + "\n")
}

// Writer appends lines to a transcript file. Each line is synced to disk
// before Append returns, so a crash loses at most the line being written.
type Writer struct {
	f       *os.File
	header  Header
	payload hash.Hash // SHA-256 of every byte written so far
	prev    string
	lines   int
	seq     int
	now     func() time.Time
	sealed  bool
	// payloadBytes and sig are the seal payload and signature once sealed.
	sealPayload []byte
	// last is the last event written.
	last Event
}

// Create creates a new transcript at path (failing if it exists) and writes
// its header.
func Create(path string, h Header) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("failed to create transcript: %w", err)
	}
	if err := evidence.SyncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	w := &Writer{f: f, payload: sha256.New(), prev: zeroHash, now: time.Now}
	testOnlyAfterLine(0)
	h.Type, h.Format, h.Prev = "header", Format, zeroHash
	if h.Started.IsZero() {
		h.Started = w.now().UTC()
	}
	w.header = h
	if err := w.writeLine(h, true); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// writeLine appends v as one line. The file is synced to disk (fsync,
// with sync) after the lines that make events count: the header, each checkpoint and the seal (and by Close). An event
// line after the last checkpoint counts for nothing (it is void: see
// Void), so losing it in a power cut changes nothing a resume trusts; not
// syncing each one saves a disk flush per event.
func (w *Writer) writeLine(v any, sync bool) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("failed to encode transcript line: %w", err)
	}
	line = append(line, '\n')
	testOnlyBeforeLine(w.lines+1, w.f, line)
	if _, err := w.f.Write(line); err != nil {
		return fmt.Errorf("failed to write transcript: %w", err)
	}
	if sync {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("failed to sync transcript: %w", err)
		}
	}
	w.payload.Write(line)
	sum := sha256.Sum256(line[:len(line)-1])
	w.prev = hex.EncodeToString(sum[:])
	w.lines++
	testOnlyAfterLine(w.lines)
	return nil
}

// Append writes one event outside any script step. Data must hold only
// public values and hashes.
func (w *Writer) Append(actor string, data events.Data) error {
	return w.AppendStep(0, actor, data)
}

// AppendStep writes one event of script step stepNo (see Header.Script).
// Data must hold only public values and hashes.
func (w *Writer) AppendStep(stepNo int, actor string, data events.Data) error {
	if w.sealed {
		return errors.New("transcript is already sealed")
	}
	if _, ok := events.New(data.Step()); !ok {
		return fmt.Errorf("event %q is not declared in package transcripts/events: it could not be read back", data.Step())
	}
	w.seq++
	w.last = Event{Type: "event", Seq: w.seq, StepNo: stepNo, Time: w.now().UTC(), Step: data.Step(), Actor: actor, Data: data, Prev: w.prev}
	_, checkpoint := data.(*events.Checkpoint)
	return w.writeLine(w.last, checkpoint)
}

// Lines is the number of lines written so far, header included.
func (w *Writer) Lines() int { return w.lines }

// Hash returns the hex SHA-256 of every byte written so far: what a bundle or
// a later transcript cites to refer to this one.
func (w *Writer) Hash() string {
	return hex.EncodeToString(w.payload.Sum(nil))
}

// Seal signs the transcript with signer (an ECDSA P-256 or RSA 3072 key,
// normally on the token), writes the seal line and closes the file. The signature is
// checked against the signer's public key before it is written. When the
// header names a signing key, signer must be that key.
func (w *Writer) Seal(signer crypto.Signer) (*Seal, error) {
	if w.sealed {
		return nil, errors.New("transcript is already sealed")
	}
	sk, err := NewSigningKey("", signer.Public())
	if err != nil {
		return nil, err
	}
	if w.header.SigningKey != nil && w.header.SigningKey.Fingerprint != sk.Fingerprint {
		return nil, fmt.Errorf("transcript signer %s is not the signing key %s named in the header", sk.Fingerprint, w.header.SigningKey.Fingerprint)
	}
	payload := SealPayload(w.header.CeremonyID, w.lines, w.prev, sk.Fingerprint)
	digest := sha256.Sum256(payload)
	sig, alg, err := signDigest(signer, digest[:])
	if err != nil {
		return nil, fmt.Errorf("failed to sign transcript: %w", err)
	}
	s := &Seal{Type: "seal", Seq: w.seq + 1, Algorithm: alg, PublicKey: sk.PublicKey,
		Fingerprint: sk.Fingerprint, PayloadHash: hex.EncodeToString(digest[:]), Words: Words(digest[:WordCount]),
		Signature: sig, Prev: w.prev}
	if err := w.writeLine(s, true); err != nil {
		return nil, err
	}
	w.sealed = true
	w.sealPayload = payload
	if err := w.f.Close(); err != nil {
		return nil, fmt.Errorf("failed to close transcript: %w", err)
	}
	return s, nil
}

// SealPayload returns the bytes the seal signed, after Seal.
func (w *Writer) SealPayload() []byte { return w.sealPayload }

// Close closes an unsealed transcript (after a failed ceremony). The file
// stays, unsealed, as evidence of what happened.
func (w *Writer) Close() error {
	if w.sealed {
		return nil
	}
	w.sealed = true
	serr := w.f.Sync()
	if err := w.f.Close(); err != nil {
		return err
	}
	return serr
}
