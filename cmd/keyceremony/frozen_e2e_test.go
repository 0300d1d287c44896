package main_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// v1 is the frozen 2-of-4 escrow made by keyceremony at commit 5aa1006
// (escrow/testdata/v1), v2 the frozen 2-of-5 escrow whose shares carry the
// blob (escrow/testdata/v2): a drill of today's binary must recover their
// keys.
const (
	v1     = "../../escrow/testdata/v1/"
	v1Fp   = "655a4693f23f2f5fc3508975f6f3107b1dead5192547207178fc8df80c242147"
	v1Seal = "endorse amulet eyeglass hamburger dreadful repellent ringbolt molecule bookshelf adroitness cobra cumbersome adult revival facial Virginia"
	v2     = "../../escrow/testdata/v2/"
	v2Fp   = "ce7452b8db00fafdaa182b4c36e8f59b45a619c3818957f6a6d7616682e2a1b2"
)

func runBin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := binary(t, "keyceremony", args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1"}
	return runBinary(t, cmd)
}

func TestFrozenDrill(t *testing.T) {
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
		name, dir, escrow string
		shares, ids       []string
		pin               []string
		kcvs              [2]string
	}{
		{"v1 alice+dave", v1, v1 + "escrow.json", []string{"share-1-alice.age", "share-4-dave.age"}, []string{"identities/alice.key", "identities/dave_rsa"}, []string{"--fingerprint", v1Fp}, [2]string{"167a0c", "d828ec"}},
		{"v1 bob+carol, CRLF escrow.json", v1, crlf, []string{"share-2-bob.age", "share-3-carol.age"}, []string{"identities/bob_ed25519"}, []string{"--seal-words", v1Seal}, [2]string{"167a0c", "d828ec"}},
		{"v2 alice+bob, shares alone", v2, "", []string{"share-1-alice.age", "share-2-bob.age"}, []string{"identities/alice.key", "identities/bob_ed25519"}, []string{"--fingerprint", v2Fp}, [2]string{"42c26b", "363bb2"}},
		{"v2 carol+erin, shares alone", v2, "", []string{"share-3-carol.age", "share-5-erin.age"}, []string{"identities/erin.key"}, []string{"--fingerprint", v2Fp}, [2]string{"42c26b", "363bb2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"recover", "--drill", "--transcript", c.dir + "transcript.jsonl", "--passphrase-file", c.dir + "identities/carol.pass",
				"--out", filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))}
			if c.escrow != "" {
				args = append(args, "--escrow", c.escrow)
			}
			if c.dir == v2 {
				args = append(args, "--passphrase-file", c.dir+"identities/bob_key.pass")
			}
			for _, s := range c.shares {
				args = append(args, "--share", c.dir+s)
			}
			for _, id := range c.ids {
				args = append(args, "--identity", c.dir+id)
			}
			out, errs, code := runBin(t, append(args, c.pin...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			for _, want := range []string{"drill PASSED", "key payments (id 0a0b): recovered into a scratch SoftHSM token (destroyed), kcv " + c.kcvs[0] + " matches",
				"key ledger (id 0c0d): recovered into a scratch SoftHSM token (destroyed), kcv " + c.kcvs[1] + " matches"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestPromptsTmux: a custodian checks their share at a terminal, with an
// encrypted SSH key and no pin flag: keyceremony asks for the seal words and
// for the key's passphrase, and shows neither secret.
func TestPromptsTmux(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	abs, err := filepath.Abs(v1)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(v1 + "identities/bob_ed25519")
	enc := filepath.Join(dir, "bob_encrypted")
	if err := os.WriteFile(enc, key, 0o600); err != nil {
		t.Fatal(err)
	}
	const keyPass = "bob's tmux key passphrase"
	if out, err := exec.Command("ssh-keygen", "-q", "-p", "-P", "", "-N", keyPass, "-f", enc).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -p: %v %s", err, out)
	}
	tmux, waitFor := startTmux(t, nil, fmt.Sprintf("cd %s && %s escrow verify-share --share %s/share-2-bob.age --identity %s --transcript %s/transcript.jsonl; echo EXIT=$?; sleep 60",
		dir, filepath.Join(binDir, "keyceremony"), abs, enc, abs))
	waitFor("wrote them down:")
	tmux("send-keys", "-t", "c", "-l", v1Seal)
	tmux("send-keys", "-t", "c", "Enter")
	waitFor("Passphrase of SSH key bob_encrypted:")
	tmux("send-keys", "-t", "c", "-l", keyPass)
	tmux("send-keys", "-t", "c", "Enter")
	sc := waitFor("EXIT=")
	for _, want := range []string{"OK: share 2 of 4 of custodian \"bob\" for ceremony frozen-v1", "pinned by: seal words typed back", "EXIT=0"} {
		if !strings.Contains(sc, want) {
			t.Errorf("screen lacks %q:\n%s", want, sc)
		}
	}
	if strings.Contains(sc, keyPass) {
		t.Errorf("the key passphrase is on the screen:\n%s", sc)
	}
}
