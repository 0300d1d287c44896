package sshsig

import (
	"strings"
	"testing"
)

// FuzzMatch checks the linear pattern-list matcher against OpenSSH's
// match_pattern_list over its recursive match_pattern.
func FuzzMatch(f *testing.F) {
	f.Add("*a*a*a*b", "aaaaaaaa")
	f.Add("a?ice,!mallory", "alice")
	f.Add("!*@example.org,*@example.com", "alice@example.com")
	f.Add("alice,", "")
	f.Fuzz(func(t *testing.T, list, s string) {
		if strings.Count(list, "*") > 6 || len(s) > 64 {
			return // the reference is exponential
		}
		want := false
		for rest := list; rest != ""; {
			neg := rest[0] == '!'
			if neg {
				rest = rest[1:]
			}
			var p string
			p, rest, _ = strings.Cut(rest, ",")
			if len(p) >= 1023 {
				want = false
				break
			}
			if referenceMatch(s, p) {
				if neg {
					want = false
					break
				}
				want = true
			}
		}
		if got := match(list, s); got != want {
			t.Fatalf("match(%q, %q) = %v, OpenSSH's match_pattern_list says %v", list, s, got, want)
		}
	})
}
