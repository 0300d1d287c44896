// Command keyceremony runs offline key ceremonies on a PKCS#11 HSM and
// imports the key material into AWS KMS.
//
// Usage:
//
//	keyceremony run --config ceremony.yaml [--allow-host-wrap]
//	keyceremony params fetch --key ARN --algorithm ALG --out params.json
//	keyceremony wrap --params params.json --wrapping-key-sha256 HEX --key LABEL --token LABEL --out-dir DIR
//	keyceremony upload --bundle DIR/bundle-LABEL.json --transcript DIR/transcript.jsonl --fingerprint HEX --valid-for 90d
//	keyceremony verify [--pubkey signing-key.pem] transcript.jsonl
//	keyceremony escrow verify-share --share FILE --transcript FILE --fingerprint HEX
//	keyceremony recover --escrow FILE --share FILE... (--token-label L | --drill) --out DIR
//	keyceremony probe --token LABEL [--module PATH] [--init-args ARGS]
//	keyceremony status [--transcript FILE]... [KEY_ARN...] [--warn 30d] [--json] [--prom FILE]
//	keyceremony renew --key LABEL --kms-key ARN --token-label L --valid-for 365d --out DIR
//	keyceremony version [--json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/keyceremony/keyceremony/internal/secret"
	"github.com/keyceremony/keyceremony/transcripts"
)

// Exit codes.
const (
	exitOK           = 0
	exitError        = 1 // operational error: nothing verified or done
	exitUsage        = 2 // bad command line
	exitVerifyFailed = 3 // a transcript, share or escrow failed verification; a drill failed (transcript failures: see verifyExitCode)

	exitBinaryMismatch = 9 // verify --expect-binary: the transcript was written by another binary
)

const usage = `keyceremony runs key ceremonies on a PKCS#11 HSM and imports the key material into AWS KMS.

Usage:
  keyceremony [tui --config FILE]        run a ceremony in the terminal UI (default config ./ceremony.yaml)
  keyceremony init [--out FILE] [--key LABEL]... [--custodian NAME=RECIPIENT]...
                                         write a commented starter ceremony.yaml (asks in a terminal)
  keyceremony run --config FILE          run a whole ceremony non-interactively from a config file
  keyceremony params fetch --key ARN --algorithm ALG --out FILE
                                         (online) fetch KMS import parameters into a params file
  keyceremony wrap --params FILE --wrapping-key-sha256 HEX --key LABEL --token LABEL --out-dir DIR
                                         (offline) wrap a token key for KMS into a bundle
  keyceremony upload --bundle FILE --transcript FILE --fingerprint HEX --valid-for 90d
                                         (online) check a bundle against its transcript, import it, check the key
  keyceremony verify [--pubkey PEM] FILE check a transcript: chain, seal, order, files, witnesses
  keyceremony script --config FILE       print the ceremony as a numbered checklist for witnesses
  keyceremony witness sign --key KEY --name NAME FILE
                                         co-sign a sealed transcript with an SSH key
  keyceremony check-key --key ARN        check a KMS key: state, expiry, encrypt/decrypt
  keyceremony status [--transcript FILE]... [KEY_ARN...] [--warn 30d] [--json] [--prom FILE]
                                         monitor keys: state, expiry, materials, match with the record
  keyceremony renew --key LABEL --kms-key ARN --token-label L --valid-for 365d --out DIR
                                         import the same material again with a new expiry
  keyceremony replicate --key LABEL --kms-key PRIMARY_ARN --region R --token-label L --valid-for 365d --out DIR
                                         replicate a multi-Region key and import its material there
  keyceremony escrow verify-share --share FILE --transcript FILE --fingerprint HEX
                                         a custodian checks their escrow share alone
  keyceremony recover --share FILE... --transcript FILE --fingerprint HEX
                      (--token-label L | --drill) --out DIR
                                         recover keys from M escrow shares, or drill it
  keyceremony probe (--token LABEL | --config FILE)
                                         what the token can do for a ceremony (known-answer tests)
  keyceremony version [--json]           print this binary's version, build and SHA-256

The user PIN comes from token.pin_file, token.pin_env, $KEYCEREMONY_PIN, or a
no-echo prompt when stdin is a terminal; never from a flag.
KMS is configured the standard AWS way: AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL_KMS, and the usual credentials chain.
`

