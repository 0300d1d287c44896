package ceremony

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestResumeHalfMadeKey: a process that dies while SoftHSM generates a key
// can leave the key's label and id on the token without its value
// (CKA_LOCAL false, no usable material). Planted where a stopped
// ceremony's signed intent says key two will be made (an AES key with an
// empty value, which is what SoftHSM leaves), the resume destroys it and
// generates two afresh, instead of adopting it and failing at its check
// value; an empty secret key beside it (no label, id or value: SoftHSM's
// first write of a new key) is destroyed, an unlabelled one with a value
// is left. A key with the intent's label and id that was not generated on
// the token but holds material is refused, and stays.
func TestResumeHalfMadeKey(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		t.Skip("pkcs11-tool (opensc) is needed to plant a key")
	}
	loopbackKMS(t)
	for _, tc := range []struct {
		name     string
		material []byte
		want     string // the resume's error; "" for success
	}{
		{"empty", nil, ""},
		{"with material", make([]byte, 32), `token "ceremony" holds a key labelled "two-with-material" with id `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cfg := resumeConfig(t, out)
			cfg.Token.Parallel = 1
			for i := range cfg.Keys {
				cfg.Keys[i].Label += "-" + strings.ReplaceAll(tc.name, " ", "-")
			}
			two := cfg.Keys[1].Label
			if _, err := Run(context.Background(), cfg, &stopUI{at: "generate-keys", n: 1}); !errors.Is(err, ErrInterrupted) {
				t.Fatalf("stopped run: %v", err)
			}
			tr, err := os.ReadFile(filepath.Join(out, "transcript.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`"step":"generate-key-intent".*"label":"` + two + `","id":"([0-9a-f]+)"`).FindSubmatch(tr)
			if m == nil {
				t.Fatalf("no intent for %s in the transcript:\n%s", two, tr)
			}
			id := string(m[1])
			value := filepath.Join(t.TempDir(), "value")
			if err := os.WriteFile(value, tc.material, 0o600); err != nil {
				t.Fatal(err)
			}
			plant(t, value, len(tc.material), "--label", two, "--id", id)
			if tc.want == "" {
				// What SoftHSM writes first for a new key: no label, id
				// or value; and an unlabelled key with a value, which
				// the resume must leave alone.
				plant(t, value, 0)
				full := filepath.Join(t.TempDir(), "full")
				if err := os.WriteFile(full, make([]byte, 32), 0o600); err != nil {
					t.Fatal(err)
				}
				plant(t, full, 32)
			}

			res, err := Run(context.Background(), cfg, &quietUI{})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, hsm.ErrKeyExists) {
					t.Fatalf("resume with a planted key holding material: %v, want %q", err, tc.want)
				}
				after, _ := os.ReadFile(filepath.Join(out, "transcript.jsonl"))
				if strings.Count(string(after), `"step":"generate-key"`) != 1 {
					t.Fatalf("the refused resume recorded a key:\n%s", after)
				}
				tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
				if err != nil {
					t.Fatal(err)
				}
				defer tok.Close()
				if _, err := tok.FindAESKey(two, nil); err != nil {
					t.Fatalf("the planted key is gone: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resume over a half-made key: %v", err)
			}
			data, _ := os.ReadFile(res.Transcript)
			if !regexp.MustCompile(`"step":"generate-key".*"label":"` + two + `","id":"` + id + `"`).Match(data) {
				t.Fatalf("no generate-key event for %s with id %s:\n%s", two, id, data)
			}
			if !regexp.MustCompile(`"step":"generate-key".*"label":"` + two + `","id":"` + id + `".*"replaced_half_made":true`).Match(data) {
				t.Fatalf("the generate-key event of %s does not record the half-made key destroyed:\n%s", two, data)
			}
			if strings.Contains(string(data), "found on the token by label and id") {
				t.Fatalf("the half-made key was adopted:\n%s", data)
			}
			tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
			if err != nil {
				t.Fatal(err)
			}
			defer tok.Close()
			k, err := tok.FindAESKey(two, nil) // exactly one
			if err != nil {
				t.Fatal(err)
			}
			if here, err := tok.GeneratedHere(k); err != nil || !here {
				t.Fatalf("key %s on the token: generated here %v, %v", two, here, err)
			}
			x, err := tok.SecretKeyIndex()
			if err != nil {
				t.Fatal(err)
			}
			if !x.HasLabel("") {
				t.Fatal("the unlabelled key holding a value is gone")
			}
			if n, err := tok.DestroyEmptySecretKeys(); n != 0 || err != nil {
				t.Fatalf("the resume left %d empty secret keys (%v)", n, err)
			}
		})
	}
}

// plant writes a secret AES key of size bytes from file with pkcs11-tool,
// outside keyceremony, as a half-made or foreign key would be.
func plant(t *testing.T, file string, size int, args ...string) {
	t.Helper()
	args = append([]string{"--module", hsmtest.Module, "--token-label", "ceremony", "--login", "--pin", hsmtest.PIN,
		"--write-object", file, "--type", "secrkey", "--key-type", fmt.Sprintf("AES:%d", size), "--private", "--sensitive", "--extractable"}, args...)
	if b, err := exec.Command("pkcs11-tool", args...).CombinedOutput(); err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, b)
	}
}
