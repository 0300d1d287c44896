package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/wrap"
)

const recoverHelp = `Usage: keyceremony recover --share FILE... [--escrow FILE] --out DIR
                           (--token-label LABEL | --token-uri URI | --drill)
                           --transcript ORIGINAL (--fingerprint HEX | --seal-words WORDS)
                           [--identity FILE]... [--passphrase-file FILE]...
                           [--module PATH [--init-args ARGS]] [--host-unwrap]
                           [--reimport (--valid-for DUR | --does-not-expire) [--allow-host-wrap]]

Recovers the keys of an escrow from the shares of M custodians, rooted in the
ceremony's original transcript, whose signer is pinned out of band: the
fingerprint or the seal words the witnesses wrote down. Each share carries the
escrow blob (the wrapped keys, public); --escrow gives it from escrow.json
instead (needed for shares made before keyceremony/share/v2). The blob must be
the one the transcript recorded; each share is opened and checked against the
transcript's commitments and must be the share the transcript gave its
custodian (a bad share is named); the shares give the escrow key-encryption
key, which enters the token only as a session key; each key is unwrapped as a
sensitive token key with its original label and CKA_ID and its key check value
compared with the transcript's. The recovery writes its own sealed transcript
in --out DIR, recording what pinned the original.

--pubkey PEM pins the signer to a key file; keyceremony cannot tell whether
that file is genuine, and says so. --insecure-unpinned goes on without a pin
(or without a transcript): anyone can make an escrow and shares that agree
with each other, so that proves nothing.

--drill does the same into a scratch SoftHSM token made and destroyed for the
occasion: it touches no production token and no KMS. Drill after every
ceremony. Exit 0: recovered / drill passed (or, not pinned out of band, "not
confirmed"); 3: a share or the escrow failed a check, or the drill failed;
4: the original transcript is signed by another key than the pin (other
transcript failures as keyceremony verify); 2: no pin; 1: another error.

The escrow names its wrapping scheme by its standard (RFC 5649), so any
vendor's token recovers it: the target token is probed and the mechanism
proven to unwrap RFC 5649 is used. A token without one recovers with
--host-unwrap: each key is unwrapped in host memory only for the call that
creates it on the token, then zeroed; the transcript records it.

--reimport then imports each recovered key again into its KMS keys (wrapped on
the token), configured the standard AWS way (AWS_REGION, AWS_ENDPOINT_URL_KMS...).
Before anything is written to the token it checks the token can wrap for KMS
(by default the best algorithm it can do inside the HSM; --allow-host-wrap lets
the host wrap) and fetches each KMS key's import parameters; KMS must report
the key's KeyMaterialId unchanged (the same material).
The user PIN comes from --pin-file, $KEYCEREMONY_PIN or a prompt; passphrases
from --passphrase-file or a prompt; never from a flag.

`

