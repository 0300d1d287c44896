package sshsig

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestParseSharedDashes is issue 17's panic: the markers share their dashes,
// so the file passes a prefix and suffix check and a slice between them ran
// backwards. OpenSSH refuses it: no newline after the BEGIN line.
func TestParseSharedDashes(t *testing.T) {
	in := "-----BEGIN SSH SIGNATURE-----END SSH SIGNATURE-----"
	if len(in) != 51 {
		t.Fatalf("the input is %d bytes, want issue 17's 51", len(in))
	}
	for _, s := range []string{in, in + "\n", "-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----"} {
		_, err := Parse([]byte(s))
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Parse(%q) = %v, want ErrMalformed", s, err)
		}
		if s == in && err.Error() != "malformed ssh signature: the file does not start with the line -----BEGIN SSH SIGNATURE-----" {
			t.Fatalf("Parse(%q): %v", s, err)
		}
	}
}

// TestWildcardPathological is issue 17's blow-up: with backtracking to every
// earlier '*', `*a*a*a*a*a*a*a*a*b` against 64 a's ran for minutes. With only
// the last '*' kept it is len(p)*len(s) steps at most.
func TestWildcardPathological(t *testing.T) {
	principal := strings.Repeat("a", 64)
	for _, p := range []string{"*a*a*a*a*a*a*b", "*a*a*a*a*a*a*a*a*b", strings.Repeat("*a", 60) + "*b"} {
		if wildcard(p, principal) {
			t.Errorf("%q matched %q", p, principal)
		}
		if !wildcard(p[:len(p)-1], principal) && strings.Count(p, "a") <= 64 {
			t.Errorf("%q did not match %q", p[:len(p)-1], principal)
		}
	}
	if !wildcard(strings.Repeat("*a", 500)+"*", principal+strings.Repeat("a", 500)) {
		t.Error("a long pattern of stars did not match")
	}
}

// referenceMatch is OpenSSH's recursive match_pattern, to check the linear
// matcher against on short strings where its cost does not matter.
func referenceMatch(s, p string) bool {
	for {
		if p == "" {
			return s == ""
		}
		if p[0] == '*' {
			for p != "" && p[0] == '*' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for ; s != ""; s = s[1:] {
				if referenceMatch(s, p) {
					return true
				}
			}
			return false
		}
		if s == "" || p[0] != '?' && p[0] != s[0] {
			return false
		}
		s, p = s[1:], p[1:]
	}
}

func TestWildcardAgreesWithReference(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 17))
	const alpha = "ab*?"
	gen := func(n int, a string) string {
		b := make([]byte, r.IntN(n))
		for i := range b {
			b[i] = a[r.IntN(len(a))]
		}
		return string(b)
	}
	for range 200000 {
		p, s := gen(9, alpha), gen(9, "ab*?")
		if got, want := wildcard(p, s), referenceMatch(s, p); got != want {
			t.Fatalf("wildcard(%q, %q) = %v, OpenSSH's match_pattern says %v", p, s, got, want)
		}
	}
}

func BenchmarkWildcardPathological(b *testing.B) {
	principal := strings.Repeat("a", 64)
	for b.Loop() {
		wildcard("*a*a*a*a*a*a*a*a*b", principal)
	}
}
