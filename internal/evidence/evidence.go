// Package evidence writes files that a ceremony leaves behind as evidence:
// they are created exclusively (a ceremony never overwrites a file) and
// synced to disk before the ceremony goes on.
package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// MaxFileSize is the most ReadFile reads of a file a ceremony wrote beside
// its transcript (params, bundles, escrow, config copies: a few KiB each,
// an escrow of thousands of keys a few MiB).
const MaxFileSize = 64 << 20

// ReadFile reads the file at path, which must be a regular file of at most
// max bytes. Anything else is refused before it is read, naming path: a
// named pipe would block the reader, a device such as /dev/zero fill its
// memory.
func ReadFile(path string, max int64) ([]byte, error) {
	// Stat before opening: opening a device or a pipe can block or act.
	// Then the open file is checked again, in case it was swapped.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := plain(path, fi, max); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := plain(path, fi, max); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s holds more than %d bytes, more than keyceremony writes there", path, max)
	}
	return data, nil
}

// plain refuses what is not a regular file of at most max bytes.
func plain(path string, fi fs.FileInfo, max int64) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is %s, not a regular file", path, fileKind(fi.Mode()))
	}
	if fi.Size() > max {
		return fmt.Errorf("%s holds more than %d bytes, more than keyceremony writes there", path, max)
	}
	return nil
}

// fileKind names the kind of a file that is not regular.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.String()
}

// Create writes data to a new file at path with mode perm. It fails, changing
// nothing, if path already exists.
func Create(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: a ceremony never overwrites evidence; choose a new output directory or move the old file away", path)
		}
		return fmt.Errorf("failed to create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("failed to sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir syncs directory dir to disk, so that a file it just gained (or
// lost, or renamed) survives a crash: syncing a file does not sync the
// directory entry that names it.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open directory %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync directory %s: %w", dir, err)
	}
	return nil
}

// Hash returns the hex SHA-256 of data, the form in which transcripts name files.
func Hash(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}
