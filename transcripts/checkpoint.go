package transcripts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
)

// CheckpointStep is the step name of a checkpoint event.
const CheckpointStep = "checkpoint"

// CheckpointPayload is the text a checkpoint signs: like the seal payload,
// it names the ceremony, the number of lines before the checkpoint and the
// SHA-256 of the last of them, so it commits to every line before it.
func CheckpointPayload(ceremonyID string, lines int, lastLine string) []byte {
	return []byte(Format + " checkpoint\n" +
		"ceremony_id: " + strconv.Quote(ceremonyID) + "\n" +
		"lines: " + strconv.Itoa(lines) + "\n" +
		"last_line_sha256: " + lastLine + "\n")
}

// Checkpoint appends, unless the last event already is one, a checkpoint event of script step stepNo: a signature
// by signer (the key the header names) over everything written so far. An
// unsealed transcript is only as trustworthy as its last checkpoint: a
// resumed ceremony trusts no event after it.
func (w *Writer) Checkpoint(stepNo int, actor string, signer crypto.Signer) error {
	if w.sealed {
		return errors.New("transcript is already sealed")
	}
	if w.lastStep == CheckpointStep {
		return nil // nothing new to sign
	}
	sk, err := NewSigningKey("", signer.Public())
	if err != nil {
		return err
	}
	if w.header.SigningKey == nil || w.header.SigningKey.Fingerprint != sk.Fingerprint {
		return errors.New("a checkpoint must be signed by the signing key the header names")
	}
	digest := sha256.Sum256(CheckpointPayload(w.header.CeremonyID, w.lines, w.prev))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("failed to sign a transcript checkpoint: %w", err)
	}
	return w.AppendStep(stepNo, CheckpointStep, actor, map[string]any{"lines": w.lines, "last_line_sha256": w.prev, "signature": sig})
}

// LastCheckpoint returns the number of events (a prefix of r.Events) covered
// by the last checkpoint whose signature verifies against the signing key
// the header names, or 0 when there is none.
func (r *Reopened) LastCheckpoint() int {
	if r.Header.SigningKey == nil {
		return 0
	}
	k, err := x509.ParsePKIXPublicKey(r.Header.SigningKey.PublicKey)
	if err != nil {
		return 0
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return 0
	}
	last := 0
	for i, e := range r.Events {
		if e.Step != CheckpointStep {
			continue
		}
		// Event i is line i+2: the header is line 1.
		sigText, _ := e.Data["signature"].(string)
		sig, err := decodeBase64(sigText)
		if err != nil {
			continue
		}
		digest := sha256.Sum256(CheckpointPayload(r.Header.CeremonyID, i+1, e.Prev))
		if ecdsa.VerifyASN1(pub, digest[:], sig) {
			last = i + 1
		}
	}
	return last
}

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
