//go:build !linux

package secret

// Harden does nothing outside Linux.
func Harden() error { return nil }

func scrubEnviron(string) {}
