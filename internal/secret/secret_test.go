package secret

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const testVar, testValue = "KEYCEREMONY_SECRET_TEST", "s3cret-value-4242"

// TestTakeEnv runs itself as a child process with a secret in its
// environment: after TakeEnv, neither Go's environment, nor the block
// /proc/self/environ shows, nor a grandchild's environment holds it.
func TestTakeEnv(t *testing.T) {
	if os.Getenv("SECRET_TEST_CHILD") == "1" {
		// The control: before TakeEnv, the block shows the value.
		if before, _ := os.ReadFile("/proc/self/environ"); !strings.Contains(string(before), testValue) {
			os.Exit(17)
		}
		v, ok := TakeEnv(testVar)
		if !ok || string(v) != testValue {
			os.Exit(10)
		}
		if err := Harden(); err != nil {
			os.Exit(11)
		}
		env, _ := os.ReadFile("/proc/self/environ")
		child, _ := exec.Command("/bin/sh", "-c", "cat /proc/$$/environ").Output()
		var lim syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_CORE, &lim)
		dumpable, _, _ := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_DUMPABLE, 0, 0)
		switch {
		case strings.Contains(string(env), testValue):
			os.Exit(12)
		case strings.Contains(string(child), testValue) || len(child) == 0:
			os.Exit(13)
		case os.Getenv(testVar) != "":
			os.Exit(14)
		case lim.Cur != 0 || lim.Max != 0:
			os.Exit(15)
		case dumpable != 0:
			os.Exit(16)
		}
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestTakeEnv$")
	cmd.Env = append(os.Environ(), "SECRET_TEST_CHILD=1", testVar+"="+testValue)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v (12: in /proc/self/environ, 13: inherited, 14: in Go's env, 15: core limit, 16: dumpable, 17: the control failed)\n%s", err, out)
	}
}

// TestReadFile: the secret without its line breaks; a file that never
// ends is refused after MaxFileSize bytes, naming itself and never
// quoting what it read.
func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(p, []byte("correct horse\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(p); err != nil || string(b) != "correct horse" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	_, err := ReadFile("/dev/zero")
	if want := "/dev/zero holds more than 65536 bytes: it is not a PIN or passphrase file"; err == nil || err.Error() != want {
		t.Errorf("ReadFile(/dev/zero): %v, want %q", err, want)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}