func main() {
	// Before any secret is read: no core file, and no other process of the
	// same user can read this one's memory.
	if err := secret.Harden(); err != nil {
		fmt.Fprintf(os.Stderr, "keyceremony: error: failed to turn core dumps off: %v\n", err)
		os.Exit(exitError)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if len(args) == 0 {
		// With no arguments in a terminal, open the TUI on ./ceremony.yaml.
		if _, err := os.Stat(defaultConfig); err != nil {
			fmt.Fprintf(stderr, "keyceremony: error: no %s here: write one with keyceremony init, or run keyceremony tui --config FILE (keyceremony help lists every command)\n", defaultConfig)
			return exitUsage
		}
		args = []string{"tui"}
	}
	var err error
	switch args[0] {
	case "tui":
		err = cmdTUI(ctx, args[1:], stdin, stdout, stderr)
	case "init":
		err = cmdInit(ctx, args[1:], stdin, stdout, stderr)
	case "run":
		err = cmdRun(ctx, args[1:], stdin, stdout, stderr)
	case "verify":
		err = cmdVerify(args[1:], stdout, stderr)
	case "script":
		err = cmdScript(args[1:], stdout, stderr)
	case "witness":
		err = cmdWitness(args[1:], stdin, stdout, stderr)
	case "params":
		err = cmdParams(ctx, args[1:], stdout, stderr)
	case "wrap":
		err = cmdWrap(ctx, args[1:], stdin, stdout, stderr)
	case "upload":
		err = cmdUpload(ctx, args[1:], stdout, stderr)
	case "status":
		err = cmdStatus(ctx, args[1:], stdout, stderr)
	case "renew":
		err = cmdRenew(ctx, args[1:], stdin, stdout, stderr)
	case "replicate":
		err = cmdReplicate(ctx, args[1:], stdin, stdout, stderr)
	case "check-key":
		err = cmdCheckKey(ctx, args[1:], stdout, stderr)
	case "escrow":
		err = cmdEscrow(ctx, args[1:], stdin, stdout, stderr)
	case "recover":
		err = cmdRecover(ctx, args[1:], stdin, stdout, stderr)
	case "probe":
		err = cmdProbe(ctx, args[1:], stdin, stdout, stderr)
	case "version":
		err = cmdVersion(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError(fmt.Sprintf("unknown command %q: run keyceremony help", args[0]))
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var quiet silentError
	if errors.As(err, &quiet) {
		return exitError
	}
	var ec exitCode
	if errors.As(err, &ec) {
		// A documented outcome (status), not a failure of the command.
		fmt.Fprintf(stderr, "keyceremony: %s\n", oneLine(err.Error()))
		return ec.code
	}
	fmt.Fprintf(stderr, "keyceremony: error: %s\n", oneLine(err.Error()))
	var he *hintError
	if errors.As(err, &he) && he.hint != "" {
		fmt.Fprintf(stderr, "keyceremony: hint: %s\n", oneLine(he.hint))
	}
	var ue usageError
	var ve verifyFailure
	var be binaryMismatch
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &be):
		return exitBinaryMismatch
	case errors.As(err, &ve):
		return verifyExitCode(err)
	}
	return exitError
}

type usageError string

// silentError exits with exitError without a message: what happened was
// already said on stdout.
type silentError struct{ error }

func (e usageError) Error() string { return string(e) }

type verifyFailure struct{ error }

func (e verifyFailure) Unwrap() error { return e.error }

type hintError struct {
	error
	hint string
}

func (e *hintError) Unwrap() error { return e.error }

// show escapes a string for the terminal (transcripts.Printable): every
// string a transcript, bundle, params file, KMS or token chose is printed
// through it, so that none can start a line, move the cursor or hide text.
var show = transcripts.Printable

// oneLine makes a message one line with nothing a terminal acts on: a
// message can quote a transcript, a bundle, a params file, KMS or a token.
func oneLine(s string) string {
	return show(strings.Join(strings.Fields(s), " "))
}

func newFlags(name string, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, help)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, allowing them after positional arguments too.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	// The flag package prints its error and the whole help on a bad flag;
	// keep the help for -h and give a bad flag one line, said once.
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(out)
				usage()
				return nil, err
			}
			return nil, usageError(err.Error() + ": see keyceremony " + fs.Name() + " -h")
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
