package sshsig_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/keyceremony/keyceremony/internal/sshsig"
	"golang.org/x/crypto/ssh"
)

// seedVectors adds every recorded OpenSSH vector to f's seed corpus through
// add, so `go test` runs them and the fuzzer starts from real files.
func seedVectors(f *testing.F, add func(v vector)) vectorSet {
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		f.Fatal(err)
	}
	var set vectorSet
	if err := json.Unmarshal(b, &set); err != nil {
		f.Fatal(err)
	}
	for _, v := range set.Vectors {
		if v.Message == "" && v.Principal == "alice" && v.Namespace == "keyceremony" {
			add(v)
		}
	}
	return set
}

// FuzzParse: every error wraps ErrMalformed, and a signature that parses
// re-encodes (armour, blob) to one that parses to the same fields.
func FuzzParse(f *testing.F) {
	seedVectors(f, func(v vector) { f.Add([]byte(v.Signature)) })
	f.Add([]byte("-----BEGIN SSH SIGNATURE-----END SSH SIGNATURE-----"))
	f.Fuzz(func(t *testing.T, armored []byte) {
		s, err := sshsig.Parse(armored)
		if err != nil {
			if !errors.Is(err, sshsig.ErrMalformed) {
				t.Fatalf("error is not ErrMalformed: %v", err)
			}
			if !printableText(err.Error()) {
				t.Fatalf("error is not printable text: %q", err)
			}
			return
		}
		again, err := sshsig.Parse([]byte(armour(wire{1, string(s.PublicKey.Marshal()), s.Namespace, "", s.HashAlg, string(ssh.Marshal(s.Sig))}.blob())))
		if err != nil {
			t.Fatalf("re-encoded signature does not parse: %v", err)
		}
		if !bytes.Equal(again.PublicKey.Marshal(), s.PublicKey.Marshal()) || again.Namespace != s.Namespace ||
			again.HashAlg != s.HashAlg || !bytes.Equal(ssh.Marshal(again.Sig), ssh.Marshal(s.Sig)) {
			t.Fatal("round trip changed the signature")
		}
	})
}

// FuzzParseAllowedSigners: lines are read one by one (a file's verdicts are
// those of its lines alone), every line is blank, parsed or skipped with a
// reason, and Allows answers for any principal.
func FuzzParseAllowedSigners(f *testing.F) {
	seedVectors(f, func(v vector) { f.Add([]byte(v.Allowed), v.Principal) })
	f.Fuzz(func(t *testing.T, data []byte, principal string) {
		as, skipped := sshsig.ParseAllowedSigners(data)
		lines := bytes.Split(data, []byte("\n"))
		if len(as)+len(skipped) > len(lines) {
			t.Fatalf("%d signers and %d skipped from %d lines", len(as), len(skipped), len(lines))
		}
		for _, l := range skipped {
			if l.Reason == "" || !printableText(l.Reason) {
				t.Fatalf("line %d skipped with reason %q", l.Line, l.Reason)
			}
		}
		for _, s := range as {
			one, sk := sshsig.ParseAllowedSigners(lines[s.Line-1])
			if len(one) != 1 || len(sk) != 0 || one[0].Principals != s.Principals || !bytes.Equal(one[0].Key.Marshal(), s.Key.Marshal()) {
				t.Fatalf("line %d alone parses differently", s.Line)
			}
			as.Allows(principal, s.Key, "keyceremony")
		}
	})
}

// FuzzOpenSSH is the differential test as a fuzzer: mutate the signature
// file and the allowed-signers file of the recorded vectors, and require
// the verdict ssh-keygen -Y verify gives (skipped without ssh-keygen).
// The deliberately stricter cases of the README are allowed.
func FuzzOpenSSH(f *testing.F) {
	set := seedVectors(f, func(v vector) { f.Add([]byte(v.Signature), []byte(v.Allowed)) })
	_, lookErr := exec.LookPath("ssh-keygen")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, sig, allowed []byte) {
		if lookErr != nil {
			t.Skip("ssh-keygen not installed")
		}
		v := vector{Principal: "alice", Namespace: "keyceremony", Signature: string(sig), Allowed: string(allowed)}
		err := keyceremony(v, []byte(set.Message))
		theirs, out := openssh(t, dir, v, []byte(set.Message))
		if ours := err == nil; ours == theirs || theirs && stricter(err, allowed) {
			return
		}
		t.Fatalf("keyceremony: %v; ssh-keygen -Y verify accepts=%v (%s)\nsignature %q\nallowed signers %q", err, theirs, out, sig, allowed)
	})
}

var timeWithSpace = regexp.MustCompile(`(?i)valid-(after|before)="[^"]*[^0-9zutc"][^"]*"`)

// stricter reports whether keyceremony refused for one of the reasons the
// README lists.
func stricter(err error, allowed []byte) bool {
	s := err.Error()
	return strings.Contains(s, "unsupported version 0") || strings.Contains(s, "DSA") || strings.Contains(s, "user presence") || timeWithSpace.Match(allowed)
}

// printableText reports whether s shows on a terminal as the text it is.
func printableText(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsGraphic(r) {
			return false
		}
	}
	return true
}
