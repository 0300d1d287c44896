package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/internal/secret"
	"github.com/keyceremony/keyceremony/transcripts"
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

const verifyShareHelp = `Usage: keyceremony escrow verify-share --share FILE --transcript FILE
                                       (--fingerprint HEX | --seal-words WORDS)
                                       [--identity FILE]... [--passphrase-file FILE]

A custodian, alone, checks their share against the ceremony's transcript,
whose signer they pin out of band (the fingerprint or the seal words the
witnesses wrote down): the share opens with their identity file (age or SSH)
or passphrase, lies on the polynomial the ceremony committed to (the Feldman
check), is the share the transcript gave this custodian (name and index), and
names the escrow blob the transcript recorded. Without --identity or
--passphrase-file a passphrase is asked on the terminal.

--pubkey PEM pins the signer to a key file (keyceremony cannot tell whether it
is genuine, and says so); --insecure-unpinned trusts an unpinned transcript,
which proves nothing: anyone can make a transcript and shares that agree.
Exit 0: the share is good; 3: it is not; 4: the transcript is signed by
another key than the pin (other transcript failures as keyceremony verify);
1: it did not open; 2: no pin.

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
	trPath := fs.String("transcript", "", "the ceremony's `transcript`, verified against the pin")
	pins := addPinFlags(fs)
	var ids, passFiles multi
	fs.Var(&ids, "identity", "age identity `file` or SSH private key (repeatable)")
	fs.Var(&passFiles, "passphrase-file", "`file` holding the passphrase (else asked on the terminal)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *share == "" || len(pos) > 0 || *trPath == "" {
		return usageError("escrow verify-share takes --share FILE and --transcript FILE, with the transcript's signer pinned (--fingerprint HEX or --seal-words \"…\")")
	}
	pin, err := pins.pin("escrow verify-share", *trPath, askLine(ctx, stdin, stderr))
	if err != nil {
		return err
	}
	// The public side first: what the share must match.
	orig, err := ceremony.OpenOriginal(*trPath, pin)
	if err != nil {
		var ve *transcripts.VerifyError
		if errors.As(err, &ve) {
			return verifyFailure{err}
		}
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
	ui := &lineUI{in: stdin, out: stderr}
	identities, err := readIdentities(ctx, ids, passes, ui)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(*share)
	if err != nil {
		return fmt.Errorf("failed to read share file: %w", err)
	}
	sh, opener, err := ceremony.OpenShareFile(ctx, data, *share, identities, passes, ui)
	if err != nil {
		return shareError(err)
	}
	if err := orig.CheckShare(sh); err != nil {
		return verifyFailure{err}
	}
	if err := orig.CheckOpener(sh, opener); err != nil {
		return verifyFailure{err}
	}
	if sh.Escrow != nil {
		if err := orig.CheckBlob(sh.Escrow, "the escrow blob it carries"); err != nil {
			return verifyFailure{err}
		}
	}
	verdict := "OK"
	if !orig.Genuine {
		verdict = "NOT CONFIRMED"
	}
	fmt.Fprintf(stdout, "%s: share %d of %d of custodian %q for ceremony %s opens and matches the commitments of the transcript; %d of %d shares recover the keys\n",
		verdict, sh.Index, sh.Shares, sh.Custodian, show(sh.CeremonyID), sh.Threshold, sh.Shares)
	fmt.Fprintf(stdout, "pinned by: %s\n", show(orig.PinnedBy))
	return nil
}

// readIdentities reads identity files; an encrypted SSH key's passphrase
// is one of passphrases or asked through ui, when a share is sealed to it.
func readIdentities(ctx context.Context, files []string, passphrases [][]byte, ui ceremony.UI) ([]*escrow.Identity, error) {
	var out []*escrow.Identity
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("failed to read identity file: %w", err)
		}
		ids, err := escrow.ParseIdentities(b, ceremony.SSHPassphrase(ctx, b, f, passphrases, ui))
		if err != nil {
			clear(b)
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, ids...)
	}
	return out, nil
}

func readPassphrases(files []string) ([][]byte, error) {
	var out [][]byte
	for _, f := range files {
		b, err := secret.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("failed to read passphrase file: %w", err)
		}
		out = append(out, b)
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
