// Package transcripts writes, seals and verifies ceremony transcripts.
//
// # Format (keyceremony/transcript/v0)
//
// A transcript is UTF-8 text, one JSON object per line. The first line is the
// header, each following line an event, the last line the seal. Every line
// carries "prev": the hex SHA-256 of the previous line's bytes (without its
// newline); the header's prev is 64 zeros. The seal signs, with ECDSA P-256
// over SHA-256, every byte of the transcript before the seal line, so
//
//	head -n -1 transcript.jsonl > payload
//	openssl dgst -sha256 -verify signing-key.pem -signature seal.sig payload
//
// checks it without keyceremony. A transcript never holds a secret: key
// material, PINs and shares appear only as hashes or public values.
package transcripts

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"
)

// Format is the format identifier written in the header.
const Format = "keyceremony/transcript/v0"

var zeroHash = hex.EncodeToString(make([]byte, sha256.Size))

// Header is the first line of a transcript.
type Header struct {
	Type       string    `json:"type"` // "header"
	Format     string    `json:"format"`
	CeremonyID string    `json:"ceremony_id"`
	Tool       string    `json:"tool"`
	Operator   string    `json:"operator,omitempty"`
	ConfigHash string    `json:"config_hash,omitempty"`
	Started    time.Time `json:"started"`
	Prev       string    `json:"prev"`
}

// Event is one line of a transcript between header and seal.
type Event struct {
	Type  string         `json:"type"` // "event"
	Seq   int            `json:"seq"`
	Time  time.Time      `json:"time"`
	Step  string         `json:"step"`
	Actor string         `json:"actor,omitempty"`
	Data  map[string]any `json:"data,omitempty"`
	Prev  string         `json:"prev"`
}

// Seal is the last line: the signature over everything before it.
type Seal struct {
	Type string `json:"type"` // "seal"
	Seq  int    `json:"seq"`
	// Algorithm is always "ECDSA-P256-SHA256" in v0.
	Algorithm string `json:"algorithm"`
	// PublicKey is the signer's DER SubjectPublicKeyInfo.
	PublicKey []byte `json:"public_key"`
	// Fingerprint is the hex SHA-256 of PublicKey.
	Fingerprint string `json:"fingerprint"`
	// PayloadHash is the hex SHA-256 of the signed bytes.
	PayloadHash string `json:"payload_hash"`
	// Signature is the ASN.1 DER ECDSA signature.
	Signature []byte `json:"signature"`
	Prev      string `json:"prev"`
}

// Writer appends lines to a transcript file. Each line is synced to disk
// before Append returns, so a crash loses at most the line being written.
type Writer struct {
	f       *os.File
	payload hash.Hash // SHA-256 of every byte written so far
	prev    string
	seq     int
	now     func() time.Time
	sealed  bool
}

// Create creates a new transcript at path (failing if it exists) and writes
// its header.
func Create(path string, h Header) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("failed to create transcript: %w", err)
	}
	w := &Writer{f: f, payload: sha256.New(), prev: zeroHash, now: time.Now}
	h.Type, h.Format, h.Prev = "header", Format, zeroHash
	if h.Started.IsZero() {
		h.Started = w.now().UTC()
	}
	if err := w.writeLine(h); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

func (w *Writer) writeLine(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("failed to encode transcript line: %w", err)
	}
	line = append(line, '\n')
	if _, err := w.f.Write(line); err != nil {
		return fmt.Errorf("failed to write transcript: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("failed to sync transcript: %w", err)
	}
	w.payload.Write(line)
	sum := sha256.Sum256(line[:len(line)-1])
	w.prev = hex.EncodeToString(sum[:])
	return nil
}

// Append writes one event. Data must hold only public values and hashes.
func (w *Writer) Append(step, actor string, data map[string]any) error {
	if w.sealed {
		return errors.New("transcript is already sealed")
	}
	w.seq++
	return w.writeLine(Event{Type: "event", Seq: w.seq, Time: w.now().UTC(), Step: step, Actor: actor, Data: data, Prev: w.prev})
}

