//go:build crashtest

package transcripts

import (
	"os"
	"strconv"
	"syscall"
)

// In a binary built with -tags crashtest (never a release build), the
// environment variable KEYCEREMONY_CRASHTEST_KILL_AT_LINE=N makes the process
// SIGKILL itself as soon as a transcript file holds N lines (0: right after
// it is created), so that crash tests can stop the real binary at every line
// deterministically.
func init() {
	n, err := strconv.Atoi(os.Getenv("KEYCEREMONY_CRASHTEST_KILL_AT_LINE"))
	if err != nil {
		return
	}
	testOnlyAfterLine = func(lines int) {
		if lines == n {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}
