package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/wrap"
)

const wrapHelp = `Usage: keyceremony wrap PARAMS --wrapping-key-sha256 HEX --key LABEL (--token LABEL | --config FILE) --out-dir DIR [--allow-host-wrap]

Offline: wraps an existing AES key on the token for a KMS import. It opens no
network connection and reads no AWS configuration. PARAMS is one of
  --params FILE                       a keyceremony params file (keyceremony params fetch)
  --aws-params FILE --algorithm ALG   the JSON output of aws kms get-parameters-for-import
  --public-key PublicKey.bin --import-token ImportToken.bin --key-arn ARN
      --algorithm ALG --params-valid-to TIME
                                      the files of AWS's import guide
--wrapping-key-sha256 pins the wrapping public key: the SHA-256 of its DER as
params fetch printed it (for AWS's files: sha256sum PublicKey.bin, or
jq -r .PublicKey get-parameters.json | base64 -d | sha256sum, run online).
Parameters carrying another key are refused before the token is opened.
--insecure-unpinned-wrapping-key wraps without that check (recorded in the
transcript): whoever swapped the file would get the key.
DIR receives bundle-LABEL.json (for keyceremony upload), EncryptedKeyMaterial.bin
and ImportToken.bin (for aws kms import-key-material), signing-key.pem and a
transcript sealed on the token. Expired parameters are refused.

The key must be AES-256 and extractable; a key that is not sensitive or
allows encrypt, decrypt, sign or derive (not one keyceremony made) is refused
unless --accept-key-usage, which the transcript records.

The user PIN comes from token.pin_file, token.pin_env (with --config),
$KEYCEREMONY_PIN, or a no-echo prompt; never from a flag.

`

