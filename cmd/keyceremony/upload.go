package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/wrap"
)

const uploadHelp = `Usage: keyceremony upload --bundle FILE [--bundle FILE]... --transcript FILE
                          (--fingerprint HEX | --pubkey PEM)
                          (--valid-for 90d | --valid-to TIME | --does-not-expire)

Online: checks bundles written by keyceremony wrap or an offline ceremony
against the sealed transcript of that ceremony (the signer pinned by the
fingerprint written down in the room), then imports them into their KMS keys
(ImportKeyMaterial) and checks each key: Enabled, expiry as asked, encrypt
and decrypt through KMS. The KeyMaterialDescription carries the key check
value and the transcript's SHA-256 from the verified transcript. Give the
bundles of a multi-Region key together: the primary's is imported first.

A rotation (the transcript records keys[].rotate) imports the new material
with NEW_KEY_MATERIAL (into each replica with EXISTING_KEY_MATERIAL and the
KeyMaterialId KMS gave it), checks it is PENDING_ROTATION, rotates the key
(RotateKeyOnDemand) and checks it CURRENT and the old material NON_CURRENT.
Run again after it stopped, it goes on from where KMS is; after it
succeeded, it changes nothing and says so.

Refused before anything changes: a bundle the transcript does not record
(exit 3), an expired import token, and an upload that would make a key's
material expire sooner than it does now (unless --allow-shorter-expiry).
--insecure-unverified-bundle uploads without the transcript check; the
description then says UNVERIFIED.

`

func cmdUpload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("upload", stderr, uploadHelp)
	var bundles multi
	fs.Var(&bundles, "bundle", "bundle `file` from keyceremony wrap or an offline ceremony (repeat for each Region of a multi-Region key)")
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
	if len(bundles) == 0 || len(pos) > 0 {
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
	case *unverified && len(bundles) > 1:
		return usageError("--insecure-unverified-bundle uploads one --bundle at a time")
	case *pubkey != "" && *fingerprint != "":
		return usageError("give --fingerprint or --pubkey, not both")
	case *fingerprint != "" && !isSHA256Hex(*fingerprint):
		return usageError(fmt.Sprintf("--fingerprint %q must be 64 hex digits, the signer fingerprint the ceremony printed", *fingerprint))
	}
	var datas []ceremony.NamedFile
	var bs []*wrap.Bundle
	for _, path := range bundles {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("failed to read bundle: %w", err)
		}
		b, err := wrap.ParseBundle(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		datas, bs = append(datas, ceremony.NamedFile{Name: path, Data: data}), append(bs, b)
	}
	if len(datas) == 1 {
		datas[0].Name = "" // every error names it, below
	}
	expiry := ceremony.Expiry{ValidFor: *validFor, ValidTo: *validTo, DoesNotExpire: *never}
	o := awskms.Options{Region: *region, Profile: *profile}
	evs := make([]*ceremony.BundleEvidence, len(bs))
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
		if evs, err = ceremony.VerifyBundles(tr, pub, strings.ToLower(*fingerprint), datas); err != nil {
			if len(datas) == 1 {
				return verifyFailure{fmt.Errorf("%s: %w", bundles[0], err)}
			}
			return verifyFailure{fmt.Errorf("%s: %w", *transcript, err)}
		}
	}
	// Any rotation bundle takes the rotation path, which refuses bundles
	// of another key before anything changes: in the import loop below a
	// rotation's material would be imported as a first one (after the
	// bundles before it), and refused by KMS.
	if slices.ContainsFunc(evs, func(e *ceremony.BundleEvidence) bool { return e != nil && e.Rotation }) {
		if *region != "" && *region != bs[0].Region {
			return usageError(fmt.Sprintf("--region %s: a rotation uploads each bundle in its key's own Region; drop --region", *region))
		}
		res, err := ceremony.UploadRotation(ctx, o, bs, evs, expiry)
		var ie *ceremony.IncompleteRotationError
		if errors.As(err, &ie) {
			return usageError(ie.Error() + ": " + uploadAgain(ie.Bundles, *transcript, *fingerprint, *pubkey, *validFor, *validTo, *never))
		}
		if errors.Is(err, wrap.ErrParamsExpired) {
			return rotationExpired(bs)
		}
		if err != nil {
			return err
		}
		printRotation(stdout, res, evs[0].KeyCheckValue)
		return nil
	}
	// A multi-Region key's primary first: a replica takes only material
	// its primary has.
	order := make([]int, 0, len(bs))
	for i := range bs {
		if evs[i] == nil || evs[i].KMSKeyARN == "" || evs[i].KMSKeyARN == bs[i].KeyARN {
			order = append(order, i)
		}
	}
	for i := range bs {
		if evs[i] != nil && evs[i].KMSKeyARN != "" && evs[i].KMSKeyARN != bs[i].KeyARN {
			order = append(order, i)
		}
	}
	for _, i := range order {
		b := bs[i]
		res, err := ceremony.Upload(ctx, o, b, expiry, ceremony.UploadOptions{AllowShorterExpiry: *shorter, Evidence: evs[i]})
		if err != nil {
			return uploadFailure(err, b)
		}
		expiry := "does not expire"
		if res.ValidTo != nil {
			expiry = "material valid to " + res.ValidTo.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "imported into %s (kcv %s): %s, %s\n", show(res.KeyARN), show(b.KeyCheckValue), show(res.Check.Key.State), expiry)
		fmt.Fprintf(stdout, "key material description: %s\n", show(res.Description))
		switch {
		case res.Replica:
			fmt.Fprintf(stdout, "multi-Region replica: the key material %s of its primary (EXISTING_KEY_MATERIAL), KMS reports the same KeyMaterialId\n", show(res.MaterialID))
		case res.Renewed:
			fmt.Fprintf(stdout, "same key material as before: KeyMaterialId %s unchanged\n", show(res.MaterialID))
		default:
			fmt.Fprintf(stdout, "key material id %s\n", show(res.MaterialID))
		}
		fmt.Fprintln(stdout, "encrypt then decrypt through KMS: ok")
	}
	return nil
}

