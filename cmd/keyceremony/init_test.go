package main

import (
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/cmd/keyceremony/tui"
)

// TestRenderInit writes a starter config from answers, some of which YAML
// would read otherwise unquoted (a comment, a mapping, a quote), and checks
// that it loads as written, each value exactly as given.
func TestRenderInit(t *testing.T) {
	a := tui.InitAnswers{ID: "pay-2027", Operator: "alice # not a comment: really", TokenLabel: `"ceremony' token`, ValidFor: "90d",
		Algorithm: "RSAES_OAEP_SHA_1", KeySpec: "RSA_2048"}
	if err := fillInit(&a, []string{"payments", "archive"}, []string{"alice=age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
		"bob=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF48oEQml1fmWNiQ30JWKOpyCSiesWqLNNv+fj4B1d5l bob@example", "carol=passphrase", "dave=ask"}); err != nil {
		t.Fatal(err)
	}
	text, err := renderInit(a, "ceremony.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ceremony.ParseConfig([]byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if cfg.Ceremony.ID != a.ID || cfg.Ceremony.Operator != a.Operator || cfg.Token.Label != a.TokenLabel || len(cfg.Keys) != 2 || cfg.Keys[1].ValidFor != "90d" ||
		cfg.KMS.WrappingAlgorithm != "RSAES_OAEP_SHA_1" || cfg.Escrow.Threshold != 3 || cfg.Escrow.Custodians[1].Recipient != a.Custodians[1].Recipient ||
		!cfg.Escrow.Custodians[2].Passphrase || cfg.Escrow.Custodians[3].Recipient != ceremony.AskRecipient {
		t.Errorf("config from the answers:\n%s", text)
	}
	if !strings.Contains(text, "  id: pay-2027 ") || !strings.Contains(text, "recipient: ssh-ed25519 AAAA") {
		t.Errorf("plain values are quoted:\n%s", text)
	}
	if err := fillInit(&tui.InitAnswers{}, nil, []string{"alice"}); err == nil || err.Error() != `--custodian "alice": give NAME=RECIPIENT (age1…, ssh-…, passphrase or ask)` {
		t.Errorf("a custodian without a recipient: %v", err)
	}
}