// Hash returns the hex SHA-256 of every byte written so far: what a bundle or
// a later transcript cites to refer to this one.
func (w *Writer) Hash() string {
	return hex.EncodeToString(w.payload.Sum(nil))
}

// Seal signs the transcript with signer (an ECDSA P-256 key, normally on
// the token), writes the seal line and closes the file. The signature is
// checked against the signer's public key before it is written.
func (w *Writer) Seal(signer crypto.Signer) (*Seal, error) {
	if w.sealed {
		return nil, errors.New("transcript is already sealed")
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("transcript signing key must be ECDSA P-256")
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to encode signing key: %w", err)
	}
	digest := w.payload.Sum(nil)
	sig, err := signer.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("failed to sign transcript: %w", err)
	}
	if !ecdsa.VerifyASN1(pub, digest, sig) {
		return nil, errors.New("transcript signature made by the token does not verify: the token or signing key is faulty")
	}
	fp := sha256.Sum256(spki)
	s := &Seal{Type: "seal", Seq: w.seq + 1, Algorithm: "ECDSA-P256-SHA256", PublicKey: spki,
		Fingerprint: hex.EncodeToString(fp[:]), PayloadHash: hex.EncodeToString(digest), Signature: sig, Prev: w.prev}
	if err := w.writeLine(s); err != nil {
		return nil, err
	}
	w.sealed = true
	if err := w.f.Close(); err != nil {
		return nil, fmt.Errorf("failed to close transcript: %w", err)
	}
	return s, nil
}

// Close closes an unsealed transcript (after a failed ceremony). The file
// stays, unsealed, as evidence of what happened.
func (w *Writer) Close() error {
	if w.sealed {
		return nil
	}
	w.sealed = true
	return w.f.Close()
}

// VerifyError is a verification failure: the transcript is not what it
// claims. Line is 1-based; Field names the JSON field that failed.
type VerifyError struct {
	Line     int
	Field    string
	Expected string
	Found    string
	Reason   string
}

func (e *VerifyError) Error() string {
	s := fmt.Sprintf("transcript line %d: %s", e.Line, e.Reason)
	if e.Field != "" {
		s = fmt.Sprintf("transcript line %d: field %q: %s", e.Line, e.Field, e.Reason)
	}
	if e.Expected != "" || e.Found != "" {
		s += fmt.Sprintf(" (expected %s, found %s)", e.Expected, e.Found)
	}
	return s
}

// Result is what a verified transcript says.
type Result struct {
	Header Header
	Events []Event
	Seal   Seal
	// Pinned reports whether the signer was checked against a caller's key.
	Pinned bool
}

