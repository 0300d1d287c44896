package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/wrap"
)

const probeHelp = `Usage: keyceremony probe (--token LABEL | --token-uri URI | --config FILE)
                         [--module PATH] [--init-args ARGS] [--pin-file FILE]
                         [--algorithm ALG] [--allow-host-wrap]
                         [--seal-algorithm ecdsa-p256|rsa-3072] [--json]

Finds out what the token can do for keyceremony, on throw-away session objects
that are destroyed afterwards: AES-256 generation with the ceremony's template,
the key check value, the transcript signing keys (ECDSA P-256 and RSA 3072:
which one a ceremony would make, or --seal-algorithm's), what each AES key-wrap
mechanism the module lists actually computes (RFC 5649, RFC 3394 or PKCS#7 +
RFC 3394, by a known-answer test), and each KMS wrapping algorithm inside the
token. A ceremony runs the same probe when it opens the token.

Exit 0: a ceremony can run on this token (with --algorithm, or the config's
kms.wrapping_algorithm, inside the HSM unless host wrapping is allowed); 3: it
cannot, and the output says what is missing; 1: the token could not be probed.
The user PIN comes from --pin-file, token.pin_file / token.pin_env (with
--config), $KEYCEREMONY_PIN, or a no-echo prompt; never from a flag.

`

func cmdProbe(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags("probe", stderr, probeHelp)
	token := fs.String("token", "", "token `label`")
	uri := fs.String("token-uri", "", "token as an RFC 7512 PKCS#11 `URI`")
	config := fs.String("config", "", "ceremony config `file` (its token section and kms settings)")
	module := fs.String("module", "", "PKCS#11 module `path` (overrides token.module and $"+hsm.ModuleEnv+")")
	initArgs := fs.String("init-args", "", "the module's initialisation `parameters` (overrides token.init_args and $"+hsm.InitArgsEnv+")")
	pinFile := fs.String("pin-file", "", "`file` holding the user PIN")
	alg := fs.String("algorithm", "", "the KMS wrapping `algorithm` the ceremony will use")
	allowHost := fs.Bool("allow-host-wrap", false, "the ceremony may wrap on the host")
	sealAlg := fs.String("seal-algorithm", "", "the transcript signing key the ceremony must make: ecdsa-p256 or rsa-3072 (overrides token.seal_algorithm)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fmt.Sprintf("probe takes no positional arguments, got %q", pos[0]))
	}
	n := 0
	for _, s := range []string{*token, *uri, *config} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usageError("probe needs exactly one of --token LABEL, --token-uri URI and --config FILE")
	}
	if err := checkTokenURIFlag(*uri, "probe chooses no key"); err != nil {
		return err
	}
	tc := ceremony.TokenConfig{Label: *token, URI: *uri}
	var a wrap.Algorithm
	if *config != "" {
		cfg, err := ceremony.LoadConfig(*config)
		if err != nil {
			return err
		}
		tc = cfg.Token
		if !cfg.Offline() {
			a = wrap.Algorithm(cfg.KMS.WrappingAlgorithm)
		}
		*allowHost = *allowHost || cfg.KMS.AllowHostWrap
	} else if err := tc.Validate(); err != nil {
		return usageError(err.Error())
	}
	if *alg != "" {
		if a, err = wrap.ParseAlgorithm(*alg); err != nil {
			return usageError("--algorithm: " + err.Error())
		}
	}
	if *module != "" {
		tc.Module = *module
	}
	if *initArgs != "" {
		tc.InitArgs = *initArgs
	}
	if *pinFile != "" {
		tc.PINFile, tc.PINEnv = *pinFile, ""
	}
	if *sealAlg != "" {
		if _, err := hsm.ParseSealKey(*sealAlg); err != nil {
			return usageError("--seal-algorithm " + err.Error())
		}
		tc.SealAlgorithm = *sealAlg
	}
	tc.ProbeAll = true
	tok, err := ceremony.OpenToken(ctx, &tc, &lineUI{in: stdin, out: stderr})
	if err != nil {
		return err
	}
	defer tok.Close()
	caps, err := tok.Probe()
	if err != nil {
		return err
	}
	lacks := caps.Lacks(a, *allowHost)
	if *asJSON {
		out, _ := json.MarshalIndent(struct {
			Token  hsm.Info          `json:"token"`
			Probe  *hsm.Capabilities `json:"probe"`
			Lacks  []string          `json:"lacks"`
			CanRun bool              `json:"can_run"`
		}{tok.Info(), caps, lacks, len(lacks) == 0}, "", "  ")
		fmt.Fprintln(stdout, string(out))
	} else {
		printProbe(stdout, tok.Info(), caps)
	}
	if len(lacks) > 0 {
		return verifyFailure{fmt.Errorf("a ceremony cannot run on token %q: it lacks %s", tok.Info().Label, strings.Join(lacks, "; "))}
	}
	fmt.Fprintf(stdout, "a ceremony can run on this token\n")
	return nil
}

func printProbe(w io.Writer, in hsm.Info, c *hsm.Capabilities) {
	fmt.Fprintf(w, "token %q (serial %s, %s %s, slot %d) in %s (%s)\n", in.Label, show(in.Serial), show(in.Manufacturer), show(in.Model), in.SlotID, show(in.Module), show(in.Library))
	fmt.Fprintf(w, "  AES-256 generation (ceremony template): %s\n", c.AESGenerate)
	fmt.Fprintf(w, "  key check value:                       %s\n", c.CheckValue)
	fmt.Fprintf(w, "  transcript signing key:                %s\n", c.Signing)
	fmt.Fprintf(w, "    ECDSA P-256 (made, signed, verified): %s\n", c.SigningECDSAP256)
	fmt.Fprintf(w, "    RSA 3072 (made, signed, verified):    %s\n", c.SigningRSA3072)
	fmt.Fprintf(w, "  AES key-wrap mechanisms (known-answer test, 32-byte key):\n")
	for _, r := range c.KeyWrap {
		fmt.Fprintf(w, "    %-44s wraps %s; unwraps %s\n", r.Mechanism, r.Wraps, r.Unwraps)
	}
	none := func(s string) string {
		if s == "" {
			return "none"
		}
		return s
	}
	fmt.Fprintf(w, "  escrow (RFC 5649): made with %s, recovered with %s\n", none(c.EscrowMechanism), none(c.RecoveryMechanism))
	fmt.Fprintf(w, "  KMS wrapping inside the HSM:\n")
	for _, r := range c.KMS {
		yes := "no "
		if r.InHSM {
			yes = "yes"
		}
		fmt.Fprintf(w, "    %-26s %s  %s\n", r.Algorithm, yes, r.Method)
	}
}

// checkTokenURIFlag refuses a --token-uri that does not parse, naming the
// flag, and, unless the command chooses a key by it (noKey empty), one with
// object=, id= or type= (RFC 7512 attributes are honoured or refused, never
// ignored).
func checkTokenURIFlag(uri, noKey string) error {
	if uri == "" {
		return nil
	}
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return usageError("--token-uri: " + err.Error())
	}
	if noKey != "" && (u.Object != "" || len(u.ID) > 0 || u.Type != "") {
		return usageError("--token-uri: object, id and type choose a key, but " + noKey + ": drop them from the URI")
	}
	return nil
}
