package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/wrap"
)

const paramsHelp = `Usage: keyceremony params fetch --key ARN --algorithm ALG [--key-spec SPEC] --out FILE

Fetches KMS import parameters (GetParametersForImport) for an existing KMS key
with Origin EXTERNAL and writes them to a params file (keyceremony/params/v1)
to carry into the offline room for keyceremony wrap or an offline ceremony.
The parameters are valid for 24 hours. The file also records what the key was
(state, current KeyMaterialId, multi-Region role), so that the offline room
can refuse early what KMS would refuse; upload checks the key again.

`

func cmdParams(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "fetch" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, paramsHelp)
			return nil
		}
		return usageError("params takes a subcommand: keyceremony params fetch --key ARN --algorithm ALG --out FILE")
	}
	fs := newFlags("params fetch", stderr, paramsHelp)
	key := fs.String("key", "", "KMS key `ARN` or id (Origin EXTERNAL)")
	alg := fs.String("algorithm", "", "wrapping `algorithm`: RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256")
	spec := fs.String("key-spec", "RSA_4096", "wrapping key `spec`: RSA_2048, RSA_3072 or RSA_4096")
	out := fs.String("out", "", "params `file` to write (never overwritten)")
	region := fs.String("region", "", "AWS `region` (default: the key ARN's, else the AWS configuration's)")
	profile := fs.String("profile", "", "AWS shared config `profile`")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if *key == "" || *alg == "" || *out == "" || len(pos) > 0 {
		return usageError("params fetch takes --key ARN --algorithm ALG --out FILE (and optionally --key-spec, --region, --profile)")
	}
	a, err := wrap.ParseAlgorithm(*alg)
	if err != nil {
		return usageError(err.Error())
	}
	if !wrap.ValidKeySpec(*spec) {
		return usageError(fmt.Sprintf("--key-spec %q must be one of RSA_2048, RSA_3072, RSA_4096", *spec))
	}
	if err := checkNew(*out); err != nil {
		return err
	}
	p, err := ceremony.FetchParams(ctx, awskms.Options{Region: *region, Profile: *profile}, *key, a, *spec)
	if err != nil {
		return err
	}
	data, err := p.Marshal()
	if err != nil {
		return err
	}
	if err := evidence.Create(*out, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "import parameters for %s: %s with %s, valid until %s\n", show(p.KeyARN), p.Algorithm, show(p.KeySpec), p.ValidTo.UTC().Format(time.RFC3339))
	switch h := p.AtFetch; {
	case h == nil || h.KeyMaterialID == "":
	case h.State == "PendingImport":
		fmt.Fprintf(stdout, "KMS key %s is PendingImport with key material %s (expired or deleted): KMS takes only that material again (keyceremony renew, or recover --reimport); these parameters serve that, and a rotation only once it is Enabled again\n", show(p.KeyARN), show(h.KeyMaterialID))
	default:
		fmt.Fprintf(stdout, "KMS key %s is %s with key material %s: KMS takes only that material again, or new material as a rotation (keys[].rotate: true with this params_file)\n", show(p.KeyARN), show(h.State), show(h.KeyMaterialID))
	}
	fmt.Fprintf(stdout, "wrote %s (sha256 %s)\n", *out, evidence.Hash(data))
	fmt.Fprintf(stdout, "wrapping public key sha256 %s: write it down and pin it offline (keys[].wrapping_key_sha256 in the config, or wrap --wrapping-key-sha256): a swapped file is then refused\n", evidence.Hash(p.PublicKey))
	fmt.Fprintf(stdout, "next: carry it to the offline machine and run keyceremony wrap --params %s --wrapping-key-sha256 %s --key LABEL --token TOKEN --out-dir DIR\n", *out, evidence.Hash(p.PublicKey))
	return nil
}

// fetchHint is the command that fetches fresh parameters for a key.
func fetchHint(arn string, alg wrap.Algorithm, spec string) string {
	return fmt.Sprintf("fetch new parameters online with: keyceremony params fetch --key %s --algorithm %s --key-spec %s --out params-new.json", arn, alg, spec)
}
