package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReleaseReproducible builds the checkout's commit with make release's
// script in two clones in different directories and requires the same
// SHA256SUMS, and that each binary's keyceremony version reports its own
// hash, the commit, and -trimpath. The clones share the build cache, which
// still catches a lost -trimpath (the directory then enters every package's
// cache key); KEYCEREMONY_RELEASE_FRESH_CACHE=1 (make release-check) gives the
// second clone an empty cache, so every package is compiled twice.
func TestReleaseReproducible(t *testing.T) {
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("not in a git checkout: CI must run from a clone: %v", err)
		}
		t.Skip("not in a git checkout: a release is built from a commit")
	}
	head := gitOut(t, strings.TrimSpace(string(top)), "rev-parse", "HEAD")
	var sums [2]string
	for i, name := range []string{"a", "a clone in another, longer directory"} {
		dir := filepath.Join(t.TempDir(), name)
		gitOut(t, "", "clone", "-q", "--no-checkout", strings.TrimSpace(string(top)), dir)
		gitOut(t, dir, "checkout", "-q", "--detach", head)
		cmd := exec.Command("bash", "scripts/release.sh")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "RELEASE_GO=any")
		if i == 1 && os.Getenv("KEYCEREMONY_RELEASE_FRESH_CACHE") == "1" {
			cmd.Env = append(cmd.Env, "GOCACHE="+t.TempDir())
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make release in %s: %v\n%s", dir, err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, "dist", "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = string(b)
		checkReleaseVersion(t, filepath.Join(dir, "dist"), sums[i], head)
	}
	if sums[0] != sums[1] {
		t.Fatalf("the same commit built in two directories differs:\n%s\n%s", sums[0], sums[1])
	}
}

// checkReleaseVersion runs a release binary's keyceremony version --json and
// checks it against SHA256SUMS and the commit.
func checkReleaseVersion(t *testing.T, dist, sums, head string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(dist, "keyceremony"), "version", "--json").Output()
	if err != nil {
		t.Fatalf("keyceremony version --json: %v", err)
	}
	var v struct {
		Tool  string
		Build struct {
			Settings     []string
			BinarySHA256 string `json:"binary_sha256"`
		}
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("version --json: %v\n%s", err, out)
	}
	if !strings.Contains(sums, v.Build.BinarySHA256+"  keyceremony\n") {
		t.Errorf("version reports sha256 %s, SHA256SUMS says:\n%s", v.Build.BinarySHA256, sums)
	}
	for _, want := range []string{"-trimpath=true", "vcs.revision=" + head, "vcs.modified=false"} {
		if !slices.Contains(v.Build.Settings, want) {
			t.Errorf("version --json settings lack %s: %v", want, v.Build.Settings)
		}
	}
	if !strings.Contains(v.Tool, head) {
		t.Errorf("version names %q, not the commit %s", v.Tool, head)
	}
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
