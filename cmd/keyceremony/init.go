package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"golang.org/x/term"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/cmd/keyceremony/tui"
	"github.com/keyceremony/keyceremony/internal/evidence"
)

const initHelp = `Usage: keyceremony init [--out ceremony.yaml] [--id ID] [--operator NAME] [--token-label LABEL]
                        [--key LABEL]... [--valid-for 365d] [--custodian NAME=RECIPIENT]... [--threshold M]
                        [--wrapping-algorithm ALG] [--wrapping-key-spec SPEC]

Writes a commented starter ceremony config that keyceremony script, tui and
run accept as written. A custodian is NAME=age1…, NAME=ssh-ed25519 …,
NAME=passphrase (typed in the TUI) or NAME=ask (pasted in the TUI). In a
terminal, without --key or --custodian, it asks for each value in a form
(enter keeps the value shown; the flags give the values it starts from).
It never overwrites a file.

`

var initTemplate = template.Must(template.New("init").Funcs(template.FuncMap{"y": yamlValue, "q": ceremony.ShellQuote}).Parse(`# keyceremony config, written by keyceremony init on {{.Date}}.
# Check it with: keyceremony script --config {{q .File}}
# Run it with:   keyceremony tui --config {{q .File}}   (or keyceremony run --config {{q .File}})
# Every field is described in the README's Config section.
ceremony:
  id: {{y .ID}}          # names the ceremony in the transcript and every file
  operator: {{y .Operator}}          # the person at the keyboard
  out_dir: {{y .OutDir}}          # a new directory for the evidence, relative to this file
token:
  label: {{y .TokenLabel}}          # or serial: ..., or uri: "pkcs11:token=..."
  # module: /usr/lib/softhsm/libsofthsm2.so   # default: $KEYCEREMONY_PKCS11_MODULE
  # The PIN is typed, or comes from pin_file / pin_env / $KEYCEREMONY_PIN: never from this file.
kms:
  # region: eu-west-1          # default: AWS_REGION or the profile's region
  wrapping_algorithm: {{y .Algorithm}}          # SoftHSM 2.6 wraps inside the token only with RSAES_OAEP_SHA_1
  wrapping_key_spec: {{y .KeySpec}}
keys:
{{- range .Keys}}
  - label: {{y .}}          # CKA_LABEL on the token
    create: true          # a new KMS key (Origin EXTERNAL); or kms_key_id: arn:aws:kms:...
    valid_for: {{y $.ValidFor}}          # or valid_to: 2027-06-30T00:00:00Z, or does_not_expire: true
{{- end}}
escrow:
  threshold: {{.Threshold}}          # any {{.Threshold}} custodians together recover the keys
  custodians:
{{- range .Custodians}}
    - name: {{y .Name}}
{{- if eq .Recipient "passphrase"}}
      passphrase: true          # typed (twice, masked) in the TUI
{{- else if eq .Recipient "ask"}}
      recipient: ask          # pasted in the TUI when their turn comes
{{- else}}
      recipient: {{y .Recipient}}
{{- end}}
{{- end}}
`))

// plainYAML is a value YAML reads as itself without quotes: no comment,
// mapping, flow or quoting character, and nothing special at its start.
var plainYAML = regexp.MustCompile(`^[A-Za-z0-9._/+=-][A-Za-z0-9._/+=@ -]*$`)

// yamlValue writes v so that YAML reads back exactly v.
func yamlValue(v string) string {
	if plainYAML.MatchString(v) && !strings.HasSuffix(v, " ") && !strings.Contains(v, " -") {
		return v
	}
	return strconv.Quote(v)
}

func cmdInit(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags("init", stderr, initHelp)
	out := fs.String("out", defaultConfig, "config `file` to write (never overwritten)")
	a := tui.InitAnswers{}
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
	ask := len(keys) == 0 && len(custodians) == 0 && stdin != nil && term.IsTerminal(int(stdin.Fd()))
	if err := fillInit(&a, keys, custodians); err != nil {
		return err
	}
	if ask {
		got, err := tui.AskInit(ctx, *out, a, func(a tui.InitAnswers) (string, error) { return renderInit(a, *out) })
		if err != nil {
			return err
		}
		if got == nil {
			fmt.Fprintf(stdout, "nothing written: %s was not created\n", *out)
			return nil
		}
		a = *got
	}
	text, err := renderInit(a, *out)
	if err != nil {
		return err
	}
	if err := evidence.Create(*out, []byte(text), 0o600); err != nil {
		return err
	}
	q := ceremony.ShellQuote(*out)
	fmt.Fprintf(stdout, "wrote %s\nnext: keyceremony script --config %s, then keyceremony tui --config %s\n", *out, q, q)
	return nil
}

// fillInit puts the keys and custodians of the flags into a, or their
// defaults: one key, three custodians who paste their recipient in the TUI.
func fillInit(a *tui.InitAnswers, keys, custodians []string) error {
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
			return usageError(fmt.Sprintf("--custodian %q: give NAME=RECIPIENT (age1…, ssh-…, passphrase or ask)", c))
		}
		a.Custodians = append(a.Custodians, tui.InitCustodian{Name: name, Recipient: strings.TrimSpace(rec)})
	}
	return nil
}

// renderInit fills the template and checks that the result is a valid
// config; errors name the config field.
func renderInit(a tui.InitAnswers, file string) (string, error) {
	if a.Threshold == 0 {
		a.Threshold = len(a.Custodians)/2 + 1
	}
	var b strings.Builder
	err := initTemplate.Execute(&b, struct {
		tui.InitAnswers
		OutDir, Date, File string
	}{a, "./" + a.ID, time.Now().UTC().Format("2006-01-02"), file})
	if err != nil {
		return "", err
	}
	if _, err := ceremony.ParseConfig([]byte(b.String())); err != nil {
		return "", fmt.Errorf("these values do not make a valid config: %w", err)
	}
	return b.String(), nil
}

func defaultOperator() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "operator"
}
