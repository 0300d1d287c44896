package ceremony

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockFile is the file in a ceremony directory that the process working in
// it holds locked (flock) for its whole life: run, the TUI, wrap and
// recover. It holds that process's ID and command, and is removed when the
// process is done (one left by a killed process is simply taken over).
const LockFile = ".keyceremony.lock"

// DirLock is an exclusive lock on a ceremony directory.
type DirLock struct {
	f         *os.File
	path, dir string
	// created is true when LockDir made dir: Unlock removes it again if
	// nothing else was put in it (a ceremony refused before its first
	// change leaves nothing behind).
	created bool
}

// LockedError says a ceremony directory is in use by another process.
type LockedError struct {
	Dir string
	// PID and Command are what the holder wrote into the lock file (0 and
	// "" when it had not written them yet).
	PID     int
	Command string
	Since   string
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("process %d", e.PID)
		if e.Command != "" {
			who += " (" + e.Command
			if e.Since != "" {
				who += ", since " + e.Since
			}
			who += ")"
		}
	}
	return fmt.Sprintf("ceremony directory %s is in use by %s: one process at a time works in a ceremony directory; wait for it to finish or stop it, then run the same command again; nothing was changed", e.Dir, who)
}

// LockDir takes the exclusive lock on dir (created if missing), without
// waiting: when another process holds it, it returns a *LockedError naming
// that process and changes nothing. command names the holder for others
// ("keyceremony run"). The lock lasts until Unlock or the process ends
// (the kernel drops it when the process dies, even by SIGKILL).
func LockDir(dir, command string) (*DirLock, error) {
	created := false
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the ceremony directory %s (%w): choose a directory you can write to", dir, err)
	}
	p := filepath.Join(dir, LockFile)
	for {
		if fi, err := os.Lstat(p); err == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file: remove it", p)
		}
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("cannot write in the ceremony directory %s (%w): choose a directory you can write to, or fix its permissions", dir, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			defer f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, lockedError(dir, f)
			}
			return nil, fmt.Errorf("failed to lock the ceremony directory %s: %w", dir, err)
		}
		// The holder removes the file before it lets go: a lock taken on a
		// file no longer at p is no lock, take it again.
		held, err1 := f.Stat()
		now, err2 := os.Lstat(p)
		if err1 != nil || err2 != nil || !os.SameFile(held, now) {
			f.Close()
			continue
		}
		info := fmt.Sprintf("pid %d\ncommand %s\nsince %s\n", os.Getpid(), command, time.Now().UTC().Format(time.RFC3339))
		err = f.Truncate(0)
		if err == nil {
			_, err = f.WriteAt([]byte(info), 0)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("failed to write the lock file of the ceremony directory: %w", err)
		}
		return &DirLock{f: f, path: p, dir: dir, created: created}, nil
	}
}

// lockedError reads what the holder wrote into the lock file.
func lockedError(dir string, f *os.File) error {
	e := &LockedError{Dir: dir}
	b := make([]byte, 512)
	n, _ := f.ReadAt(b, 0)
	for _, line := range strings.Split(string(b[:n]), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "pid":
			e.PID, _ = strconv.Atoi(v)
		case "command":
			e.Command = v
		case "since":
			e.Since = v
		}
	}
	return e
}

// Unlock removes the lock file and releases the lock; a directory LockDir
// created is removed too if it is empty.
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(l.path) // while still holding it: see LockDir
	if l.created {
		_ = os.Remove(l.dir) // fails, as it should, unless empty
	}
	if cerr := l.f.Close(); err == nil { // drops the flock
		err = cerr
	}
	l.f = nil
	return err
}
