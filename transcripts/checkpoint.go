package transcripts

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"

	"github.com/keyceremony/keyceremony/transcripts/events"
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
	if w.last.Step == CheckpointStep {
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
	sig, _, err := signDigest(signer, digest[:])
	if err != nil {
		return fmt.Errorf("failed to sign a transcript checkpoint: %w", err)
	}
	return w.AppendStep(stepNo, actor, &events.Checkpoint{Lines: w.lines, LastLineSHA256: w.prev, Signature: sig})
}
