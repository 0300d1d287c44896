package main

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"crypto"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/keyceremony/keyceremony/internal/sshsig"
	"github.com/keyceremony/keyceremony/transcripts"
)

// Exit codes of keyceremony verify, one per class of failure (README,
// "Verifying a transcript").
var verifyExitCodes = map[transcripts.Class]int{
	transcripts.ClassChain:     3,
	transcripts.ClassSignature: 4,
	transcripts.ClassOrder:     5,
	transcripts.ClassFile:      6,
	transcripts.ClassWitness:   7,
	transcripts.ClassScript:    8,
}

// verifyExitCode maps a verification failure to its exit code.
func verifyExitCode(err error) int {
	var ve *transcripts.VerifyError
	if errors.As(err, &ve) {
		if c, ok := verifyExitCodes[ve.Class]; ok {
			return c
		}
	}
	return exitVerifyFailed
}

const verifyHelp = `Usage: keyceremony verify TRANSCRIPT [--pubkey PEM | --fingerprint HEX] [--files DIR]
                          [--allowed-signers FILE [--witness NAME]...]
                          [--expect-binary SHA256] [--json]

Checks a transcript: the hash chain of every line, the seal's signature, the
signer against a pinned key, the order and consistency of the steps, and
that every step of the ceremony script has an event. With --files, also the
SHA-256 of every file the transcript names. With --allowed-signers, the
witness signatures (witness-NAME.sig beside the transcript). It prints the
SHA-256 of the binary that wrote the transcript; with --expect-binary, that
hash must be the one given (from the published SHA256SUMS).

Exit codes: 0 verified, 1 error, 2 usage, 3 chain broken or malformed,
4 bad signature or wrong signer, 5 steps out of order or inconsistent,
6 file missing or changed, 7 witness signature missing or bad,
8 script step missing, 9 made by another binary than --expect-binary.

`

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// binaryMismatch is a transcript that verifies but was written by another
// binary than --expect-binary names: exit code exitBinaryMismatch.
type binaryMismatch struct{ error }

func (e binaryMismatch) Unwrap() error { return e.error }

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr, verifyHelp)
	pubPath := fs.String("pubkey", "", "signing public key `PEM` the seal must match")
	fingerprint := fs.String("fingerprint", "", "hex SHA-256 of the signing key's DER public key the seal must match")
	filesDir := fs.String("files", "", "`DIR` holding the files the transcript names, to check their SHA-256")
	allowed := fs.String("allowed-signers", "", "OpenSSH allowed-signers `FILE` for the witness signatures")
	var witnesses multiFlag
	fs.Var(&witnesses, "witness", "`NAME` of a witness who must have signed (repeatable)")
	expectBinary := fs.String("expect-binary", "", "hex `SHA256` of the keyceremony binary that must have written the transcript (from SHA256SUMS)")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("verify takes exactly one transcript file")
	}
	if *pubPath != "" && *fingerprint != "" {
		return usageError("give --pubkey or --fingerprint, not both")
	}
	wantBinary := strings.ToLower(*expectBinary)
	if wantBinary != "" && !sha256Hex.MatchString(wantBinary) {
		return usageError("--expect-binary must be 64 hex digits (the binary's line in SHA256SUMS)")
	}
	if len(witnesses) > 0 && *allowed == "" {
		return usageError("--witness needs --allowed-signers to check the witness keys")
	}
	path := pos[0]
	var opts transcripts.Options
	if *pubPath != "" {
		if opts.PublicKey, err = readSealPublicKey(*pubPath); err != nil {
			return err
		}
	}
	if *fingerprint != "" {
		fp := strings.ToLower(strings.ReplaceAll(*fingerprint, ":", ""))
		if !sha256Hex.MatchString(fp) {
			return usageError("--fingerprint must be 64 hex digits (the SHA-256 the seal line shows)")
		}
		opts.Fingerprint = fp
	}
	if *filesDir != "" {
		if st, err := os.Stat(*filesDir); err != nil || !st.IsDir() {
			return fmt.Errorf("--files %s is not a directory", *filesDir)
		}
		opts.Files = os.DirFS(*filesDir)
	}
	if *allowed != "" {
		b, err := os.ReadFile(*allowed)
		if err != nil {
			return fmt.Errorf("failed to read the allowed signers file: %w", err)
		}
		var skipped []sshsig.SkippedLine
		opts.AllowedSigners, skipped = sshsig.ParseAllowedSigners(b)
		for _, l := range skipped {
			fmt.Fprintf(stderr, "keyceremony: warning: %s line %d ignored, as ssh-keygen ignores it: %s\n", *allowed, l.Line, l.Reason)
		}
		if opts.AllowedSigners == nil {
			opts.AllowedSigners = sshsig.AllowedSigners{}
		}
		if opts.Witnesses, err = readWitnessSignatures(path); err != nil {
			return err
		}
		opts.RequireWitnesses = witnesses
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("failed to read transcript: %w", err)
	}
	res, err := transcripts.VerifyBytes(data, opts)
	if err != nil {
		var ve *transcripts.VerifyError
		if !errors.As(err, &ve) {
			return err
		}
		if *asJSON {
			writeJSON(stdout, map[string]any{"ok": false, "exit_code": verifyExitCode(ve), "class": ve.Class.String(),
				"line": ve.Line, "field": ve.Field, "expected": ve.Expected, "found": ve.Found, "reason": ve.Reason, "error": ve.Error()})
		}
		return verifyFailure{fmt.Errorf("%s: %w", path, err)}
	}
	binary := ""
	if res.Header.Build != nil {
		binary = res.Header.Build.BinarySHA256
	}
	var binErr error
	if wantBinary != "" && binary != wantBinary {
		found := "records no binary hash"
		if binary != "" {
			found = "was written by binary sha256 " + transcripts.Printable(binary)
		}
		binErr = binaryMismatch{fmt.Errorf("%s: the transcript %s, not the expected %s: compare SHA256SUMS with keyceremony version on the ceremony laptop", path, found, wantBinary)}
	}
	if *asJSON {
		out := map[string]any{"ok": binErr == nil, "ceremony_id": res.Header.CeremonyID, "events": res.EventCount,
			"signer_fingerprint": res.Seal.Fingerprint, "seal_algorithm": res.Seal.Algorithm, "pinned": res.Pinned, "payload_sha256": res.Seal.PayloadHash,
			"words": res.Seal.Words, "files": res.Files, "files_checked": res.FilesChecked, "witnesses": res.Witnesses,
			"tool": res.Header.Tool, "binary_sha256": binary, "confirmations": confirmations(res)}
		if binErr != nil {
			out["exit_code"], out["error"] = exitBinaryMismatch, binErr.Error()
		}
		writeJSON(stdout, out)
		return binErr
	}
	if binErr != nil {
		return binErr
	}
	// Every string below but the checked fingerprint and words is the
	// signer's to choose: printed so that it cannot start a line or send
	// the terminal an escape sequence (which could hide the warning at
	// the end).
	fmt.Fprintf(stdout, "OK: transcript of ceremony %s, %d events, sealed by key %s\n", show(res.Header.CeremonyID), res.EventCount, res.Seal.Fingerprint)
	fmt.Fprintf(stdout, "seal algorithm: %s\n", show(res.Seal.Algorithm))
	if binary != "" {
		fmt.Fprintf(stdout, "binary: sha256 %s (%s)\n", show(binary), show(res.Header.Tool))
		if wantBinary != "" {
			fmt.Fprintln(stdout, "binary: matches --expect-binary")
		}
	} else {
		fmt.Fprintln(stdout, "binary: the transcript records no binary hash")
	}
	fmt.Fprintf(stdout, "seal words: %s\n", res.Seal.Words)
	if res.FilesChecked {
		absent := 0
		for _, f := range res.Files {
			if f.Absent {
				absent++
			}
		}
		fmt.Fprintf(stdout, "files: %d checked", len(res.Files)-absent)
		if absent > 0 {
			fmt.Fprintf(stdout, "; %d share file(s) not here (held by their custodians)", absent)
		}
		fmt.Fprintln(stdout)
	}
	for _, w := range res.Witnesses {
		fmt.Fprintf(stdout, "witness: %s (%s)\n", show(w.Name), w.Fingerprint)
	}
	for _, c := range confirmations(res) {
		fmt.Fprintf(stdout, "confirmation: %s: %s\n", show(c.What), show(c.How))
	}
	if !res.Pinned {
		fmt.Fprintln(stdout, "warning: the signer was not pinned: pass --pubkey or --fingerprint with the ceremony's signing key to check who sealed it")
	}
	return nil
}

func writeJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintf(w, "%s\n", b)
}

// Witness signatures lie beside the transcript as witness-NAME.sig.
const witnessSigPrefix, witnessSigSuffix = "witness-", ".sig"

var witnessName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// readWitnessSignatures reads witness-NAME.sig files beside the transcript.
func readWitnessSignatures(transcript string) ([]transcripts.WitnessSignature, error) {
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(transcript), witnessSigPrefix+"*"+witnessSigSuffix))
	if err != nil {
		return nil, err
	}
	var out []transcripts.WitnessSignature
	for _, m := range matches {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), witnessSigPrefix), witnessSigSuffix)
		// Beside a transcript from elsewhere, a link to a device would be
		// read forever.
		if fi, err := os.Stat(m); err == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("witness signature %s is not a plain file", m)
		}
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, fmt.Errorf("failed to read witness signature: %w", err)
		}
		out = append(out, transcripts.WitnessSignature{Name: name, Signature: b})
	}
	return out, nil
}

// readSealPublicKey reads a transcript signing key (--pubkey).
func readSealPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read public key: %w", err)
	}
	return parseSealPublicKey(b, path)
}

// parseSealPublicKey reads the PEM PUBLIC KEY (PKIX) file named path, which
// must hold a seal key: ECDSA P-256 or RSA 3072.
func parseSealPublicKey(b []byte, path string) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s is not a PEM PUBLIC KEY", path)
	}
	k, _, err := transcripts.ParseSealKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a transcript signing key: %w", path, err)
	}
	return k, nil
}

// confirmation is how one confirmation or receipt in a transcript was
// obtained, as the transcript recorded it.
type confirmation struct {
	What string `json:"what"`
	How  string `json:"how"`
}

// confirmations lists the import confirmations and the custodians'
// receipts of a transcript: typed by someone, or not asked.
func confirmations(res *transcripts.Result) []confirmation {
	how := func(s string) string {
		if s != "" && s != "confirmed" {
			return s
		}
		return "confirmed, how not recorded (older transcript)"
	}
	var out []confirmation
	for _, e := range res.Events {
		switch d := e.Data.(type) {
		case *events.Import:
			out = append(out, confirmation{"import of " + d.Label, how(d.Confirmation)})
		case *events.Escrow:
			for _, c := range d.Custodians {
				if c.Receipt != "" {
					out = append(out, confirmation{"share receipt of " + c.Name, how(c.Receipt)})
				}
			}
		}
	}
	return out
}
