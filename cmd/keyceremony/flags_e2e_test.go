package main_test

import (
	"strings"
	"testing"
)

// TestBadFlagOneLine: a flag that does not exist or lacks its value is one
// line, said once, naming the command's help and exiting 2 (the flag
// package alone prints the error, the whole help and the error again);
// -h still prints the help and exits 0.
func TestBadFlagOneLine(t *testing.T) {
	e := newE2E(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "--uri", "pkcs11:token=x"}, "keyceremony: error: flag provided but not defined: -uri: see keyceremony probe -h\n"},
		{[]string{"verify", "--fingerprint"}, "keyceremony: error: flag needs an argument: -fingerprint: see keyceremony verify -h\n"},
		{[]string{"params", "fetch", "--nope"}, "keyceremony: error: flag provided but not defined: -nope: see keyceremony params fetch -h\n"},
	} {
		stdout, stderr, code := e.run(nil, c.args...)
		if code != 2 || stderr != c.want || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, stdout, stderr, c.want)
		}
	}
	stdout, stderr, code := e.run(nil, "probe", "-h")
	if code != 0 || !strings.HasPrefix(stdout+stderr, "Usage: keyceremony probe") {
		t.Errorf("probe -h: exit %d, %q %q", code, stdout, stderr)
	}
}
