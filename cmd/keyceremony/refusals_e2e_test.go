package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// custodiansYAML is a one-key ceremony whose custodians the tests fill in.
const custodiansYAML = `ceremony: {id: refuse, operator: tester, out_dir: refused}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys: [{label: refused-key, create: true, valid_for: 30d}]
escrow:
  threshold: 2
  custodians:
%s`

// TestCustodianRefusals runs the real binary on custodians it must refuse
// before anything changes: two custodians with one passphrase, and a
// "recipient: ask" custodian with nobody at the keyboard. Each exits 1
// with exactly one error line, and leaves no out_dir, no key or signing
// key on the token and no KMS key.
func TestCustodianRefusals(t *testing.T) {
	e := newE2E(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rec := id.Recipient().String()
	// Two files, one passphrase: the check compares passphrases, not files.
	e.config("a.pass", "correct horse battery staple 2026\n")
	e.config("b.pass", "correct horse battery staple 2026\n")
	for _, tc := range []struct {
		name, custodians, want string
	}{
		{"same passphrase",
			"    - {name: a, passphrase: true, passphrase_file: a.pass}\n    - {name: b, passphrase: true, passphrase_file: b.pass}\n    - {name: c, recipient: " + rec + "}\n",
			`keyceremony: error: step 1 (check the escrow custodians): escrow.custodians[1]: custodian "b" chose the same passphrase as custodian "a": each custodian chooses their own, or one person holds two shares; nothing was changed`},
		{"ask with nobody at the keyboard",
			"    - {name: a, recipient: " + rec + "}\n    - {name: b, recipient: ask}\n",
			`keyceremony: error: step 1 (check the escrow custodians): escrow.custodians[1]: nobody at the keyboard to ask (stdin is not a terminal): put the value in the config instead of "ask", or run the ceremony in the TUI`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := kmsKeyCount(t)
			cfg := e.config(strings.ReplaceAll(tc.name, " ", "-")+".yaml", fmt.Sprintf(custodiansYAML, tc.custodians))
			stdout, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg)
			if code != 1 || errorLines(stderr) != tc.want {
				t.Fatalf("exit %d, error lines:\n%s\nwant exit 1 and:\n%s\nstdout:\n%s", code, errorLines(stderr), tc.want, stdout)
			}
			nothingChanged(t, e, before)
		})
	}
}

// TestAskAtTheTerminal runs keyceremony run at a terminal (tmux) with a
// "recipient: ask" custodian who gives another custodian's key, then a
// pasted age secret key, then nonsense: each answer is refused, and after
// three the ceremony stops with exit 1 and one error line, changing
// nothing; the secret key is never on the screen.
func TestAskAtTheTerminal(t *testing.T) {
	e := newE2E(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pasted, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rec := id.Recipient().String()
	cfg := e.config("ask.yaml", fmt.Sprintf(custodiansYAML, "    - {name: a, recipient: "+rec+"}\n    - {name: b, recipient: ask}\n"))
	before := kmsKeyCount(t)
	bin := filepath.Join(binDir, "keyceremony")
	run := strings.Replace(tuiCommand(e), " "+bin, " KEYCEREMONY_PIN="+hsmtest.PIN+" "+bin, 1)
	script := fmt.Sprintf("%s run --config %s; echo \"exit=$?\"; sleep 600", run, cfg)
	tmux, waitFor := startTmux(t, e, script)
	prompt := "Custodian b: type or paste your age recipient"
	waitFor(prompt)
	tmux("send-keys", "-t", "c", "-l", rec)
	tmux("send-keys", "-t", "c", "Enter")
	waitFor("custodian b: that is custodian a's key: each custodian gives their own")
	tmux("send-keys", "-t", "c", "-l", pasted.String())
	tmux("send-keys", "-t", "c", "Enter")
	waitFor("custodian b: that is not a recipient")
	tmux("send-keys", "-t", "c", "-l", "bob")
	tmux("send-keys", "-t", "c", "Enter")
	screen := waitFor("exit=")
	want := "keyceremony: error: step 1 (check the escrow custodians): escrow.custodians[1]: custodian b gave no valid recipient in three tries: recipient must be an age recipient (age1pq1… post-quantum, or age1…) or an SSH public key (ssh-ed25519 …, ssh-rsa …)"
	if !strings.Contains(screen, "exit=1") || errorLines(screen) != want {
		t.Fatalf("screen:\n%s\nwant exit=1 and the one error line:\n%s", screen, want)
	}
	// The answer is read with the terminal's echo off and shown after
	// enter, except a secret key, which is never on the screen: not as
	// echo, nor in a refusal, a hint or the error.
	if strings.Contains(screen, pasted.String()) || !strings.Contains(screen, "read: a SECRET key (not shown)") {
		t.Errorf("the pasted secret key is on the screen, or its refusal is not:\n%s", screen)
	}
	if !strings.Contains(screen, "read: "+rec) {
		t.Errorf("the recipient typed is not shown back after enter:\n%s", screen)
	}
	nothingChanged(t, e, before)
}

// errorLines returns the lines of s that are keyceremony errors, joined.
func errorLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "keyceremony: error:") {
			out = append(out, strings.TrimRight(l, " "))
		}
	}
	return strings.Join(out, "\n")
}

