package secret

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Harden turns core dumps off (RLIMIT_CORE 0) and marks the process
// non-dumpable (prctl PR_SET_DUMPABLE 0): no core file, and no process of
// the same user can ptrace it or read its /proc/PID/mem, environ or
// cmdline. It returns the first error.
func Harden() error {
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return err
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); e != 0 {
		return e
	}
	return nil
}

// scrubEnviron overwrites the value of name in the environment block the
// process started with (what /proc/PID/environ shows), between the
// env_start and env_end addresses of /proc/self/stat. Failures are ignored:
// Go's own copy is removed either way.
func scrubEnviron(name string) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, env_start 50 and env_end 51 (proc(5)).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 49 {
		return
	}
	start, err1 := strconv.ParseInt(f[50-3], 10, 64)
	end, err2 := strconv.ParseInt(f[51-3], 10, 64)
	if err1 != nil || err2 != nil || end <= start || end-start > 1<<24 {
		return
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer mem.Close()
	buf := make([]byte, end-start)
	defer clear(buf)
	if _, err := mem.ReadAt(buf, start); err != nil {
		return
	}
	prefix := []byte(name + "=")
	for off := 0; off < len(buf); {
		n := bytes.IndexByte(buf[off:], 0)
		if n < 0 {
			n = len(buf) - off
		}
		if entry := buf[off : off+n]; bytes.HasPrefix(entry, prefix) {
			v := entry[len(prefix):]
			clear(v)
			_, _ = mem.WriteAt(v, start+int64(off+len(prefix)))
		}
		off += n + 1
	}
}
