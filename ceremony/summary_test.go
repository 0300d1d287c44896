package ceremony

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNextCommandsQuoted: the commands printed after a ceremony whose
// out_dir holds a space and a quote give a POSIX shell the paths whole.
func TestNextCommandsQuoted(t *testing.T) {
	out := "/media/USB stick/alice's ceremony"
	cmds := NextCommands(&Config{}, &Result{OutDir: out})
	want := [][]string{
		{"keyceremony", "verify", "--pubkey", filepath.Join(out, "signing-key.pem"), "--files", out, filepath.Join(out, "transcript.jsonl")},
		{"openssl", "dgst", "-sha256", "-verify", filepath.Join(out, "signing-key.pem"), "-signature", filepath.Join(out, SealSignatureFile), filepath.Join(out, SealPayloadFile)},
	}
	if len(cmds) != len(want) {
		t.Fatalf("%d commands: %q", len(cmds), cmds)
	}
	for i, c := range cmds {
		// The shell splits the printed line into words; printf shows them.
		got, err := exec.Command("sh", "-c", "printf '%s\\n' "+c).Output()
		if err != nil {
			t.Fatal(err)
		}
		if words := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n"); strings.Join(words, "|") != strings.Join(want[i], "|") {
			t.Errorf("%s\nthe shell reads %q, want %q", c, words, want[i])
		}
	}
}
