//go:build crashtest

package transcripts

import (
	"os"
	"strconv"
	"syscall"
)

// In a binary built with -tags crashtest (never a release build), crash
// tests stop the real binary at a chosen transcript line:
//
//   - KEYCEREMONY_CRASHTEST_KILL_AT_LINE=N: the process SIGKILLs itself as
//     soon as a transcript file holds N lines (0: right after it is
//     created);
//   - KEYCEREMONY_CRASHTEST_STOP_AT_LINE=N: the process SIGSTOPs itself
//     there, for the test to start a second run beside it and SIGCONT it.
func init() {
	kill, kerr := strconv.Atoi(os.Getenv("KEYCEREMONY_CRASHTEST_KILL_AT_LINE"))
	stop, serr := strconv.Atoi(os.Getenv("KEYCEREMONY_CRASHTEST_STOP_AT_LINE"))
	testOnlyAfterLine = func(lines int) {
		switch {
		case kerr == nil && lines == kill:
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		case serr == nil && lines == stop:
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		}
	}
}
