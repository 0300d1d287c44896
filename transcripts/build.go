package transcripts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// ReadBuild describes the running binary: its build info (Go version, main
// module, dependencies with their go.sum hashes, VCS settings) and the
// SHA-256 of its executable file.
func ReadBuild() (*Build, error) {
	b := &Build{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		b.GoVersion = bi.GoVersion
		b.Main = Module{Path: bi.Main.Path, Version: bi.Main.Version, Sum: bi.Main.Sum}
		for _, d := range bi.Deps {
			m := d
			if d.Replace != nil {
				m = d.Replace
			}
			b.Modules = append(b.Modules, Module{Path: d.Path, Version: m.Version, Sum: m.Sum})
		}
		// Every build setting: flags (-trimpath, -ldflags, -tags), the
		// target (GOOS, GOARCH, GOAMD64), cgo and its flags, and the VCS
		// stamp. None is secret, and each changes the binary.
		for _, s := range bi.Settings {
			b.Settings = append(b.Settings, s.Key+"="+s.Value)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("failed to find the running binary to hash it: %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("failed to hash the running binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("failed to hash the running binary: %w", err)
	}
	b.BinarySHA256 = hex.EncodeToString(h.Sum(nil))
	return b, nil
}
