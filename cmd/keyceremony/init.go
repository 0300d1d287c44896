package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/template"
	"time"

	"golang.org/x/term"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/internal/evidence"
)

const initHelp = `Usage: keyceremony init [--out ceremony.yaml] [--id ID] [--operator NAME] [--token-label LABEL]
                        [--key LABEL]... [--valid-for 365d] [--custodian NAME=RECIPIENT]... [--threshold M]
                        [--wrapping-algorithm ALG] [--wrapping-key-spec SPEC]

Writes a commented starter ceremony config that keyceremony script, tui and
run accept as written. A custodian is NAME=age1…, NAME=ssh-ed25519 …,
NAME=passphrase (typed in the TUI) or NAME=ask (pasted in the TUI). In a
terminal, without --key or --custodian, it asks for each value (enter keeps
the default). It never overwrites a file.

`

// initAnswers are the values a starter config is made of.
type initAnswers struct {
	ID, Operator, TokenLabel, ValidFor, Algorithm, KeySpec, OutDir string
	Keys                                                           []string
	Custodians                                                     []initCustodian
	Threshold                                                      int
}

type initCustodian struct{ Name, Recipient string }

// Passphrase reports whether the custodian types a passphrase.
func (c initCustodian) Passphrase() bool { return c.Recipient == "passphrase" }

var initTemplate = template.Must(template.New("init").Parse(`# keyceremony config, written by keyceremony init on {{.Date}}.
# Check it with: keyceremony script --config {{.File}}
# Run it with:   keyceremony tui --config {{.File}}   (or keyceremony run --config {{.File}})
# Every field is described in the README's Config section.
ceremony:
  id: {{.ID}}          # names the ceremony in the transcript and every file
  operator: {{.Operator}}          # the person at the keyboard
  out_dir: {{.OutDir}}          # a new directory for the evidence, relative to this file
token:
  label: {{.TokenLabel}}          # or serial: ..., or uri: "pkcs11:token=..."
  # module: /usr/lib/softhsm/libsofthsm2.so   # default: $KEYCEREMONY_PKCS11_MODULE
  # The PIN is typed, or comes from pin_file / pin_env / $KEYCEREMONY_PIN: never from this file.
kms:
  # region: eu-west-1          # default: AWS_REGION or the profile's region
  wrapping_algorithm: {{.Algorithm}}          # SoftHSM 2.6 wraps inside the token only with RSAES_OAEP_SHA_1
  wrapping_key_spec: {{.KeySpec}}
keys:
{{- range .Keys}}
  - label: {{.}}          # CKA_LABEL on the token
    create: true          # a new KMS key (Origin EXTERNAL); or kms_key_id: arn:aws:kms:...
    valid_for: {{$.ValidFor}}          # or valid_to: 2027-06-30T00:00:00Z, or does_not_expire: true
{{- end}}
escrow:
  threshold: {{.Threshold}}          # any {{.Threshold}} custodians together recover the keys
  custodians:
{{- range .Custodians}}
    - name: {{.Name}}
{{- if .Passphrase}}
      passphrase: true          # typed (twice, masked) in the TUI
{{- else if eq .Recipient "ask"}}
      recipient: ask          # pasted in the TUI when their turn comes
{{- else}}
      recipient: {{.Recipient}}
{{- end}}
{{- end}}
`))

