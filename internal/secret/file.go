package secret

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxFileSize is the most a PIN or passphrase file may hold.
const MaxFileSize = 64 << 10

// ReadFile returns the PIN or passphrase in the file at path, without its
// trailing line breaks (CR and LF). It reads at most MaxFileSize bytes, so
// that a path that never ends (/dev/zero, a device) is refused at once
// instead of filling memory; a pipe (--passphrase-file <(…)) works. The
// caller zeroes the value.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, MaxFileSize+1)
	defer clear(b)
	n, err := io.ReadFull(f, b)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
	case err != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("%s holds more than %d bytes: it is not a PIN or passphrase file", path, MaxFileSize)
	}
	for n > 0 && (b[n-1] == '\n' || b[n-1] == '\r') {
		n--
	}
	return append([]byte(nil), b[:n]...), nil
}
