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

// A drill recovers into a scratch SoftHSM token kept in a private
// directory (0700) of the temp directory, named with scratchPrefix and
// marked with the PID of the process that owns it. The directory is removed
// when the drill ends; one left by a drill that was killed is removed by
// the next drill. The recovered keys are session objects, never written to
// the token store, so even a directory left behind holds none of them.
const (
	scratchPrefix = "keyceremony-drill-"
	scratchOwner  = "owner.pid"
)

// newScratchDir removes the scratch directories of drills whose process is
// gone, then makes a new one marked with this process's PID. It returns the
// directory and the stale ones it removed.
func newScratchDir() (string, []string, error) {
	removed := removeStaleScratch(os.TempDir())
	dir, err := os.MkdirTemp("", scratchPrefix)
	if err != nil {
		return "", removed, fmt.Errorf("failed to make a scratch directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, scratchOwner), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", removed, fmt.Errorf("failed to mark the scratch directory: %w", err)
	}
	return dir, removed, nil
}

// removeStaleScratch removes the scratch directories in tmp, owned by this
// user, whose owner process no longer runs (or that were never marked and
// are older than a minute).
func removeStaleScratch(tmp string) []string {
	dirs, _ := filepath.Glob(filepath.Join(tmp, scratchPrefix+"*"))
	var removed []string
	for _, d := range dirs {
		st, err := os.Lstat(d)
		if err != nil || !st.IsDir() || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, scratchOwner))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) || time.Since(st.ModTime()) < time.Minute {
				continue
			}
		} else if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || processAlive(pid) {
			continue
		}
		if os.RemoveAll(d) == nil {
			removed = append(removed, d)
		}
	}
	return removed
}

// processAlive reports whether a process with this PID exists.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
