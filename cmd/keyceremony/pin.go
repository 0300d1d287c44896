package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/keyceremony/keyceremony/ceremony"
)

// pinFlags are the ways to pin the signer of an original transcript, shared
// by recover and escrow verify-share.
type pinFlags struct {
	fingerprint, words, pubkey *string
	insecure                   *bool
}

func addPinFlags(fs *flag.FlagSet) *pinFlags {
	return &pinFlags{
		fingerprint: fs.String("fingerprint", "", "hex SHA-256 of the transcript signer's public key, as the witnesses wrote it down"),
		words:       fs.String("seal-words", "", "the transcript's seal `words`, as the witnesses wrote them down"),
		pubkey:      fs.String("pubkey", "", "signing public key `PEM` the transcript's seal must match (keyceremony cannot tell whether the file is genuine)"),
		insecure:    fs.Bool("insecure-unpinned", false, "go on with a transcript whose signer is not pinned, or none: proves nothing about the real escrow"),
	}
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// pin turns the flags into a ceremony.Pin; cmd names the command in errors.
// Without a pin flag, the seal words are asked at the keyboard (ask), when
// there is one.
func (p *pinFlags) pin(cmd, transcript string, ask func(prompt string) (string, error)) (ceremony.Pin, error) {
	var pin ceremony.Pin
	if *p.fingerprint != "" {
		fp := strings.ToLower(strings.ReplaceAll(*p.fingerprint, ":", ""))
		if !hex64.MatchString(fp) {
			return pin, usageError("--fingerprint must be 64 hex digits (the signer fingerprint the seal line shows)")
		}
		pin.Fingerprint = fp
	}
	pin.Words = *p.words
	if *p.pubkey != "" {
		pub, err := readSealPublicKey(*p.pubkey)
		if err != nil {
			return pin, err
		}
		pin.PublicKey, pin.KeyFile = pub, *p.pubkey
	}
	pin.Insecure = *p.insecure
	pinned := pin.Genuine() || pin.PublicKey != nil
	if !pinned && !pin.Insecure && transcript != "" && ask != nil {
		if w, err := ask(fmt.Sprintf("Seal words of %s, as the witnesses wrote them down", transcript)); err == nil && w != "" {
			pin.Words, pinned = w, true
		}
	}
	switch {
	case transcript == "" && (pinned || !pin.Insecure):
		return pin, usageError(cmd + " needs --transcript ORIGINAL with its signer pinned (--fingerprint HEX or --seal-words \"…\" from the witnesses' notes); --insecure-unpinned goes on without proof")
	case pinned && pin.Insecure:
		return pin, usageError("--insecure-unpinned goes with no pin: drop it, or drop the pin")
	case !pinned && !pin.Insecure:
		return pin, usageError(fmt.Sprintf("%s needs the signer of %s pinned: --fingerprint HEX or --seal-words \"…\" as the witnesses wrote them down (or --insecure-unpinned, which proves nothing)", cmd, transcript))
	}
	return pin, nil
}

// askLine asks a question on the terminal, if stdin is one.
func askLine(ctx context.Context, stdin *os.File, stderr io.Writer) func(string) (string, error) {
	ui := &lineUI{in: stdin, out: stderr}
	return func(prompt string) (string, error) { return ui.Ask(ctx, prompt) }
}
