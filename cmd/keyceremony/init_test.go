package main

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/ceremony"
)

// TestAskInit answers init's terminal questions (enter keeps a default) and
// checks that the config written from the answers loads as written.
func TestAskInit(t *testing.T) {
	a := initAnswers{ID: "ceremony-x", Operator: "op", TokenLabel: "ceremony", ValidFor: "365d", Algorithm: "RSAES_OAEP_SHA_256", KeySpec: "RSA_4096"}
	var keys, custodians multiFlag
	answers := "pay-2027\n\n\n90d\nRSAES_OAEP_SHA_1\npayments archive\nalice bob carol\nage1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\npassphrase\n\n\n"
	if err := askInit(&a, &keys, &custodians, bufio.NewReader(strings.NewReader(answers)), io.Discard); err != nil {
		t.Fatal(err)
	}
	text, err := a.render(keys, custodians, "ceremony.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ceremony.ParseConfig([]byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if cfg.Ceremony.ID != "pay-2027" || cfg.Ceremony.Operator != "op" || len(cfg.Keys) != 2 || cfg.Keys[1].ValidFor != "90d" ||
		cfg.KMS.WrappingAlgorithm != "RSAES_OAEP_SHA_1" || cfg.Escrow.Threshold != 2 || !cfg.Escrow.Custodians[1].Passphrase ||
		cfg.Escrow.Custodians[2].Recipient != ceremony.AskRecipient {
		t.Errorf("config from the answers:\n%s", text)
	}
}
