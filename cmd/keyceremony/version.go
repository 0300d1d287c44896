package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/transcripts"
)

const versionHelp = `Usage: keyceremony version [--json]

Prints what this binary is: the module version, the VCS revision it was built
from, the Go version, the build settings and the SHA-256 of the executable
file (also as PGP words), the same values a ceremony's transcript header
records. Witnesses compare the SHA-256 with the SHA256SUMS published before
the ceremony (README, "Bringing keyceremony into the room").

`

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr, versionHelp)
	asJSON := fs.Bool("json", false, "print the build as JSON, as the transcript header records it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("version takes no arguments: keyceremony version [--json]")
	}
	b, err := ceremony.Binary()
	if err != nil {
		return err
	}
	sum, err := hex.DecodeString(b.BinarySHA256)
	if err != nil {
		return fmt.Errorf("failed to read the binary's hash: %w", err)
	}
	words := transcripts.Words(sum)
	if *asJSON {
		writeJSON(stdout, struct {
			Tool  string             `json:"tool"`
			Build *transcripts.Build `json:"build"`
			Words string             `json:"binary_sha256_words"`
		}{ceremony.ToolVersion(), b, words})
		return nil
	}
	fmt.Fprintln(stdout, ceremony.ToolVersion())
	fmt.Fprintf(stdout, "module:   %s %s\n", b.Main.Path, b.Main.Version)
	fmt.Fprintf(stdout, "go:       %s\n", b.GoVersion)
	fmt.Fprintf(stdout, "settings: %s\n", strings.Join(b.Settings, " "))
	fmt.Fprintf(stdout, "sha256:   %s\n", b.BinarySHA256)
	fmt.Fprintf(stdout, "          %s\n", ceremony.GroupHex(b.BinarySHA256))
	fmt.Fprintln(stdout, "words:")
	for i, g := range ceremony.WordGroups(words) {
		fmt.Fprintf(stdout, "  %d. %s\n", i+1, g)
	}
	return nil
}
