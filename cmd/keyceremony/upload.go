package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/wrap"
)

const uploadHelp = `Usage: keyceremony upload --bundle FILE --transcript FILE (--fingerprint HEX | --pubkey PEM)
                          (--valid-for 90d | --valid-to TIME | --does-not-expire)

Online: checks a bundle written by keyceremony wrap or an offline ceremony
against the sealed transcript of that ceremony (the signer pinned by the
fingerprint written down in the room), then imports it into its KMS key
(ImportKeyMaterial) and checks the key: Enabled, expiry as asked, encrypt
and decrypt through KMS. The KeyMaterialDescription carries the key check
value and the transcript's SHA-256 from the verified transcript.

Refused before anything changes: a bundle the transcript does not record
(exit 3), an expired import token, and an upload that would make a key's
material expire sooner than it does now (unless --allow-shorter-expiry).
--insecure-unverified-bundle uploads without the transcript check; the
description then says UNVERIFIED.

`

func cmdUpload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("upload", stderr, uploadHelp)
	bundle := fs.String("bundle", "", "bundle `file` from keyceremony wrap")
	validFor := fs.String("valid-for", "", "material expires after this `duration` (e.g. 90d, 2160h; at most 365d)")
	validTo := fs.String("valid-to", "", "material expires at this RFC 3339 `time`")
	never := fs.Bool("does-not-expire", false, "import with KEY_MATERIAL_DOES_NOT_EXPIRE")
	region := fs.String("region", "", "AWS `region` (default: the bundle's)")
	profile := fs.String("profile", "", "AWS shared config `profile`")
	transcript := fs.String("transcript", "", "the sealed `transcript` of the ceremony that wrote the bundle: the bundle must be the one it recorded")
	pubkey := fs.String("pubkey", "", "signing key `PEM` that must have sealed --transcript")
	fingerprint := fs.String("fingerprint", "", "or the hex SHA-256 `fingerprint` of that key, as the ceremony printed it")
	unverified := fs.Bool("insecure-unverified-bundle", false, "upload without checking the bundle against its ceremony's transcript")
	shorter := fs.Bool("allow-shorter-expiry", false, "allow the import to make the key's material expire sooner than it does now")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *bundle == "" || len(pos) > 0 {
		return usageError("upload takes --bundle FILE, --transcript FILE with --fingerprint HEX, and one of --valid-for, --valid-to, --does-not-expire")
	}
	n := 0
	for _, set := range []bool{*validFor != "", *validTo != "", *never} {
		if set {
			n++
		}
	}
	if n != 1 {
		return usageError("upload needs exactly one of --valid-for DURATION, --valid-to TIME and --does-not-expire: KMS cannot change the expiry later without importing again")
	}
	pinned := *pubkey != "" || *fingerprint != ""
	switch {
	case *unverified && (*transcript != "" || pinned):
		return usageError("--insecure-unverified-bundle skips the transcript check: drop it, or drop --transcript, --pubkey and --fingerprint")
	case !*unverified && (*transcript == "" || !pinned):
		return usageError("upload needs --transcript FILE and --fingerprint HEX (or --pubkey PEM): the bundle is checked against the sealed transcript of its ceremony before KMS sees it (or, at your own risk, --insecure-unverified-bundle)")
	case *pubkey != "" && *fingerprint != "":
		return usageError("give --fingerprint or --pubkey, not both")
	case *fingerprint != "" && !isSHA256Hex(*fingerprint):
		return usageError(fmt.Sprintf("--fingerprint %q must be 64 hex digits, the signer fingerprint the ceremony printed", *fingerprint))
	}
	data, err := os.ReadFile(*bundle)
	if err != nil {
		return fmt.Errorf("failed to read bundle: %w", err)
	}
	b, err := wrap.ParseBundle(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *bundle, err)
	}
	opts := ceremony.UploadOptions{AllowShorterExpiry: *shorter}
	if *unverified {
		fmt.Fprintln(stderr, "keyceremony: warning: --insecure-unverified-bundle: the bundle is NOT checked against its ceremony's transcript; KMS will bind the key to whatever material it holds")
	} else {
		var pub crypto.PublicKey
		if *pubkey != "" {
			if pub, err = readSealPublicKey(*pubkey); err != nil {
				return err
			}
		}
		tr, err := os.ReadFile(*transcript)
		if err != nil {
			return fmt.Errorf("failed to read transcript: %w", err)
		}
		if opts.Evidence, err = ceremony.VerifyBundle(tr, pub, strings.ToLower(*fingerprint), data); err != nil {
			return verifyFailure{fmt.Errorf("%s: %w", *bundle, err)}
		}
	}
	res, err := ceremony.Upload(ctx, awskms.Options{Region: *region, Profile: *profile}, b, ceremony.Expiry{ValidFor: *validFor, ValidTo: *validTo, DoesNotExpire: *never}, opts)
	if err != nil {
		if errors.Is(err, wrap.ErrParamsExpired) {
			return &hintError{error: err, hint: fetchHint(b.KeyARN, b.Algorithm, b.KeySpec) + ", then run keyceremony wrap with it and upload the new bundle"}
		}
		return err
	}
	expiry := "does not expire"
	if res.ValidTo != nil {
		expiry = "material valid to " + res.ValidTo.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "imported into %s (kcv %s): %s, %s\n", res.KeyARN, b.KeyCheckValue, res.Check.Key.State, expiry)
	fmt.Fprintf(stdout, "key material description: %s\n", res.Description)
	if res.Renewed {
		fmt.Fprintf(stdout, "same key material as before: KeyMaterialId %s unchanged\n", res.MaterialID)
	} else {
		fmt.Fprintf(stdout, "key material id %s\n", res.MaterialID)
	}
	fmt.Fprintln(stdout, "encrypt then decrypt through KMS: ok")
	return nil
}
