package main_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestRunCtrlC sends SIGINT (Ctrl-C at the terminal) to keyceremony run
// during step 3's first CreateKey (kmslocal answers after 1 s): it exits 1
// with one line saying it was interrupted, at which step, and a hint that the
// same command resumes (it said "context canceled" and "fix the cause");
// the same command then completes the ceremony, which verifies.
func TestRunCtrlC(t *testing.T) {
	e := newE2EWith(t, "--latency", "1s")
	cfg := e.config("c.yaml", fmt.Sprintf(ceremonyYAML, "int"))
	out := filepath.Join(e.dir, "int")
	cmd := binary(t, "keyceremony", "run", "--config", cfg)
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir}, e.env...), "KEYCEREMONY_PIN="+hsmtest.PIN)
	var stdout bytes.Buffer
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Inside step 3's first CreateKey, which takes a second.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(stderr.String(), "[3/10] Create or check the KMS keys\n"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("step 3 never began:\n%s", stderr.String())
		}
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	checkRun(t, cmd, stdout.String(), stderr.String())
	lines := strings.SplitAfter(stderr.String(), "\n")
	last := strings.Join(lines[max(len(lines)-3, 0):], "")
	want := regexp.MustCompile(`^keyceremony: error: step 3 \(create or check the KMS keys\): interrupted \(Ctrl-C\): the running calls were cancelled\n` +
		`keyceremony: hint: the transcript in ` + regexp.QuoteMeta(out) + ` records what was done: run the same command again to resume where it stopped\n$`)
	if code := cmd.ProcessState.ExitCode(); code != 1 || !want.MatchString(last) {
		t.Fatalf("exit %d, last lines:\n%s\nwant exit 1 and lines matching %s\nstderr:\n%s", code, last, want, stderr.String())
	}
	if o, e2, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, "run", "--config", cfg); code != 0 {
		t.Fatalf("the same command again exited %d:\n%s%s", code, o, e2)
	}
	if o, e2, code := e.run(nil, "verify", "--files", out, "--pubkey", filepath.Join(out, "signing-key.pem"), filepath.Join(out, "transcript.jsonl")); code != 0 {
		t.Fatalf("verify exited %d: %s%s", code, o, e2)
	}
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