// nothingChanged checks that the refused ceremony left no out_dir, no key
// or signing key on the token, and as many KMS keys as before.
func nothingChanged(t *testing.T, e *e2e, kmsBefore int) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(e.dir, "refused")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run left its out_dir (%v)", err)
	}
	if n := kmsKeyCount(t); n != kmsBefore {
		t.Errorf("KMS holds %d keys, %d before the refused run", n, kmsBefore)
	}
	tok := noTokenKey(t, "refused-key")
	defer tok.Close()
	if _, err := tok.Signer("keyceremony-transcript", false); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("a refused run left a signing key on the token: %v", err)
	}
}

// noTokenKey checks that the e2e token "ceremony" holds no key labelled
// label, and returns it open.
func noTokenKey(t *testing.T, label string) *hsm.Token {
	t.Helper()
	tok, err := hsm.Open(hsm.Config{TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.FindAESKey(label, nil); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("a refused run left key %s on the token: %v", label, err)
	}
	return tok
}

// TestTakenKeyID runs a ceremony whose key's keys[].id is the CKA_ID of a
// key already on the token under another label: refused at open-token,
// before any KMS key is made (before, generate-keys failed on it after
// the KMS keys and the parameters existed).
func TestTakenKeyID(t *testing.T) {
	e := newE2E(t)
	tok, err := hsm.Open(hsm.Config{TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateAESKey("older", []byte{0x0a, 0x1b}); err != nil {
		t.Fatal(err)
	}
	tok.Close()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(fmt.Sprintf(custodiansYAML, "    - {name: a, recipient: "+id.Recipient().String()+"}\n"), "threshold: 2", "threshold: 1\n  allow_single_custodian: true", 1)
	body = strings.Replace(body, "{label: refused-key, create: true", "{label: refused-key, id: 0A1B, create: true", 1)
	cfg := e.config("taken-id.yaml", body)
	before := kmsKeyCount(t)
	_, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg)
	want := `keyceremony: error: step 2 (open the token and log in): key already exists: token "ceremony" already holds a secret key with id 0a1b: choose another keys[].id for "refused-key", or leave it out for a random one`
	if code != 1 || errorLines(stderr) != want {
		t.Fatalf("exit %d, error lines:\n%s\nwant exit 1 and:\n%s\nstderr:\n%s", code, errorLines(stderr), want, stderr)
	}
	nothingChanged(t, e, before)
}

// TestOneKMSKeyTwice runs a ceremony whose two keys name one existing KMS
// key, by alias and by ARN, which the config cannot tell apart: refused at
// kms-keys, before any change (before, the second import failed after the
// first had bound its material to the key for good).
func TestOneKMSKeyTwice(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := kms.NewFromConfig(cfg)
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(out.KeyMetadata.Arn)
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/twice"), TargetKeyId: out.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(fmt.Sprintf(custodiansYAML, "    - {name: a, recipient: "+id.Recipient().String()+"}\n"), "threshold: 2", "threshold: 1\n  allow_single_custodian: true", 1)
	body = strings.Replace(body, "keys: [{label: refused-key, create: true, valid_for: 30d}]",
		"keys: [{label: refused-key, kms_key_id: alias/twice, valid_for: 30d}, {label: refused-too, kms_key_id: \""+arn+"\", valid_for: 30d}]", 1)
	path := e.config("twice.yaml", body)
	before := kmsKeyCount(t)
	_, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", path)
	want := `keyceremony: error: step 3 (create or check the KMS keys): keys[1].kms_key_id "` + arn + `" is KMS key ` + arn + `, which keys[0].kms_key_id "alias/twice" names too: each key needs its own KMS key`
	if code != 1 || errorLines(stderr) != want {
		t.Fatalf("exit %d, error lines:\n%s\nwant exit 1 and:\n%s\nstderr:\n%s", code, errorLines(stderr), want, stderr)
	}
	nothingChanged(t, e, before)
	d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
	if err != nil || d.KeyMetadata.KeyState != types.KeyStatePendingImport {
		t.Errorf("the KMS key after the refused run: %+v, %v", d, err)
	}
}
