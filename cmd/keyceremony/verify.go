package main

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/keyceremony/keyceremony/transcripts"
)

func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr, "Usage: keyceremony verify [--pubkey PEM] TRANSCRIPT\n\nChecks the transcript's hash chain and its seal. With --pubkey, also checks\nthat the seal was made by that key (pin it: a seal alone proves only that\nsomeone with some key signed).\n\n")
	pubPath := fs.String("pubkey", "", "signing public key `PEM` the seal must match")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("verify takes exactly one transcript file")
	}
	var pub *ecdsa.PublicKey
	if *pubPath != "" {
		if pub, err = readECPublicKey(*pubPath); err != nil {
			return err
		}
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("failed to open transcript: %w", err)
	}
	defer f.Close()
	res, err := transcripts.Verify(f, pub)
	if err != nil {
		var ve *transcripts.VerifyError
		if errors.As(err, &ve) {
			return verifyFailure{fmt.Errorf("%s: %w", pos[0], err)}
		}
		return err
	}
	fmt.Fprintf(stdout, "OK: transcript of ceremony %s, %d events, sealed by key %s\n", res.Header.CeremonyID, len(res.Events), res.Seal.Fingerprint)
	if !res.Pinned {
		fmt.Fprintln(stdout, "warning: the signer was not pinned: pass --pubkey with the ceremony's signing key to check who sealed it")
	}
	return nil
}

func readECPublicKey(path string) (*ecdsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s is not a PEM PUBLIC KEY", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, not an ECDSA key", path, k)
	}
	return ek, nil
}