func cmdInit(args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags("init", stderr, initHelp)
	out := fs.String("out", defaultConfig, "config `file` to write (never overwritten)")
	a := initAnswers{}
	fs.StringVar(&a.ID, "id", "ceremony-"+time.Now().UTC().Format("2006-01-02"), "ceremony `id`")
	fs.StringVar(&a.Operator, "operator", defaultOperator(), "operator `name`")
	fs.StringVar(&a.TokenLabel, "token-label", "ceremony", "the token's `label`")
	fs.StringVar(&a.ValidFor, "valid-for", "365d", "every key's expiry after import (`duration`)")
	fs.StringVar(&a.Algorithm, "wrapping-algorithm", "RSAES_OAEP_SHA_256", "KMS wrapping `algorithm`")
	fs.StringVar(&a.KeySpec, "wrapping-key-spec", "RSA_4096", "KMS wrapping key `spec`")
	var keys, custodians multiFlag
	fs.Var(&keys, "key", "a key `label` (repeatable; default key-1)")
	fs.Var(&custodians, "custodian", "`NAME=RECIPIENT`: age1…, ssh-…, passphrase or ask (repeatable; default alice, bob, carol asked in the TUI)")
	fs.IntVar(&a.Threshold, "threshold", 0, "custodians needed to recover, `M` (default: a majority)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("init takes only flags: keyceremony init --out FILE ...")
	}
	if _, err := os.Lstat(*out); err == nil {
		return &hintError{error: fmt.Errorf("%s already exists: init never overwrites a config", *out), hint: "give another file with --out"}
	}
	if len(keys) == 0 && len(custodians) == 0 && stdin != nil && term.IsTerminal(int(stdin.Fd())) {
		if err := askInit(&a, &keys, &custodians, bufio.NewReader(stdin), stderr); err != nil {
			return err
		}
	}
	text, err := a.render(keys, custodians, *out)
	if err != nil {
		return err
	}
	if err := evidence.Create(*out, []byte(text), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\nnext: keyceremony script --config %s, then keyceremony tui --config %s\n", *out, *out, *out)
	return nil
}

// render fills the template and checks that the result is a valid config.
func (a initAnswers) render(keys, custodians []string, file string) (string, error) {
	a.Keys = keys
	if len(a.Keys) == 0 {
		a.Keys = []string{"key-1"}
	}
	if len(custodians) == 0 {
		custodians = []string{"alice=ask", "bob=ask", "carol=ask"}
	}
	for _, c := range custodians {
		name, rec, ok := strings.Cut(c, "=")
		if !ok || name == "" || rec == "" {
			return "", usageError(fmt.Sprintf("--custodian %q: give NAME=RECIPIENT (age1…, ssh-…, passphrase or ask)", c))
		}
		a.Custodians = append(a.Custodians, initCustodian{name, strings.TrimSpace(rec)})
	}
	if a.Threshold == 0 {
		a.Threshold = len(a.Custodians)/2 + 1
	}
	a.OutDir = "./" + a.ID
	var b strings.Builder
	err := initTemplate.Execute(&b, struct {
		initAnswers
		Date, File string
	}{a, time.Now().UTC().Format("2006-01-02"), file})
	if err != nil {
		return "", err
	}
	if _, err := ceremony.ParseConfig([]byte(b.String())); err != nil {
		return "", fmt.Errorf("these values do not make a valid config: %w", err)
	}
	return b.String(), nil
}

// askInit asks for each value at the terminal; enter keeps the default.
func askInit(a *initAnswers, keys, custodians *multiFlag, in *bufio.Reader, out io.Writer) error {
	ask := func(q, def string) (string, error) {
		fmt.Fprintf(out, "%s [%s]: ", q, def)
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("failed to read the answer: %w", err)
		}
		if line = strings.TrimSpace(line); line != "" {
			return line, nil
		}
		return def, nil
	}
	var err error
	for _, f := range []struct {
		q string
		v *string
	}{{"Ceremony id", &a.ID}, {"Operator", &a.Operator}, {"Token label", &a.TokenLabel}, {"Expiry of every key after import", &a.ValidFor},
		{"KMS wrapping algorithm (RSAES_OAEP_SHA_1 for SoftHSM)", &a.Algorithm}} {
		if *f.v, err = ask(f.q, *f.v); err != nil {
			return err
		}
	}
	ks, err := ask("Key labels, separated by spaces", "key-1")
	if err != nil {
		return err
	}
	*keys = strings.Fields(ks)
	cs, err := ask("Custodian names, separated by spaces", "alice bob carol")
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(cs) {
		rec, err := ask("  "+name+": age1… or ssh-… recipient, passphrase, or ask (paste in the TUI)", "ask")
		if err != nil {
			return err
		}
		*custodians = append(*custodians, name+"="+rec)
	}
	th, err := ask("Custodians needed to recover", fmt.Sprint(len(*custodians)/2+1))
	if err != nil {
		return err
	}
	if _, err := fmt.Sscan(th, &a.Threshold); err != nil {
		return usageError(fmt.Sprintf("threshold %q is not a number", th))
	}
	return nil
}

func defaultOperator() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "operator"
}
