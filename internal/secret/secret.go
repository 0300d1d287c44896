// Package secret keeps the process's secrets out of reach where Go can:
// [Harden] turns core dumps off and makes the process non-dumpable, and
// [TakeEnv] takes a secret out of the environment, both Go's copy (which
// child processes would inherit) and the block the kernel shows in
// /proc/PID/environ.
//
// What Go cannot do is listed in the README's "Secrets in memory": strings
// and copies made by libraries cannot be zeroed.
package secret

import "os"

// TakeEnv returns the value of the environment variable name and removes
// it from the environment: later children do not inherit it, and the
// process's original environment block no longer shows it (best effort:
// on Linux, through /proc/self/mem). The caller zeroes the value.
func TakeEnv(name string) ([]byte, bool) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return nil, false
	}
	_ = os.Unsetenv(name)
	scrubEnviron(name)
	return []byte(v), true
}
