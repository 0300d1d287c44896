package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/wrap"
)

const uploadHelp = `Usage: keyceremony upload --bundle FILE (--valid-for 90d | --valid-to TIME | --does-not-expire)

With --transcript and --pubkey (or --fingerprint), the bundle must be one
the verified transcript of its ceremony recorded.

Online: imports a bundle written by keyceremony wrap into its KMS key
(ImportKeyMaterial), then checks the key: Enabled, expiry as asked, encrypt
and decrypt through KMS. A bundle whose import token expired is refused
before KMS is called.

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
	fingerprint := fs.String("fingerprint", "", "or the hex SHA-256 `fingerprint` of that key")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *bundle == "" || len(pos) > 0 {
		return usageError("upload takes --bundle FILE and one of --valid-for, --valid-to, --does-not-expire")
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
	data, err := os.ReadFile(*bundle)
	if err != nil {
		return fmt.Errorf("failed to read bundle: %w", err)
	}
	b, err := wrap.ParseBundle(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *bundle, err)
	}
	if *transcript != "" {
		var pub *ecdsa.PublicKey
		if *pubkey != "" {
			if pub, err = readECPublicKey(*pubkey); err != nil {
				return err
			}
		}
		tr, err := os.ReadFile(*transcript)
		if err != nil {
			return fmt.Errorf("failed to read transcript: %w", err)
		}
		if err := ceremony.CheckBundleRecorded(tr, pub, *fingerprint, data); err != nil {
			return verifyFailure{fmt.Errorf("%s: %w", *bundle, err)}
		}
	} else {
		fmt.Fprintln(stderr, "keyceremony: warning: the bundle is not checked against its ceremony's transcript: pass --transcript and --pubkey to refuse a swapped bundle")
	}
	res, err := ceremony.Upload(ctx, awskms.Options{Region: *region, Profile: *profile}, b, ceremony.Expiry{ValidFor: *validFor, ValidTo: *validTo, DoesNotExpire: *never})
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
	fmt.Fprintln(stdout, "encrypt then decrypt through KMS: ok")
	return nil
}
