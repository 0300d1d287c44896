package ceremony

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeUI answers Secret from a list and records prompts.
type fakeUI struct {
	secrets [][]byte
	prompts []string
}

func (u *fakeUI) StepStarted(i, n int, s Step)              {}
func (u *fakeUI) StepDone(i, n int, s Step, summary string) {}
func (u *fakeUI) Info(msg string)                           {}
func (u *fakeUI) Progress(done, total int)                  {}
func (u *fakeUI) Confirm(ctx context.Context, prompt, want string) error {
	return nil
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
		{"prompt differs", CustodianConfig{Name: "c", Passphrase: true}, []string{"typed twice, the same", "typed twice, not same"}, `escrow.custodians[0]: the two passphrases of custodian "c" differ`},
		{"prompt short", CustodianConfig{Name: "c", Passphrase: true}, []string{"tiny1", "tiny1"}, "shorter than 12 characters"},
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
