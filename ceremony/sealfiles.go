package ceremony

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
)

// finishSeal completes a ceremony whose process died after it sealed the
// transcript but before it wrote the seal's payload and signature files
// beside it: both follow from the sealed transcript, which is verified
// (chain, seal by the header's key, every file it names) first. It returns
// nil, nil when there is nothing to finish: the transcript is not sealed,
// or both files are there (a resume then says the ceremony is complete).
func finishSeal(out, transcript string) (*Result, error) {
	payloadPath := filepath.Join(out, SealPayloadFile)
	sigPath := filepath.Join(out, SealSignatureFile)
	_, perr := os.Stat(payloadPath)
	_, serr := os.Stat(sigPath)
	if perr == nil && serr == nil {
		return nil, nil
	}
	data, err := evidence.ReadFile(transcript, transcripts.MaxSize)
	if err != nil {
		return nil, nil // resume reports it
	}
	// A seal line cut short (the process died writing it) seals nothing:
	// the resume cuts it off, records it, and seals again.
	if !bytes.HasSuffix(data, []byte("\n")) {
		return nil, nil
	}
	trimmed := bytes.TrimRight(data, "\n")
	last := trimmed[bytes.LastIndexByte(trimmed, '\n')+1:]
	if !bytes.Contains(last, []byte(`"type":"seal"`)) {
		return nil, nil
	}
	res, err := transcripts.VerifyBytes(data, transcripts.Options{Files: os.DirFS(out)})
	if err != nil {
		return nil, fmt.Errorf("the transcript in %s is sealed but does not verify, so its seal files cannot be written: %w", out, err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{payloadPath, res.Payload}, {sigPath, res.Seal.Signature}} {
		old, err := evidence.ReadFile(f.path, evidence.MaxFileSize)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := evidence.Create(f.path, f.data, 0o644); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, err
		case !bytes.Equal(old, f.data):
			return nil, fmt.Errorf("%s is not what the sealed transcript says it must be: restore it from a copy", f.path)
		}
	}
	return &Result{OutDir: out, Transcript: transcript, PublicKey: filepath.Join(out, "signing-key.pem"),
		SealHash: evidence.Hash(data), SealWords: res.Seal.Words, SealPayload: payloadPath, SealSignature: sigPath}, nil
}
