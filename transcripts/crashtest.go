//go:build crashtest

package transcripts

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// In a binary built with -tags crashtest (never a release build), crash
// tests stop the real binary at a chosen transcript line:
//
//   - KEYCEREMONY_CRASHTEST_KILL_AT_LINE=N: the process SIGKILLs itself as
//     soon as a transcript file holds N lines (0: right after it is
//     created);
//   - KEYCEREMONY_CRASHTEST_PAUSE_AT_LINE=N with
//     KEYCEREMONY_CRASHTEST_PAUSE_FILE=F: the process creates F there and
//     waits, doing nothing else, until F is removed, for the test to start
//     a second run beside it;
//   - KEYCEREMONY_CRASHTEST_TEAR_LINE=N: the process writes the first half
//     of line N (1: the header; "seal": the seal line) and SIGKILLs itself,
//     leaving a torn last line as a power cut or a kill in the middle of
//     write(2) would.
func init() {
	if v := os.Getenv("KEYCEREMONY_CRASHTEST_TEAR_LINE"); v != "" {
		tear, _ := strconv.Atoi(v)
		testOnlyBeforeLine = func(n int, f *os.File, line []byte) {
			if n == tear || v == "seal" && bytes.HasPrefix(line, []byte(`{"type":"seal"`)) {
				_, _ = f.Write(line[:len(line)/2])
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	kill, kerr := strconv.Atoi(os.Getenv("KEYCEREMONY_CRASHTEST_KILL_AT_LINE"))
	pause, perr := strconv.Atoi(os.Getenv("KEYCEREMONY_CRASHTEST_PAUSE_AT_LINE"))
	file := os.Getenv("KEYCEREMONY_CRASHTEST_PAUSE_FILE")
	testOnlyAfterLine = func(lines int) {
		switch {
		case kerr == nil && lines == kill:
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		case perr == nil && file != "" && lines == pause:
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				panic(err)
			}
			for {
				if _, err := os.Stat(file); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}