// uploadFailure adds to err the command that fetches new parameters when
// b's expired.
func uploadFailure(err error, b *wrap.Bundle) error {
	if errors.Is(err, wrap.ErrParamsExpired) {
		return &hintError{error: err, hint: fetchHint(b.KeyARN, b.Algorithm, b.KeySpec) + ", then run keyceremony wrap with it and upload the new bundle"}
	}
	return err
}

// rotationExpired is the error of a rotation whose bundles' import token
// expired. Wrapping the material again with keyceremony wrap, as for a
// first import, leads nowhere: wrap's transcript records no rotation, so
// upload would import the material as a first one, which KMS refuses.
func rotationExpired(bs []*wrap.Bundle) error {
	b := bs[0]
	for _, x := range bs {
		if x.CheckValid(time.Now()) != nil {
			b = x
		}
	}
	return &hintError{
		error: fmt.Errorf("%w: the import token in the bundle for %s expired at %s; a rotation cannot be wrapped again with keyceremony wrap (its transcript records no rotation, and KMS refuses the material as a first import): run the offline ceremony with keys[].rotate: true again with new parameters, and upload its bundles before they expire",
			wrap.ErrParamsExpired, b.KeyARN, b.ParamsValidTo.UTC().Format(time.RFC3339)),
		hint: fetchHint(b.KeyARN, b.Algorithm, b.KeySpec) + ", for the new ceremony's keys[].params_file",
	}
}

// uploadAgain is the upload command with every bundle of a key (files, in
// the transcript's directory) and the pin and expiry flags given.
func uploadAgain(files []string, transcript, fingerprint, pubkey, validFor, validTo string, never bool) string {
	cmd := "keyceremony upload"
	for _, f := range files {
		cmd += " --bundle " + ceremony.ShellQuote(filepath.Join(filepath.Dir(transcript), f))
	}
	cmd += " --transcript " + ceremony.ShellQuote(transcript)
	if fingerprint != "" {
		cmd += " --fingerprint " + fingerprint
	} else {
		cmd += " --pubkey " + ceremony.ShellQuote(pubkey)
	}
	switch {
	case validFor != "":
		cmd += " --valid-for " + ceremony.ShellQuote(validFor)
	case validTo != "":
		cmd += " --valid-to " + ceremony.ShellQuote(validTo)
	case never:
		cmd += " --does-not-expire"
	}
	return cmd
}

// printRotation says what an upload of a rotation did.
func printRotation(w io.Writer, res *ceremony.RotationUpload, kcv string) {
	if res.Done {
		fmt.Fprintf(w, "nothing to do: KMS key %s already has this material (kcv %s) as its current key material %s, rotated by an earlier upload; nothing was imported or rotated\n", show(res.KeyARN), show(kcv), show(res.MaterialID))
	} else {
		how := "NEW_KEY_MATERIAL"
		if res.Adopted {
			how = "found imported by an earlier upload that stopped (kcv in its description), imported again as that material (EXISTING_KEY_MATERIAL)"
		}
		fmt.Fprintf(w, "imported into %s (kcv %s): key material %s, %s, PENDING_ROTATION\n", show(res.KeyARN), show(kcv), show(res.MaterialID), how)
		for _, r := range res.Replicas {
			if slices.Contains(res.Imported, r) {
				fmt.Fprintf(w, "imported into replica %s: the same key material %s (EXISTING_KEY_MATERIAL)\n", show(r), show(res.MaterialID))
			} else {
				fmt.Fprintf(w, "replica %s: has the key material %s already (imported by an earlier upload)\n", show(r), show(res.MaterialID))
			}
		}
		fmt.Fprintf(w, "rotated %s (RotateKeyOnDemand): key material %s CURRENT, %s NON_CURRENT\n", show(res.KeyARN), show(res.MaterialID), show(res.Previous))
		fmt.Fprintln(w, "a ciphertext made under the previous material decrypts after the rotation: ok")
		fmt.Fprintf(w, "key material description: %s\n", show(res.Description))
	}
	expiry := "does not expire"
	if res.ValidTo != nil {
		expiry = "valid to " + res.ValidTo.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "current material %s %s; older material NON_CURRENT and imported; encrypt then decrypt through KMS in every Region: ok\n", show(res.MaterialID), expiry)
}
