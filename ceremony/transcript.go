package ceremony

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/keyceremony/keyceremony/transcripts"
)

// Files the seal step writes beside the transcript.
const (
	// SealPayloadFile is the text the seal signs; SealSignatureFile its
	// signature (DER ECDSA or RSA PKCS#1 v1.5): openssl dgst -sha256 -verify signing-key.pem
	// -signature seal.sig seal.payload.
	SealPayloadFile   = "seal.payload"
	SealSignatureFile = "seal.sig"
)

// TimeSource is what the transcript header says about event times.
const TimeSource = "host clock, UTC, not synchronised by keyceremony: compare it with a reference clock at the start and record the difference in the script"

// header makes the transcript header: who, what tool and binary, which
// config, which signing key, which script.
func (s *state) header() (*transcripts.Header, error) {
	signer, err := s.tok.Signer(s.cfg.Token.SigningKey, true)
	if err != nil {
		return nil, err
	}
	sk, err := transcripts.NewSigningKey(s.cfg.Token.SigningKey, signer.Public())
	if err != nil {
		return nil, err
	}
	s.signer = signer
	build, err := Binary()
	if err != nil {
		return nil, err
	}
	h := &transcripts.Header{
		CeremonyID: s.cfg.Ceremony.ID,
		Tool:       ToolVersion(),
		Build:      build,
		Operator:   s.cfg.Ceremony.Operator,
		ConfigHash: s.cfg.Hash(),
		SigningKey: sk,
		TimeSource: TimeSource,
		Started:    testOnlyNow().UTC(),
	}
	// A connected ceremony (Run) follows the script, and begins inside one
	// of its steps; an air-gap command (WrapOffline) has no script.
	if s.stepNo > 0 {
		h.Script = ScriptSteps()
		h.ScriptHash = sha256Hex([]byte(Script(s.cfg)))
	}
	return h, nil
}

// ScriptSteps lists the steps of a connected ceremony with their numbers.
func ScriptSteps() []transcripts.ScriptStep {
	var out []transcripts.ScriptStep
	for _, st := range Steps() {
		out = append(out, transcripts.ScriptStep{No: st.No, ID: st.ID, Title: st.Title})
	}
	return out
}

// witnessChecks says, per step, what the witnesses watch for and write down.
var witnessChecks = map[string][]string{
	"custodians": {
		"Each custodian present confirms their name and the fingerprint of their age recipient (or types their passphrase, masked); the quorum M of N is read aloud: ________",
	},
	"escrow": {
		"Every M-subset of the shares was recombined and checked (quorum check ok); each custodian receives their sealed share file and checks it: keyceremony escrow verify-share.",
		"The escrow blob's file name and SHA-256 are read aloud and written here: ________",
	},
	"open-token": {
		"The token's label and serial shown match the token taken out of its tamper-evident bag; bag number: ________",
		"The PIN is typed by its holder out of sight of the cameras; it is never spoken or written into the transcript.",
	},
	"kms-keys": {
		"Each KMS key is in state PendingImport with origin EXTERNAL; its ARN is written here: ________",
	},
	"generate-keys": {
		"For each key, the key check value (KCV) is read aloud and written here: ________",
	},
	"fetch-params": {
		"The import parameters' expiry (parameters_valid_to) is in the future; time: ________",
	},
	"wrap": {
		"The key is wrapped inside the HSM (in_hsm: true); its KCV matches the one written at generation.",
	},
	"import": {
		"The operator types each key's label to confirm the import; the KCV is the one written at generation.",
	},
	"check-import": {
		"Each KMS key is Enabled, with the expected expiry, and encrypt/decrypt succeeded.",
	},
	"seal": {
		"The seal words are read aloud; each witness writes them down: ________",
		"Each witness signs the seal payload: keyceremony witness sign --key KEY --name NAME transcript.jsonl",
	},
}

