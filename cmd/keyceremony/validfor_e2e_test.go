package main_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRecoverValidForOverflow runs the real binary with issue 17's day
// counts that wrapped around to 8h29m52s and 30 days: both are refused as a
// usage error before anything is read, and nothing is created.
func TestRecoverValidForOverflow(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	for _, in := range []string{"106751991167301d", "281474976710686d"} {
		cmd := binary(t, "keyceremony", "recover", "--escrow", filepath.Join(dir, "escrow.json"),
			"--share", filepath.Join(dir, "share-alice.age"), "--out", out, "--token-label", "ceremony",
			"--reimport", "--valid-for", in)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("--valid-for %s: %v, want exit 2\n%s", in, err, stderr.String())
		}
		want := "keyceremony: error: --valid-for \"" + in + "\" is more than 365 days, the most KMS allows\n"
		if stderr.String() != want {
			t.Errorf("--valid-for %s: stderr\n%q\nwant\n%q", in, stderr.String(), want)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--valid-for %s: %s was created", in, out)
		}
	}
}
