package main_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// runWithin is e.run with a deadline: a run that hangs (reading a named
// pipe) is killed and fails the test, instead of the test timing out.
func runWithin(e *e2e, d time.Duration, extraEnv []string, name string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := binary(e.t, name, args...)
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir}, e.env...), extraEnv...)
	cmd.WaitDelay = time.Second
	killed := false
	timer := time.AfterFunc(d, func() {
		if cmd.Process != nil {
			killed = true
			_ = cmd.Process.Kill()
		}
	})
	stdout, stderr, code = runBinary(e.t, cmd)
	timer.Stop()
	if killed {
		e.t.Fatalf("keyceremony %v did not end within %v (killed)\n%s\n%s", args, d, stdout, stderr)
	}
	return stdout, stderr, code
}

// TestResumeRefusesNonRegularFiles kills a ceremony after its first key is
// wrapped and signed, then puts in out_dir, where the transcript names the
// bundle, a named pipe (which a plain read waits on forever), a link to
// /dev/zero (which fills memory) and a sparse file larger than any bundle;
// and in place of the transcript a named pipe. Each resume is refused at
// once with one line naming the file and the fix, and changes nothing; with
// the files put back, the resume completes and verifies.
func TestResumeRefusesNonRegularFiles(t *testing.T) {
	e := newE2E(t)
	pin := []string{"KEYCEREMONY_PIN=" + hsmtest.PIN}
	// Where the first wrap's checkpoint is, in a clean run of the same
	// shape.
	clean := ceremonyRun(t, e, "shape")
	lines, err := transcriptLines(filepath.Join(clean, "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	kill := -1
	for i, l := range lines {
		if l["step"] == "wrap" {
			for j := i; j < len(lines); j++ {
				if lines[j]["step"] == "checkpoint" {
					kill = j + 1
					break
				}
			}
			break
		}
	}
	if kill < 0 {
		t.Fatal("the clean run has no checkpoint after a wrap")
	}
	// Keys are made and imported concurrently, so a run's line count
	// varies: kill later (a new ceremony each time) until a checkpoint
	// signs a wrap, which the resume then reads.
	var cfg, out, tr, bundle string
	for try := 0; bundle == ""; try, kill = try+1, kill+1 {
		if try == 10 {
			t.Fatalf("no killed run recorded a wrap under a checkpoint:\n%v", lines)
		}
		name := fmt.Sprintf("fifo%d", try)
		cfg = e.config(name+".yaml", fmt.Sprintf(ceremonyYAML, name))
		if _, stderr, code := runWithin(e, 2*time.Minute, append(pin, "KEYCEREMONY_CRASHTEST_KILL_AT_LINE="+strconv.Itoa(kill)), "keyceremony-crashtest", "run", "--config", cfg); code == 0 {
			t.Fatalf("the run was not killed at line %d: %s", kill, stderr)
		}
		out = filepath.Join(e.dir, name)
		tr = filepath.Join(out, "transcript.jsonl")
		if lines, err = transcriptLines(tr); err != nil {
			t.Fatal(err)
		}
		wrapped := ""
		for _, l := range lines {
			switch l["step"] {
			case "wrap":
				wrapped = filepath.Join(out, l["data"].(map[string]any)["file"].(string))
			case "checkpoint":
				bundle = wrapped
			}
		}
	}
	saved, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(tr)
	name := filepath.Base(bundle)
	resume := func(what, want string) {
		t.Helper()
		_, stderr, code := runWithin(e, time.Minute, pin, "keyceremony", "run", "--config", cfg)
		if code != 1 || stderr != want {
			t.Errorf("%s: exit %d\n%s\nwant exit 1 and\n%s", what, code, stderr, want)
		}
		if what == "transcript" {
			return
		}
		if after, _ := os.ReadFile(tr); !bytes.Equal(after, before) {
			t.Errorf("%s: the refused resume changed the transcript", what)
		}
	}
	replace := func(make func() error) {
		t.Helper()
		if err := os.Remove(bundle); err != nil {
			t.Fatal(err)
		}
		if err := make(); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(why string) string {
		return "keyceremony: error: cannot resume: the transcript names " + name + ", but " + bundle + " " + why + ": put back the file it recorded, from a copy\n"
	}

	replace(func() error { return syscall.Mkfifo(bundle, 0o600) })
	resume("named pipe", refused("is a named pipe, not a regular file"))
	replace(func() error { return os.Symlink("/dev/zero", bundle) })
	resume("/dev/zero", refused("is a device, not a regular file"))
	replace(func() error { return os.WriteFile(bundle, nil, 0o600) })
	if err := os.Truncate(bundle, 65<<20); err != nil {
		t.Fatal(err)
	}
	resume("sparse file", refused("holds more than 67108864 bytes, more than keyceremony writes there"))
	replace(func() error { return os.WriteFile(bundle, saved, 0o644) })

	// The transcript itself.
	if err := os.Rename(tr, tr+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(tr, 0o600); err != nil {
		t.Fatal(err)
	}
	resume("transcript", "keyceremony: error: cannot resume the ceremony in "+out+": failed to read transcript: "+tr+" is a named pipe, not a regular file: put back the transcript keyceremony wrote, from a copy\n")
	if fi, err := os.Lstat(tr); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the pipe in place of the transcript was changed: %v %v", fi, err)
	}
	if err := os.Remove(tr); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tr+".saved", tr); err != nil {
		t.Fatal(err)
	}

	if _, stderr, code := runWithin(e, 2*time.Minute, pin, "keyceremony", "run", "--config", cfg); code != 0 {
		t.Fatalf("the resume with the files put back exited %d: %s", code, stderr)
	}
	if stdout, stderr, code := e.run(nil, "verify", "--files", out, "--pubkey", filepath.Join(out, "signing-key.pem"), tr); code != 0 {
		t.Fatalf("verify exited %d: %s %s", code, stdout, stderr)
	}
}
