package main_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// v1 is the frozen 2-of-4 escrow made by keyceremony at commit 5aa1006
// (escrow/testdata/v1): a drill of today's binary must recover its keys.
const (
	v1     = "../../escrow/testdata/v1/"
	v1Fp   = "655a4693f23f2f5fc3508975f6f3107b1dead5192547207178fc8df80c242147"
	v1Seal = "endorse amulet eyeglass hamburger dreadful repellent ringbolt molecule bookshelf adroitness cobra cumbersome adult revival facial Virginia"
)

func runBin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "keyceremony"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1"}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func TestFrozenV1Drill(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	hsmtest.Require(t)
	dir := t.TempDir()
	// escrow.json as a Windows machine would keep it: CRLF line endings.
	data, err := os.ReadFile(v1 + "escrow.json")
	if err != nil {
		t.Fatal(err)
	}
	crlf := filepath.Join(dir, "escrow.json")
	if err := os.WriteFile(crlf, bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, escrow string
		shares, ids  []string
		pin          []string
	}{
		{"alice+dave", v1 + "escrow.json", []string{"share-1-alice.age", "share-4-dave.age"}, []string{"identities/alice.key", "identities/dave_rsa"}, []string{"--fingerprint", v1Fp}},
		{"bob+carol, CRLF escrow.json", crlf, []string{"share-2-bob.age", "share-3-carol.age"}, []string{"identities/bob_ed25519"}, []string{"--seal-words", v1Seal}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"recover", "--drill", "--escrow", c.escrow, "--transcript", v1 + "transcript.jsonl", "--passphrase-file", v1 + "identities/carol.pass",
				"--out", filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))}
			for _, s := range c.shares {
				args = append(args, "--share", v1+s)
			}
			for _, id := range c.ids {
				args = append(args, "--identity", v1+id)
			}
			out, errs, code := runBin(t, append(args, c.pin...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			for _, want := range []string{"drill PASSED", "key payments (id 0a0b): recovered into a scratch SoftHSM token (destroyed), kcv 167a0c matches",
				"key ledger (id 0c0d): recovered into a scratch SoftHSM token (destroyed), kcv d828ec matches"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
