package ceremony

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// fakeUI answers Secret and Ask from lists and records prompts.
type fakeUI struct {
	secrets [][]byte
	answers []string
	prompts []string
}

func (u *fakeUI) StepStarted(i, n int, s Step)              {}
func (u *fakeUI) StepDone(i, n int, s Step, summary string) {}
func (u *fakeUI) Info(msg string)                           {}
func (u *fakeUI) Progress(done, total int)                  {}
func (u *fakeUI) Ask(ctx context.Context, prompt string) (string, error) {
	u.prompts = append(u.prompts, prompt)
	if len(u.answers) == 0 {
		return "", errors.New("no answer")
	}
	a := u.answers[0]
	u.answers = u.answers[1:]
	return a, nil
}
func (u *fakeUI) Confirm(ctx context.Context, prompt, want string) (Confirmation, error) {
	return Confirmation{}, nil
}
func (u *fakeUI) Secret(ctx context.Context, prompt string) ([]byte, error) {
	u.prompts = append(u.prompts, prompt)
	if len(u.secrets) == 0 {
		return nil, errors.New("no secret available")
	}
	s := u.secrets[0]
	u.secrets = u.secrets[1:]
	return s, nil
}

func TestCustodianPassphrases(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pass")
	short := filepath.Join(dir, "short.pass")
	_ = os.WriteFile(good, []byte("a long enough passphrase\n"), 0o600)
	_ = os.WriteFile(short, []byte("short\n"), 0o600)
	weak := filepath.Join(dir, "weak.pass")
	_ = os.WriteFile(weak, []byte("Password1234\n"), 0o600)
	t.Setenv("ERIN_PASS", "erin's long passphrase")
	t.Setenv("SHORT_PASS", "tiny")

	tests := []struct {
		name    string
		cu      CustodianConfig
		secrets []string
		want    string // "" means success
	}{
		{"file", CustodianConfig{Name: "c", Passphrase: true, PassphraseFile: good}, nil, ""},
		{"env", CustodianConfig{Name: "c", Passphrase: true, PassphraseEnv: "ERIN_PASS"}, nil, ""},
		{"prompt", CustodianConfig{Name: "c", Passphrase: true}, []string{"typed twice, the same", "typed twice, the same"}, ""},
		{"prompt differs, then matches", CustodianConfig{Name: "c", Passphrase: true}, []string{"typed twice, the same", "typed twice, not same", "typed twice, the same", "typed twice, the same"}, ""},
		{"prompt short, then long", CustodianConfig{Name: "c", Passphrase: true}, []string{"tiny1", "typed twice, the same", "typed twice, the same"}, ""},
		{"prompt differs three times", CustodianConfig{Name: "c", Passphrase: true}, []string{"typed twice, the same", "typed twice, not same", "typed twice, the same", "typed twice, not same", "tiny"}, `escrow.custodians[0]: custodian "c" gave no matching, strong enough passphrase of at least 12 characters in three tries`},
		{"prompt weak, then strong", CustodianConfig{Name: "c", Passphrase: true}, []string{"aaaaaaaaaaaaaaaaaaaa", "typed twice, the same", "typed twice, the same"}, ""},
		{"file weak", CustodianConfig{Name: "c", Passphrase: true, PassphraseFile: weak}, nil, `escrow.custodians[0]: the passphrase of custodian "c" is too easy to guess`},
		{"no terminal", CustodianConfig{Name: "c", Passphrase: true}, nil, "escrow.custodians[0]: cannot ask custodian \"c\" for a passphrase (no secret available): for a non-interactive run set escrow.custodians[0].passphrase_env or passphrase_file"},
		{"env missing", CustodianConfig{Name: "c", Passphrase: true, PassphraseEnv: "NOPE_PASS"}, nil, "escrow.custodians[0].passphrase_env names NOPE_PASS but it is not set"},
		{"env short", CustodianConfig{Name: "c", Passphrase: true, PassphraseEnv: "SHORT_PASS"}, nil, "shorter than 12"},
		{"file short", CustodianConfig{Name: "c", Passphrase: true, PassphraseFile: short}, nil, "shorter than 12"},
		{"file missing", CustodianConfig{Name: "c", Passphrase: true, PassphraseFile: filepath.Join(dir, "nope")}, nil, "escrow.custodians[0].passphrase_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ui := &fakeUI{}
			for _, s := range tt.secrets {
				ui.secrets = append(ui.secrets, []byte(s))
			}
			cfg := &Config{dir: dir, Escrow: &EscrowConfig{Threshold: 1, Custodians: []CustodianConfig{tt.cu}}}
			rs, err := recipients(context.Background(), cfg, ui)
			if tt.want == "" {
				if err != nil || len(rs) != 1 || rs[0].Kind != "passphrase" {
					t.Fatalf("recipients = %v, %v", rs, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			for _, s := range append(tt.secrets, "long enough", "erin's", "tiny") {
				if len(s) > 3 && strings.Contains(err.Error(), s) {
					t.Errorf("error holds a passphrase: %q", err)
				}
			}
		})
	}
}

// TestDistinctCustodians: two custodians may not share a passphrase, nor a
// key given at the keyboard.
func TestDistinctCustodians(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "p.pass")
	_ = os.WriteFile(pass, []byte("a long enough passphrase\n"), 0o600)
	cfg := &Config{dir: dir, Escrow: &EscrowConfig{Threshold: 2, Custodians: []CustodianConfig{
		{Name: "a", Passphrase: true, PassphraseFile: pass}, {Name: "b", Passphrase: true, PassphraseFile: pass}}}}
	_, err := recipients(context.Background(), cfg, &fakeUI{})
	if err == nil || err.Error() != `escrow.custodians[1]: custodian "b" chose the same passphrase as custodian "a": each custodian chooses their own, or one person holds two shares; nothing was changed` {
		t.Errorf("same passphrase: %v", err)
	}
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	cfg.Escrow.Custodians = []CustodianConfig{{Name: "a", Recipient: id.Recipient().String()}, {Name: "b", Recipient: AskRecipient}}
	ui := &fakeUI{answers: []string{id.Recipient().String(), other.Recipient().String()}}
	rs, err := recipients(context.Background(), cfg, ui)
	if err != nil || len(rs) != 2 || rs[1].Public != other.Recipient().String() {
		t.Fatalf("asked again after a taken key: %v %v", rs, err)
	}
	ui = &fakeUI{answers: []string{id.Recipient().String(), id.Recipient().String(), id.Recipient().String()}}
	if _, err := recipients(context.Background(), cfg, ui); err == nil || !strings.Contains(err.Error(), "that is custodian a's key") {
		t.Errorf("three times a taken key: %v", err)
	}
}

// BenchmarkEscrowStep measures the escrow step on SoftHSM for one key and a
// 3-of-5 escrow to X25519 recipients: split, KEK import, wrap, in-token
// check, blob and five sealed shares written, and all ten quorums
// recombined and unwrapped on the token.
func BenchmarkEscrowStep(b *testing.B) {
	hsmtest.Setup(b, "bench")
	tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "bench", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.GenerateAESKey("k", []byte{1})
	if err != nil {
		b.Fatal(err)
	}
	kcv, _ := tok.CheckValue(key)
	var custodians []CustodianConfig
	var recips []*escrow.Recipient
	for i := range 5 {
		id, _ := age.GenerateX25519Identity()
		r, _ := escrow.ParseRecipient(id.Recipient().String())
		recips = append(recips, r)
		custodians = append(custodians, CustodianConfig{Name: fmt.Sprintf("c%d", i), Recipient: r.Public})
	}
	for b.Loop() {
		cfg := &Config{Ceremony: CeremonyConfig{ID: "bench", Operator: "b"}, Escrow: &EscrowConfig{Threshold: 3, Custodians: custodians}}
		out := b.TempDir()
		s := &state{cfg: cfg, ui: &fakeUI{}, tok: tok, recipients: recips, res: &Result{OutDir: out, Transcript: filepath.Join(out, "t.jsonl")},
			keys: []*keyState{{cfg: &KeyConfig{Label: "k"}, id: []byte{1}, key: key, kcv: hex.EncodeToString(kcv), arn: "arn:x"}}}
		if _, err := escrowKeys(context.Background(), s); err != nil {
			b.Fatal(err)
		}
		_ = s.tr.Close()
	}
}

func TestEscrowStep(t *testing.T) {
	hsmtest.Setup(t, "esc")
	tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "esc", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.GenerateAESKey("k", []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	kcv, _ := tok.CheckValue(key)
	var custodians []CustodianConfig
	var recips []*escrow.Recipient
	var ids []age.Identity
	for i := range 4 {
		id, _ := age.GenerateX25519Identity()
		ids = append(ids, id)
		r, _ := escrow.ParseRecipient(id.Recipient().String())
		recips = append(recips, r)
		custodians = append(custodians, CustodianConfig{Name: fmt.Sprintf("c%d", i+1), Recipient: r.Public})
	}
	newState := func(kcv string) *state {
		cfg := &Config{Ceremony: CeremonyConfig{ID: "esc", Operator: "t"}, Escrow: &EscrowConfig{Threshold: 2, Custodians: custodians}}
		out := t.TempDir()
		return &state{cfg: cfg, ui: &fakeUI{}, tok: tok, recipients: recips, res: &Result{OutDir: out, Transcript: filepath.Join(out, "transcript.jsonl")},
			keys: []*keyState{{cfg: &KeyConfig{Label: "k"}, id: []byte{1}, key: key, kcv: kcv, arn: "arn:x"}}}
	}

	// A key whose recorded check value is not what the escrow unwraps to
	// stops the step before the blob or any share is written.
	bad := newState("000000")
	if _, err := escrowKeys(context.Background(), bad); err == nil || !strings.Contains(err.Error(), `the escrowed copy of key "k" has check value`) {
		t.Fatalf("wrong key check value: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bad.res.OutDir, "escrow.json")); err == nil {
		t.Error("escrow.json written for a failed escrow")
	}

	s := newState(hex.EncodeToString(kcv))
	sum, err := escrowKeys(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sum, "1 key(s) escrowed 2-of-4, all 6 subsets checked") {
		t.Errorf("summary %q", sum)
	}
	_ = s.tr.Close()
	trData, _ := os.ReadFile(s.res.Transcript)
	blobData, err := os.ReadFile(filepath.Join(s.res.OutDir, "escrow.json"))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := escrow.ParseBlob(blobData)
	if err != nil {
		t.Fatal(err)
	}
	var opened []*escrow.Share
	for i := range 4 {
		data, err := os.ReadFile(filepath.Join(s.res.OutDir, fmt.Sprintf("share-%d-c%d.age", i+1, i+1)))
		if err != nil {
			t.Fatal(err)
		}
		sh, err := escrow.OpenShare(data, "s", ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(trData, []byte(sh.Value)) || bytes.Contains(blobData, []byte(sh.Value)) {
			t.Fatal("a share value is in the transcript or the blob")
		}
		if sh.EscrowSHA256 != sha256Hex(blobData) {
			t.Error("the share does not name the blob's hash")
		}
		opened = append(opened, sh)
	}
	// Two shares give the KEK that unwraps the blob's key on the token.
	kek, err := blob.Public().Recover(opened[2:])
	if err != nil {
		t.Fatal(err)
	}
	h, err := tok.ImportKEK(kek)
	if err != nil {
		t.Fatal(err)
	}
	cv, err := tok.KWPCheckValue(h, blob.Keys[0].WrappedKey)
	if err != nil || !bytes.Equal(cv, kcv) {
		t.Errorf("recovered check value %x, %v; want %x", cv, err, kcv)
	}
	if !bytes.Contains(trData, []byte(`"step":"escrow"`)) || !bytes.Contains(trData, []byte(`"subsets_checked":6`)) {
		t.Errorf("transcript lacks the escrow event: %s", trData)
	}
}

// TestAskRecipient checks "recipient: ask": the custodian types their
// recipient; a bad one is asked again, three bad ones stop the ceremony.
func TestAskRecipient(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
ceremony: {id: ask, operator: t, out_dir: out}
token: {label: ceremony}
keys: [{label: k, create: true, does_not_expire: true}]
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: ask}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	const rec = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	ui := &fakeUI{answers: []string{"not-a-recipient", "  " + rec + "  "}}
	rs, err := recipients(context.Background(), cfg, ui)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Public != rec || len(ui.prompts) != 2 || !strings.Contains(ui.prompts[0], "Custodian alice") {
		t.Errorf("recipients %+v, prompts %q", rs, ui.prompts)
	}
	ui = &fakeUI{answers: []string{"x", "y", "z"}}
	if _, err := recipients(context.Background(), cfg, ui); err == nil || !strings.Contains(err.Error(), "no valid recipient in three tries") {
		t.Errorf("three bad answers: %v", err)
	}
}

func TestCustodianKind(t *testing.T) {
	for rec, want := range map[string]string{
		"age1pq1xyz": "post-quantum age key",
		"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p": "age key",
		"ssh-ed25519 AAAA": "SSH key",
		AskRecipient:       "recipient given at the keyboard",
	} {
		if got := (&CustodianConfig{Recipient: rec}).kind(); got != want {
			t.Errorf("%s: %q, want %q", rec, got, want)
		}
	}
}