// Verify checks a transcript: every line's prev hash, the sequence numbers,
// the seal's signature, and, when pub is not nil, that the signer is pub.
// Failures are *VerifyError naming the first line that fails.
func Verify(r io.Reader, pub *ecdsa.PublicKey) (*Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("failed to read transcript: %w", err)
	}
	if len(data) == 0 {
		return nil, &VerifyError{Line: 1, Reason: "transcript is empty"}
	}
	if data[len(data)-1] != '\n' {
		n := bytes.Count(data, []byte{'\n'}) + 1
		return nil, &VerifyError{Line: n, Reason: "last line is not terminated by a newline: the transcript is truncated"}
	}
	res := &Result{}
	prev := zeroHash
	payload := sha256.New()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if res.Seal.Type != "" {
			return nil, &VerifyError{Line: n, Reason: "line after the seal"}
		}
		var probe struct {
			Type string `json:"type"`
			Prev string `json:"prev"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return nil, &VerifyError{Line: n, Reason: "not a JSON object: " + err.Error()}
		}
		if probe.Prev != prev {
			return nil, &VerifyError{Line: n, Field: "prev", Reason: fmt.Sprintf("does not match the hash of line %d: line %d was changed, or lines were removed, inserted or reordered here", n-1, n-1), Expected: short(prev), Found: short(probe.Prev)}
		}
		switch {
		case n == 1:
			if probe.Type != "header" {
				return nil, &VerifyError{Line: n, Field: "type", Reason: "first line must be the header", Expected: "header", Found: probe.Type}
			}
			if err := strict(line, &res.Header); err != nil {
				return nil, &VerifyError{Line: n, Reason: "malformed header: " + err.Error()}
			}
			if res.Header.Format != Format {
				return nil, &VerifyError{Line: n, Field: "format", Reason: "unsupported format", Expected: Format, Found: res.Header.Format}
			}
		case probe.Type == "event":
			var e Event
			if err := strict(line, &e); err != nil {
				return nil, &VerifyError{Line: n, Reason: "malformed event: " + err.Error()}
			}
			if e.Seq != len(res.Events)+1 {
				return nil, &VerifyError{Line: n, Field: "seq", Reason: "events out of order", Expected: fmt.Sprint(len(res.Events) + 1), Found: fmt.Sprint(e.Seq)}
			}
			res.Events = append(res.Events, e)
		case probe.Type == "seal":
			if err := strict(line, &res.Seal); err != nil {
				return nil, &VerifyError{Line: n, Reason: "malformed seal: " + err.Error()}
			}
			if err := checkSeal(n, &res.Seal, payload.Sum(nil), pub, len(res.Events)); err != nil {
				return nil, err
			}
			res.Pinned = pub != nil
		default:
			return nil, &VerifyError{Line: n, Field: "type", Reason: "unknown line type", Expected: "event or seal", Found: probe.Type}
		}
		payload.Write(line)
		payload.Write([]byte{'\n'})
		sum := sha256.Sum256(line)
		prev = hex.EncodeToString(sum[:])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read transcript: %w", err)
	}
	if res.Seal.Type == "" {
		return nil, &VerifyError{Line: n, Reason: "transcript has no seal: the ceremony did not finish or the seal was removed"}
	}
	return res, nil
}

func checkSeal(n int, s *Seal, digest []byte, pin *ecdsa.PublicKey, events int) error {
	if s.Seq != events+1 {
		return &VerifyError{Line: n, Field: "seq", Reason: "seal out of order", Expected: fmt.Sprint(events + 1), Found: fmt.Sprint(s.Seq)}
	}
	if s.Algorithm != "ECDSA-P256-SHA256" {
		return &VerifyError{Line: n, Field: "algorithm", Reason: "unsupported signature algorithm", Expected: "ECDSA-P256-SHA256", Found: s.Algorithm}
	}
	k, err := x509.ParsePKIXPublicKey(s.PublicKey)
	if err != nil {
		return &VerifyError{Line: n, Field: "public_key", Reason: "not a public key: " + err.Error()}
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return &VerifyError{Line: n, Field: "public_key", Reason: "not an ECDSA P-256 key"}
	}
	fp := sha256.Sum256(s.PublicKey)
	if got := hex.EncodeToString(fp[:]); got != s.Fingerprint {
		return &VerifyError{Line: n, Field: "fingerprint", Reason: "does not match public_key", Expected: short(got), Found: short(s.Fingerprint)}
	}
	if pin != nil && !pin.Equal(pub) {
		want, _ := x509.MarshalPKIXPublicKey(pin)
		wfp := sha256.Sum256(want)
		return &VerifyError{Line: n, Field: "public_key", Reason: "signed by another key than the pinned one", Expected: short(hex.EncodeToString(wfp[:])), Found: short(s.Fingerprint)}
	}
	if got := hex.EncodeToString(digest); got != s.PayloadHash {
		return &VerifyError{Line: n, Field: "payload_hash", Reason: "does not match the transcript's content", Expected: short(got), Found: short(s.PayloadHash)}
	}
	if !ecdsa.VerifyASN1(pub, digest, s.Signature) {
		return &VerifyError{Line: n, Field: "signature", Reason: "signature does not verify"}
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	if h == "" {
		return "nothing"
	}
	return h
}

func strict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// SignedPayload returns the bytes the seal signs: everything before the
// seal line. With the seal's Signature it lets openssl verify the transcript.
func SignedPayload(transcript []byte) ([]byte, error) {
	t := bytes.TrimSuffix(transcript, []byte{'\n'})
	i := bytes.LastIndexByte(t, '\n')
	if i < 0 {
		return nil, errors.New("transcript has no seal line")
	}
	return transcript[:i+1], nil
}
