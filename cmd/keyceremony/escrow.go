package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

const verifyShareHelp = `Usage: keyceremony escrow verify-share --share FILE (--transcript FILE [--pubkey PEM] | --escrow FILE)
                                       [--identity FILE]... [--passphrase-file FILE]

A custodian, alone, checks their share: it opens with their identity file (age
or SSH) or passphrase, and it lies on the polynomial the ceremony committed to
(the Feldman check) in a verified transcript (pin its signer with --pubkey) or
an escrow blob. Without --identity or --passphrase-file a passphrase is asked
on the terminal. Exit 0: the share is good; 3: it is not; 1: it did not open.

`

func cmdEscrow(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify-share" {
		return usageError("escrow takes a subcommand: keyceremony escrow verify-share --share FILE ...")
	}
	return cmdVerifyShare(ctx, args[1:], stdin, stdout, stderr)
}

func cmdVerifyShare(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags("escrow verify-share", stderr, verifyShareHelp)
	share := fs.String("share", "", "sealed share `file`")
	trPath := fs.String("transcript", "", "the ceremony's `transcript`, verified first")
	pubPath := fs.String("pubkey", "", "signing public key `PEM` the transcript's seal must match")
	blobPath := fs.String("escrow", "", "the ceremony's escrow blob `file` (escrow.json), instead of a transcript")
	var ids, passFiles multi
	fs.Var(&ids, "identity", "age identity `file` or unencrypted SSH private key (repeatable)")
	fs.Var(&passFiles, "passphrase-file", "`file` holding the passphrase (else asked on the terminal)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *share == "" || len(pos) > 0 || (*trPath == "") == (*blobPath == "") {
		return usageError("escrow verify-share takes --share FILE and one of --transcript FILE or --escrow FILE")
	}
	if *pubPath != "" && *trPath == "" {
		return usageError("--pubkey pins the signer of --transcript: give the transcript too")
	}

	// The public side first: what the share must match.
	var com *escrow.Commitments
	var blobSum, source string
	if *trPath != "" {
		var pub *ecdsa.PublicKey
		if *pubPath != "" {
			if pub, err = readECPublicKey(*pubPath); err != nil {
				return err
			}
		}
		data, err := os.ReadFile(*trPath)
		if err != nil {
			return fmt.Errorf("failed to read transcript: %w", err)
		}
		res, err := transcripts.Verify(bytes.NewReader(data), pub)
		if err != nil {
			var ve *transcripts.VerifyError
			if errors.As(err, &ve) {
				return verifyFailure{fmt.Errorf("%s: %w", *trPath, err)}
			}
			return err
		}
		if com, err = ceremony.EscrowCommitments(res); err != nil {
			return fmt.Errorf("%s: %w", *trPath, err)
		}
		for _, e := range res.Events {
			if e.Step == "escrow" {
				blobSum, _ = e.Data["file_sha256"].(string)
			}
		}
		source = "the verified transcript"
		if pub == nil {
			source += " (signer not pinned: pass --pubkey)"
		}
	} else {
		data, err := os.ReadFile(*blobPath)
		if err != nil {
			return fmt.Errorf("failed to read the escrow blob: %w", err)
		}
		b, err := escrow.ParseBlob(data)
		if err != nil {
			return fmt.Errorf("%s: %w", *blobPath, err)
		}
		com, blobSum, source = b.Public(), evidence.Hash(data), "the escrow blob"
	}

	identities, err := readIdentities(ids)
	if err != nil {
		return err
	}
	passes, err := readPassphrases(passFiles)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range passes {
			clear(p)
		}
	}()
	data, err := os.ReadFile(*share)
	if err != nil {
		return fmt.Errorf("failed to read share file: %w", err)
	}
	ui := &lineUI{in: stdin, out: stderr}
	sh, err := ceremony.OpenShareFile(ctx, data, *share, identities, passes, ui)
	if err != nil {
		return shareError(err)
	}
	if err := com.Verify(sh); err != nil {
		return verifyFailure{err}
	}
	if blobSum != "" && sh.EscrowSHA256 != blobSum {
		return verifyFailure{&escrow.ShareError{File: *share, Custodian: sh.Custodian, Index: sh.Index, Reason: "was made with another escrow blob than " + source + " names"}}
	}
	fmt.Fprintf(stdout, "OK: share %d of %d of custodian %q for ceremony %s opens and matches the commitments of %s; %d of %d shares recover the keys\n",
		sh.Index, sh.Shares, sh.Custodian, sh.CeremonyID, source, sh.Threshold, sh.Shares)
	return nil
}

func readIdentities(files []string) ([]age.Identity, error) {
	var out []age.Identity
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("failed to read identity file: %w", err)
		}
		ids, err := escrow.ParseIdentities(b)
		clear(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, ids...)
	}
	return out, nil
}

func readPassphrases(files []string) ([][]byte, error) {
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("failed to read passphrase file: %w", err)
		}
		n := len(b)
		for n > 0 && (b[n-1] == '\n' || b[n-1] == '\r') {
			n--
		}
		out = append(out, append([]byte(nil), b[:n]...))
		clear(b)
	}
	return out, nil
}

// shareError maps a share that does not open to a hint, and a bad share to
// the verification-failed exit code.
func shareError(err error) error {
	var se *escrow.ShareError
	switch {
	case errors.Is(err, escrow.ErrWrongIdentity):
		return &hintError{error: err, hint: "a share opens only with the identity file or passphrase of the custodian it was sealed to"}
	case errors.As(err, &se):
		return verifyFailure{err}
	}
	return err
}