func cmdWrap(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags("wrap", stderr, wrapHelp)
	paramsFile := fs.String("params", "", "keyceremony params `file`")
	awsParams := fs.String("aws-params", "", "JSON output `file` of aws kms get-parameters-for-import")
	pubFile := fs.String("public-key", "", "PublicKey.bin `file` (DER) of AWS's guide")
	tokFile := fs.String("import-token", "", "ImportToken.bin `file` of AWS's guide")
	keyARN := fs.String("key-arn", "", "KMS key `ARN` (with --public-key)")
	alg := fs.String("algorithm", "", "wrapping `algorithm` the AWS parameters were fetched for")
	validTo := fs.String("params-valid-to", "", "ParametersValidTo (RFC 3339 `time`) of the AWS parameters (with --public-key)")
	key := fs.String("key", "", "`label` of the AES key on the token")
	keyID := fs.String("key-id", "", "CKA_ID of the AES key on the token, in `hex` (with or instead of --key)")
	tokenURI := fs.String("token-uri", "", "token (and key: object=, id=, type=secret-key) as an RFC 7512 PKCS#11 `URI`")
	acceptUsage := fs.Bool("accept-key-usage", false, "wrap a key that is not sensitive or allows encrypt, decrypt, sign or derive (recorded in the transcript)")
	token := fs.String("token", "", "token `label`")
	config := fs.String("config", "", "ceremony config `file` (its token and kms.allow_host_wrap; its key if it lists one)")
	module := fs.String("module", "", "PKCS#11 module `path` (overrides token.module and $"+hsm.ModuleEnv+")")
	initArgs := fs.String("init-args", "", "the module's initialisation `parameters` (overrides token.init_args and $"+hsm.InitArgsEnv+")")
	outDir := fs.String("out-dir", "", "output `directory` (files in it are never overwritten)")
	allowHost := fs.Bool("allow-host-wrap", false, "wrap on the host when the token cannot wrap with the algorithm inside the HSM")
	pinHash := fs.String("wrapping-key-sha256", "", "hex SHA-256 of the wrapping public key, as params fetch printed it (`HEX`)")
	unpinned := fs.Bool("insecure-unpinned-wrapping-key", false, "wrap without checking the wrapping key against a pin: a swapped params file gets the key")
	id := fs.String("id", "", "ceremony `id` for the transcript (default wrap-LABEL)")
	operator := fs.String("operator", "", "operator `name` for the transcript")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fmt.Sprintf("wrap takes no positional arguments (got %q): see keyceremony wrap --help", pos[0]))
	}
	if *outDir == "" {
		return usageError("wrap needs --out-dir DIR for the bundle, the AWS CLI files and the transcript")
	}
	if err := checkTokenURIFlag(*tokenURI, ""); err != nil {
		return err
	}
	if n := countSet(*token, *tokenURI, *config); n != 1 {
		return usageError("wrap needs exactly one of --token LABEL, --token-uri URI and --config FILE to choose the token")
	}
	var kid []byte
	if *keyID != "" {
		var err error
		if kid, err = hex.DecodeString(*keyID); err != nil || len(kid) == 0 {
			return usageError(fmt.Sprintf("--key-id %q must be the key's CKA_ID in hex", *keyID))
		}
	}

	switch {
	case *pinHash != "" && *unpinned:
		return usageError("--wrapping-key-sha256 and --insecure-unpinned-wrapping-key are exclusive: keep the pin")
	case *pinHash != "" && !isSHA256Hex(*pinHash):
		return usageError(fmt.Sprintf("--wrapping-key-sha256 %q must be 64 hex digits, the wrapping public key's SHA-256 that params fetch printed", *pinHash))
	case *pinHash == "" && !*unpinned:
		return usageError("wrap needs --wrapping-key-sha256 HEX, the wrapping public key's SHA-256 that params fetch printed online: a params file swapped on its way in would otherwise get the key")
	}
	lock, err := ceremony.LockDir(*outDir, "keyceremony wrap")
	if err != nil {
		return err
	}
	defer lock.Unlock()

	// Parameters first: expired or malformed ones stop us before the token.
	plan := &ceremony.WrapPlan{KeyLabel: *key, KeyID: kid, OutDir: *outDir, CeremonyID: *id, Operator: *operator, WrappingKeySHA256: *pinHash}
	if *acceptUsage {
		plan.AcceptKeyUsage, plan.AcceptedBy = true, "--accept-key-usage"
	}
	if *unpinned {
		plan.UnpinnedAllowedBy = "--insecure-unpinned-wrapping-key"
	}
	n := 0
	for _, s := range []string{*paramsFile, *awsParams, *pubFile} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usageError("wrap needs exactly one of --params FILE, --aws-params FILE, or --public-key FILE with --import-token, --key-arn, --algorithm and --params-valid-to")
	}
	switch {
	case *paramsFile != "":
		if *alg != "" || *keyARN != "" || *tokFile != "" || *validTo != "" {
			return usageError("--params files carry the algorithm, key ARN, token and validity: drop --algorithm, --key-arn, --import-token and --params-valid-to")
		}
		data, err := os.ReadFile(*paramsFile)
		if err != nil {
			return fmt.Errorf("failed to read params file: %w", err)
		}
		p, err := wrap.ParseParams(data)
		if err != nil {
			return fmt.Errorf("%s: %w", *paramsFile, err)
		}
		plan.Params, plan.ParamsFile, plan.ParamsSource = p, data, "keyceremony params file"
	case *awsParams != "":
		if *alg == "" {
			return usageError("--aws-params needs --algorithm: the output of get-parameters-for-import does not say which wrapping algorithm was asked for")
		}
		a, err := wrap.ParseAlgorithm(*alg)
		if err != nil {
			return usageError(err.Error())
		}
		data, err := os.ReadFile(*awsParams)
		if err != nil {
			return fmt.Errorf("failed to read the aws kms get-parameters-for-import output: %w", err)
		}
		p, err := wrap.ParseAWSCLIParams(data, a)
		if err != nil {
			return fmt.Errorf("%s: %w", *awsParams, err)
		}
		plan.Params, plan.ParamsFile, plan.ParamsSource = p, data, "aws kms get-parameters-for-import output"
	default:
		if *tokFile == "" || *keyARN == "" || *alg == "" || *validTo == "" {
			return usageError("--public-key needs --import-token ImportToken.bin, --key-arn ARN, --algorithm ALG and --params-valid-to TIME (the ParametersValidTo that get-parameters-for-import printed)")
		}
		a, err := wrap.ParseAlgorithm(*alg)
		if err != nil {
			return usageError(err.Error())
		}
		vt, err := time.Parse(time.RFC3339, *validTo)
		if err != nil {
			return usageError(fmt.Sprintf("--params-valid-to %q must be an RFC 3339 time such as 2026-11-24T18:35:16Z", *validTo))
		}
		pub, err := os.ReadFile(*pubFile)
		if err != nil {
			return fmt.Errorf("failed to read the public key: %w", err)
		}
		tok, err := os.ReadFile(*tokFile)
		if err != nil {
			return fmt.Errorf("failed to read the import token: %w", err)
		}
		p, err := wrap.ParamsFromFiles(*keyARN, pub, tok, a, vt)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", *pubFile, *tokFile, err)
		}
		plan.Params, plan.ParamsFile, plan.ParamsSource = p, append(append([]byte(nil), pub...), tok...), "PublicKey.bin + ImportToken.bin"
	}
	p := plan.Params
	if plan.UnpinnedAllowedBy != "" {
		fmt.Fprintf(stderr, "keyceremony: warning: the wrapping key (sha256 %s) is NOT pinned (--insecure-unpinned-wrapping-key): compare it with what params fetch printed\n", evidence.Hash(p.PublicKey))
	}
	if err := p.CheckValid(time.Now()); err != nil {
		return &hintError{error: err, hint: fetchHint(p.KeyARN, p.Algorithm, p.KeySpec)}
	}

	if *config != "" {
		cfg, err := ceremony.LoadConfig(*config)
		if err != nil {
			return err
		}
		plan.Token = cfg.Token
		plan.AllowHostWrap, plan.HostWrapAllowedBy = cfg.KMS.AllowHostWrap, cfg.KMS.HostWrapAllowedBy
		if plan.Operator == "" {
			plan.Operator = cfg.Ceremony.Operator
		}
		if plan.KeyLabel == "" && len(plan.KeyID) == 0 {
			if len(cfg.Keys) != 1 {
				return usageError(fmt.Sprintf("%s lists %d keys: choose one with --key LABEL", *config, len(cfg.Keys)))
			}
			plan.KeyLabel = cfg.Keys[0].Label
		}
	} else {
		plan.Token = ceremony.TokenConfig{Label: *token, URI: *tokenURI}
		if err := plan.Token.Validate(); err != nil {
			return usageError(err.Error())
		}
	}
	uriKey := false
	if *tokenURI != "" {
		u, _ := hsm.ParseURI(*tokenURI) // validated
		uriKey = u.Object != "" || len(u.ID) > 0
	}
	if plan.KeyLabel == "" && len(plan.KeyID) == 0 && !uriKey {
		return usageError("wrap needs --key LABEL or --key-id HEX (or object= / id= in --token-uri): the AES key on the token")
	}
	if *initArgs != "" {
		plan.Token.InitArgs = *initArgs
	}
	if *module != "" {
		plan.Token.Module = *module
	}
	if *allowHost {
		plan.AllowHostWrap, plan.HostWrapAllowedBy = true, "--allow-host-wrap"
	}
	for _, name := range []string{"transcript.jsonl", "bundle-" + plan.KeyLabel + ".json", "EncryptedKeyMaterial.bin", "ImportToken.bin"} {
		if name == "bundle-.json" {
			continue
		}
		if err := checkNew(*outDir + "/" + name); err != nil {
			return err
		}
	}

	ui := &lineUI{in: stdin, out: stderr}
	res, err := ceremony.WrapOffline(ctx, plan, ui)
	if err != nil {
		if errors.Is(err, wrap.ErrParamsExpired) {
			return &hintError{error: err, hint: fetchHint(p.KeyARN, p.Algorithm, p.KeySpec)}
		}
		return err
	}
	where := "inside the HSM (" + res.Method + ")"
	if !res.InHSM {
		where = "on the host (" + res.HostReason + ")"
	}
	fmt.Fprintf(stdout, "key %s (kcv %s) wrapped for %s with %s %s\n", show(plan.KeyLabel), res.KeyCheckValue, show(p.KeyARN), p.Algorithm, where)
	fmt.Fprintf(stdout, "bundle:                 %s\n", res.Bundle)
	fmt.Fprintf(stdout, "EncryptedKeyMaterial:   %s\n", res.EncryptedKeyMaterial)
	fmt.Fprintf(stdout, "ImportToken:            %s\n", res.ImportToken)
	fmt.Fprintf(stdout, "transcript:             %s (sealed, sha256 %s)\n", res.Transcript, res.SealHash)
	fmt.Fprintf(stdout, "parameters valid until: %s\n", p.ValidTo.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "signer fingerprint:     %s (write it down: upload checks the transcript against it)\n", res.Fingerprint)
	fmt.Fprintf(stdout, "next: carry the bundle and the transcript online and run keyceremony upload; choose the expiry (--valid-for, --valid-to TIME or --does-not-expire):\n  %s\n", res.UploadCommand("--valid-for 365d"))
	return nil
}

func countSet(vs ...string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

// checkNew refuses a path that already exists, before any work is done.
func checkNew(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists: keyceremony never overwrites evidence; choose a new path or output directory", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to check %s: %w", path, err)
	}
	return nil
}

// isSHA256Hex reports whether s is 64 hex digits.
func isSHA256Hex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}
