package ceremony

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	l, err := LockDir(dir, "keyceremony run")
	if err != nil {
		t.Fatal(err)
	}
	// A second lock (another open file description, as another process
	// would have) is refused, naming the holder, and changes nothing.
	before, _ := os.ReadFile(filepath.Join(dir, LockFile))
	_, err = LockDir(dir, "keyceremony tui")
	var le *LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() || le.Command != "keyceremony run" {
		t.Fatalf("second lock: %v, want a LockedError naming this process", err)
	}
	if !strings.Contains(err.Error(), "is in use by process ") || !strings.Contains(err.Error(), "(keyceremony run, since ") {
		t.Errorf("error %q does not name the holder", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, LockFile)); string(after) != string(before) {
		t.Errorf("a refused lock changed the lock file: %q -> %q", before, after)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	// Unlock removes the directory it made, when empty.
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the empty directory LockDir made is still there: %v", err)
	}
	// A directory with evidence in it stays; the lock is free again.
	l, err = LockDir(dir, "keyceremony run")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "transcript.jsonl"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "transcript.jsonl" {
		t.Errorf("after unlock the directory holds %v, want only the transcript", entries)
	}
	l, err = LockDir(dir, "keyceremony recover")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	_ = l.Unlock()
}
