package ceremony

import (
	"strings"
	"sync"

	"github.com/keyceremony/keyceremony/transcripts"
)

var binary struct {
	once  sync.Once
	build *transcripts.Build
	err   error
}

// Binary describes the running keyceremony binary: its build info and the
// SHA-256 of its executable file, read once per process. The transcript
// header, keyceremony version, the script and the plan all show these same
// values, so witnesses can compare them with the published SHA256SUMS.
func Binary() (*transcripts.Build, error) {
	binary.once.Do(func() { binary.build, binary.err = transcripts.ReadBuild() })
	return binary.build, binary.err
}

// GroupHex splits a hex string into groups of 8 digits, for reading aloud.
func GroupHex(h string) string {
	var groups []string
	for len(h) > 8 {
		groups = append(groups, h[:8])
		h = h[8:]
	}
	return strings.Join(append(groups, h), " ")
}

// WordGroups splits space-separated words into groups of four, for reading
// aloud and writing down without losing one's place.
func WordGroups(words string) []string {
	ws := strings.Fields(words)
	var groups []string
	for len(ws) > 4 {
		groups = append(groups, strings.Join(ws[:4], " "))
		ws = ws[4:]
	}
	return append(groups, strings.Join(ws, " "))
}