func cmdRecover(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags("recover", stderr, recoverHelp)
	blob := fs.String("escrow", "", "the ceremony's escrow blob `file` (escrow.json); default: the one the shares carry")
	var shares, ids, passFiles multi
	fs.Var(&shares, "share", "a sealed share `file` (repeat for each custodian)")
	fs.Var(&ids, "identity", "age identity `file` or SSH private key (repeatable; an encrypted one's passphrase from --passphrase-file or asked)")
	fs.Var(&passFiles, "passphrase-file", "`file` holding a custodian's passphrase, or an SSH identity's (repeatable; else asked)")
	out := fs.String("out", "", "new output `directory` for the recovery transcript")
	drill := fs.Bool("drill", false, "recover into a scratch SoftHSM token and compare key check values; touches no production token and no KMS")
	label := fs.String("token-label", "", "target token `label`")
	uri := fs.String("token-uri", "", "target token as an RFC 7512 PKCS#11 `URI`")
	module := fs.String("module", "", "PKCS#11 module `path` of the target token")
	initArgs := fs.String("init-args", "", "the module's initialisation `parameters` (NSS softokn: configdir=…); else $"+hsm.InitArgsEnv)
	hostUnwrap := fs.Bool("host-unwrap", false, "unwrap each key in host memory and create it on the token, for a token without an RFC 5649 unwrap mechanism")
	pinFile := fs.String("pin-file", "", "`file` holding the target token's user PIN")
	signingKey := fs.String("signing-key", "keyceremony-transcript", "`label` of the token key that seals the recovery transcript (made if missing)")
	orig := fs.String("transcript", "", "the original ceremony `transcript`: verified against the pin; the escrow, the shares and the key check values must match it")
	pins := addPinFlags(fs)
	operator := fs.String("operator", os.Getenv("USER"), "operator `name` recorded in the transcript")
	reimport := fs.Bool("reimport", false, "import each recovered key again into its KMS keys")
	region := fs.String("region", "", "KMS `region` for --reimport (else AWS_REGION)")
	profile := fs.String("profile", "", "AWS `profile` for --reimport")
	alg := fs.String("wrapping-algorithm", "", "KMS wrapping `algorithm` for --reimport (default: the best the token can do inside the HSM)")
	allowHost := fs.Bool("allow-host-wrap", false, "with --reimport: wrap on the host when the token cannot (the key material is in host memory for a moment)")
	spec := fs.String("wrapping-key-spec", "RSA_4096", "KMS wrapping key `spec` for --reimport")
	validFor := fs.String("valid-for", "", "with --reimport: the material expires after this `duration` (e.g. 90d)")
	noExpiry := fs.Bool("does-not-expire", false, "with --reimport: the material does not expire")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError(fmt.Sprintf("recover takes no positional arguments, got %q", pos[0]))
	case len(shares) == 0 || *out == "":
		return usageError("recover needs at least one --share FILE and --out DIR")
	case *drill && (*label != "" || *uri != "" || *module != "" || *pinFile != "" || *initArgs != "" || *hostUnwrap):
		return usageError("--drill makes its own scratch token: drop --token-label, --token-uri, --module, --init-args, --pin-file and --host-unwrap")
	case *drill && *reimport:
		return usageError("--drill touches no KMS: drop --reimport")
	case !*drill && (*label == "") == (*uri == ""):
		return usageError("recover needs exactly one of --token-label, --token-uri or --drill")
	case !*reimport && (*validFor != "" || *noExpiry):
		return usageError("--valid-for and --does-not-expire go with --reimport")
	case !*reimport && (*allowHost || *alg != ""):
		return usageError("--wrapping-algorithm and --allow-host-wrap go with --reimport")
	case *reimport && (*validFor == "") == !*noExpiry:
		return usageError("--reimport needs exactly one of --valid-for DUR and --does-not-expire")
	}
	if err := checkTokenURIFlag(*uri, "a recovery makes its keys from the escrow's labels"); err != nil {
		return err
	}
	lock, err := ceremony.LockDir(*out, "keyceremony recover")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	o := &ceremony.RecoverOptions{EscrowFile: *blob, ShareFiles: shares, Drill: *drill, Transcript: *orig, OutDir: *out, Operator: *operator, HostUnwrap: *hostUnwrap}
	if !*drill {
		o.Token = &ceremony.TokenConfig{Label: *label, URI: *uri, Module: *module, InitArgs: *initArgs, PINFile: *pinFile, SigningKey: *signingKey}
	}
	if *reimport {
		var a wrap.Algorithm
		if *alg != "" {
			if a, err = wrap.ParseAlgorithm(*alg); err != nil {
				return usageError("--wrapping-algorithm: " + err.Error())
			}
		}
		if !wrap.ValidKeySpec(*spec) {
			return usageError("--wrapping-key-spec must be one of RSA_2048, RSA_3072, RSA_4096")
		}
		ro := &ceremony.ReimportOptions{KMS: awskms.Options{Region: *region, Profile: *profile}, Algorithm: a, KeySpec: *spec, AllowHostWrap: *allowHost}
		if *validFor != "" {
			d, err := ceremony.ParseValidFor(*validFor)
			if err != nil {
				return usageError(fmt.Sprintf("--valid-for %q %v", *validFor, err))
			}
			ro.ValidFor = d
		}
		o.Reimport = ro
	}
	if o.Pin, err = pins.pin("recover", *orig, askLine(ctx, stdin, stderr)); err != nil {
		return err
	}
	if o.Passphrases, err = readPassphrases(passFiles); err != nil {
		return err
	}
	ui := &lineUI{in: stdin, out: stderr}
	if o.Identities, err = readIdentities(ctx, ids, o.Passphrases, ui); err != nil {
		return err
	}
	res, err := ceremony.Recover(ctx, o, ui)
	if err != nil {
		var se *escrow.ShareError
		var ve *transcripts.VerifyError
		var me *ceremony.MismatchError
		switch {
		case errors.Is(err, ceremony.ErrDrillFailed), errors.As(err, &se), errors.As(err, &ve), errors.As(err, &me), errors.Is(err, hsm.ErrUnwrap):
			return verifyFailure{err}
		case errors.Is(err, escrow.ErrWrongIdentity):
			return shareError(err)
		case errors.Is(err, escrow.ErrTooFewShares):
			return &hintError{error: err, hint: "bring the shares of more custodians (one --share each)"}
		}
		return err
	}
	what := "recovered into the token"
	if res.Drill {
		what = "recovered into a scratch SoftHSM token (destroyed)"
		if res.Confirmed {
			fmt.Fprintf(stdout, "drill PASSED: the escrow recovers every key\n")
		} else {
			fmt.Fprintf(stdout, "drill NOT CONFIRMED: every key recovered, but the original transcript was pinned by %s; pin it with --fingerprint or --seal-words from the witnesses' notes\n", show(res.PinnedBy))
		}
	} else if !res.Confirmed {
		fmt.Fprintf(stdout, "WARNING: not confirmed: the original transcript was pinned by %s\n", show(res.PinnedBy))
	}
	fmt.Fprintf(stdout, "pinned by:   %s\n", show(res.PinnedBy))
	fmt.Fprintf(stdout, "shares used: %s\n", show(strings.Join(res.Custodians, ", ")))
	for i, c := range res.Custodians {
		fmt.Fprintf(stdout, "  share of %s opened by %s\n", show(c), show(res.OpenedBy[i]))
	}
	for _, k := range res.Keys {
		fmt.Fprintf(stdout, "key %s (id %s): %s, kcv %s matches", show(k.Label), show(k.ID), what, show(k.KeyCheckValue))
		if len(k.Reimported) > 0 {
			fmt.Fprintf(stdout, ", imported again into %s", show(strings.Join(k.Reimported, ", ")))
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "transcript:  %s\n", res.Transcript)
	fmt.Fprintf(stdout, "signing key: %s\n", res.PublicKey)
	fmt.Fprintf(stdout, "seal sha256: %s\n", res.SealHash)
	return nil
}