// Script renders the ceremony as a numbered Markdown checklist for the
// witnesses to follow and initial. Step numbers are the transcript's
// step_no; the transcript header records the SHA-256 of this text.
func Script(cfg *Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Key ceremony script: %s\n\n", cfg.Ceremony.ID)
	fmt.Fprintf(&b, "- Operator: %s\n", cfg.Ceremony.Operator)
	fmt.Fprintf(&b, "- Token: %s\n", tokenName(&cfg.Token))
	fmt.Fprintf(&b, "- Transcript signing key label: %s\n", cfg.Token.SigningKey)
	region := cfg.KMS.Region
	if region == "" {
		region = "from the AWS environment (AWS_REGION)"
	}
	fmt.Fprintf(&b, "- KMS region: %s; wrapping %s with %s\n", region, cfg.KMS.WrappingAlgorithm, cfg.KMS.WrappingKeySpec)
	b.WriteString("- Keys:\n")
	for _, k := range cfg.Keys {
		target := k.KMSKeyID
		if k.Create {
			target = "a new KMS key"
		}
		fmt.Fprintf(&b, "  - %s -> %s%s\n", k.Label, target, k.targetNote())
	}
	b.WriteString("\nBefore step 1: record the date, the room, the people present, and the difference between the machine's clock and a reference clock.\n\n")
	b.WriteString("| | |\n|---|---|\n| Date and room | |\n| Present | |\n| Clock difference | |\n\n")
	b.WriteString(binaryCheck())
	for _, st := range Steps() {
		fmt.Fprintf(&b, "## Step %d: %s\n\n", st.No, st.Title)
		fmt.Fprintf(&b, "Transcript events: step_no %d (%s).\n\n", st.No, st.ID)
		for _, c := range witnessChecks[st.ID] {
			fmt.Fprintf(&b, "- [ ] %s\n", c)
		}
		b.WriteString("- [ ] Done. Initials: operator ____ witnesses ____ ____ ____\n\n")
	}
	b.WriteString("## After the ceremony\n\n")
	b.WriteString("- [ ] `keyceremony verify --pubkey signing-key.pem --files OUT_DIR --allowed-signers allowed_signers transcript.jsonl` succeeds, and prints the seal words written above.\n")
	b.WriteString("- [ ] `openssl dgst -sha256 -verify signing-key.pem -signature seal.sig seal.payload` prints Verified OK.\n")
	return b.String()
}

// binaryCheck is the script's first check: the witnesses compare the running
// binary's SHA-256 with the SHA256SUMS published before the ceremony.
func binaryCheck() string {
	var b strings.Builder
	b.WriteString("## Before step 1: the software\n\n")
	build, err := Binary()
	if err != nil || build.BinarySHA256 == "" {
		b.WriteString("- [ ] The running binary could not be hashed here: run `keyceremony version` on the ceremony laptop and compare its SHA-256 with the published SHA256SUMS.\n\n")
		return b.String()
	}
	sum, _ := hex.DecodeString(build.BinarySHA256)
	b.WriteString("- [ ] `keyceremony version` on the ceremony laptop prints this SHA-256 of the binary, and it equals the line for keyceremony in the SHA256SUMS published before the ceremony:\n\n")
	fmt.Fprintf(&b, "      %s\n\n", GroupHex(build.BinarySHA256))
	b.WriteString("  The same hash as PGP words, read aloud in groups of four:\n\n")
	for i, g := range WordGroups(transcripts.Words(sum)) {
		fmt.Fprintf(&b, "      %d. %s\n", i+1, g)
	}
	b.WriteString("\n")
	b.WriteString("- [ ] Done. Initials: operator ____ witnesses ____ ____ ____\n\n")
	return b.String()
}

func tokenName(t *TokenConfig) string {
	_, label, serial, _ := t.selector()
	switch {
	case label != "" && serial != "":
		return fmt.Sprintf("%q (serial %s)", label, serial)
	case serial != "":
		return "serial " + serial
	}
	return fmt.Sprintf("%q", label)
}
