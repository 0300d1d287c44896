package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/wrap"
)

const renewHelp = `Usage: keyceremony renew --key LABEL --kms-key ARN... (--token-label L | --token-uri URI)
                         (--valid-for DUR | --does-not-expire) --out DIR
                         [--wrapping-algorithm ALG] [--wrapping-key-spec SPEC] [--allow-host-wrap]

Renews imported key material before it expires: the token key LABEL is wrapped
on the token and imported again into each KMS key as EXISTING_KEY_MATERIAL with
the key's current KeyMaterialId, with a new expiry. KMS must report the same
KeyMaterialId back (the same material), the key Enabled and the new expiry.
Before anything is written it checks the token can wrap for KMS (by default the
best algorithm it can do inside the HSM) and fetches every key's import
parameters. Everything is recorded in a transcript in --out DIR, sealed on the
token.

Across an air gap, renew with the usual commands instead: params fetch (online),
wrap (offline), upload (online), which imports the same material again and
checks the KeyMaterialId is unchanged. From the escrow: recover --reimport.

`

const replicateHelp = `Usage: keyceremony replicate --key LABEL --kms-key PRIMARY_ARN --region R... (--token-label L | --token-uri URI)
                             (--valid-for DUR | --does-not-expire) --out DIR
                             [--wrapping-algorithm ALG] [--wrapping-key-spec SPEC] [--allow-host-wrap]

Imports a multi-Region key's material into replicas: KMS never copies imported
material between Regions. The primary (made by a ceremony with
keys[].multi_region: true) is checked like renew checks a key, then replicated
into each --region (ReplicateKey; an existing replica is used as it is), and
the token key LABEL is wrapped with each replica's own import parameters and
imported as the primary's material (EXISTING_KEY_MATERIAL with its
KeyMaterialId). Ciphertexts then decrypt in every Region. Everything is
recorded in a transcript in --out DIR, sealed on the token.

`

func cmdReplicate(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	return renewOrReplicate(ctx, "replicate", replicateHelp, args, stdin, stdout, stderr)
}

func cmdRenew(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	return renewOrReplicate(ctx, "renew", renewHelp, args, stdin, stdout, stderr)
}

func renewOrReplicate(ctx context.Context, name, help string, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags(name, stderr, help)
	label := fs.String("key", "", "`label` of the token key whose material KMS holds")
	var kmsKeys multi
	fs.Var(&kmsKeys, "kms-key", "KMS key `ARN` to renew (repeatable)")
	tokLabel := fs.String("token-label", "", "token `label`")
	uri := fs.String("token-uri", "", "token as an RFC 7512 PKCS#11 `URI`")
	module := fs.String("module", "", "PKCS#11 module `path`")
	pinFile := fs.String("pin-file", "", "`file` holding the user PIN")
	signingKey := fs.String("signing-key", "keyceremony-transcript", "`label` of the token key that seals the transcript (made if missing)")
	out := fs.String("out", "", "new output `directory` for the renewal transcript")
	operator := fs.String("operator", os.Getenv("USER"), "operator `name` recorded in the transcript")
	profile := fs.String("profile", "", "AWS `profile`")
	alg := fs.String("wrapping-algorithm", "", "KMS wrapping `algorithm` (default: the best the token can do inside the HSM)")
	spec := fs.String("wrapping-key-spec", "RSA_4096", "KMS wrapping key `spec`")
	allowHost := fs.Bool("allow-host-wrap", false, "wrap on the host when the token cannot (the key material is in host memory for a moment)")
	validFor := fs.String("valid-for", "", "the material expires after this `duration` (e.g. 365d)")
	noExpiry := fs.Bool("does-not-expire", false, "the material does not expire")
	var regions multi
	if name == "replicate" {
		fs.Var(&regions, "region", "`Region` to replicate into (repeatable)")
	} else {
		fs.StringVar(new(string), "region", "", "KMS `region` (else AWS_REGION)")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError(fmt.Sprintf("%s takes no positional arguments, got %q", name, pos[0]))
	case *label == "" || len(kmsKeys) == 0 || *out == "":
		return usageError(name + " needs --key LABEL, at least one --kms-key ARN and --out DIR")
	case name == "replicate" && (len(kmsKeys) != 1 || len(regions) == 0):
		return usageError("replicate needs one --kms-key (the multi-Region primary's ARN) and at least one --region")
	case (*tokLabel == "") == (*uri == ""):
		return usageError(name + " needs exactly one of --token-label and --token-uri")
	case (*validFor == "") == !*noExpiry:
		return usageError(name + " needs exactly one of --valid-for DUR and --does-not-expire")
	case !wrap.ValidKeySpec(*spec):
		return usageError("--wrapping-key-spec must be one of RSA_2048, RSA_3072, RSA_4096")
	}
	o := &ceremony.RenewOptions{
		Token:    &ceremony.TokenConfig{Label: *tokLabel, URI: *uri, Module: *module, PINFile: *pinFile, SigningKey: *signingKey},
		Label:    *label,
		KMSKeys:  kmsKeys,
		Reimport: ceremony.ReimportOptions{KMS: awskms.Options{Profile: *profile}, KeySpec: *spec, AllowHostWrap: *allowHost},
		OutDir:   *out,
		Operator: *operator,

		ReplicaRegions: regions,
	}
	if f := fs.Lookup("region"); name == "renew" && f.Value.String() != "" {
		o.Reimport.KMS.Region = f.Value.String()
	}
	if *alg != "" {
		if o.Reimport.Algorithm, err = wrap.ParseAlgorithm(*alg); err != nil {
			return usageError("--wrapping-algorithm: " + err.Error())
		}
	}
	if *validFor != "" {
		if o.Reimport.ValidFor, err = ceremony.ParseValidFor(*validFor); err != nil {
			return usageError(fmt.Sprintf("--valid-for %q %v", *validFor, err))
		}
	}
	res, err := ceremony.Renew(ctx, o, &lineUI{in: stdin, out: stderr})
	if err != nil {
		return err
	}
	what := "renewed"
	if name == "replicate" {
		what = "imported into replica"
	}
	for _, arn := range res.ARNs {
		fmt.Fprintf(stdout, "%s %s: same key material %s, kcv %s, %s\n", what, show(arn), show(res.MaterialIDs[arn]), res.KeyCheckValue, expiry(res))
	}
	fmt.Fprintf(stdout, "transcript:  %s\n", res.Transcript)
	fmt.Fprintf(stdout, "signing key: %s\n", res.PublicKey)
	fmt.Fprintf(stdout, "seal sha256: %s\n", res.SealHash)
	return nil
}

func expiry(res *ceremony.RenewResult) string {
	if res.ValidTo == nil {
		return "does not expire"
	}
	return "valid to " + res.ValidTo.UTC().Format("2006-01-02T15:04:05Z")
}
