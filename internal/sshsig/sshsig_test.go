package sshsig_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keyceremony/keyceremony/internal/sshsig"
	"golang.org/x/crypto/ssh"
)

// keygen makes a key pair with ssh-keygen and returns its path and signer.
func keygen(t *testing.T, dir, typ string) (string, ssh.Signer) {
	t.Helper()
	p := filepath.Join(dir, "id_"+typ)
	args := []string{"-q", "-t", typ, "-N", "", "-C", typ + "@test", "-f", p}
	if typ == "rsa" {
		args = append(args, "-b", "2048")
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return p, s
}

func TestAgainstSSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed: apt-get install openssh-client")
	}
	msg := []byte("keyceremony/transcript/v1 seal\nlines: 3\n")
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			keyPath, signer := keygen(t, dir, typ)
			msgPath := filepath.Join(dir, "payload")
			if err := os.WriteFile(msgPath, msg, 0o644); err != nil {
				t.Fatal(err)
			}
			allowed := filepath.Join(dir, "allowed_signers")
			line := "alice@example.org namespaces=\"keyceremony\" " + string(ssh.MarshalAuthorizedKey(signer.PublicKey()))
			if err := os.WriteFile(allowed, []byte("# witnesses\n"+line), 0o644); err != nil {
				t.Fatal(err)
			}
			as, skipped := sshsig.ParseAllowedSigners([]byte(line))
			if len(as) != 1 || len(skipped) != 0 {
				t.Fatalf("allowed signers: %v, skipped %v", as, skipped)
			}

			// Ours, checked by ssh-keygen.
			sig, err := sshsig.Sign(signer, "keyceremony", msg)
			if err != nil {
				t.Fatal(err)
			}
			ours := filepath.Join(dir, "ours.sig")
			if err := os.WriteFile(ours, sig, 0o644); err != nil {
				t.Fatal(err)
			}
			verify := exec.Command("ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "alice@example.org", "-n", "keyceremony", "-s", ours)
			verify.Stdin = bytes.NewReader(msg)
			if out, err := verify.CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen -Y verify refused our signature: %v\n%s", err, out)
			}
			check := exec.Command("ssh-keygen", "-Y", "check-novalidate", "-n", "keyceremony", "-s", ours)
			check.Stdin = bytes.NewReader(msg)
			if out, err := check.CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen -Y check-novalidate refused our signature: %v\n%s", err, out)
			}
			bad := exec.Command("ssh-keygen", "-Y", "check-novalidate", "-n", "keyceremony", "-s", ours)
			bad.Stdin = bytes.NewReader(append([]byte("x"), msg...))
			if err := bad.Run(); err == nil {
				t.Fatal("ssh-keygen accepted our signature over another message: the test cannot tell")
			}

			// ssh-keygen's, checked by us.
			sign := exec.Command("ssh-keygen", "-Y", "sign", "-f", keyPath, "-n", "keyceremony", msgPath)
			if out, err := sign.CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen -Y sign: %v\n%s", err, out)
			}
			theirs, err := os.ReadFile(msgPath + ".sig")
			if err != nil {
				t.Fatal(err)
			}
			for name, armored := range map[string][]byte{"ours": sig, "ssh-keygen": theirs} {
				s, err := sshsig.Parse(armored)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if err := s.Verify("keyceremony", msg); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !as.Allows("alice@example.org", s.PublicKey, "keyceremony") {
					t.Fatalf("%s: allowed signers refuse alice", name)
				}
				if as.Allows("mallory@example.org", s.PublicKey, "keyceremony") || as.Allows("alice@example.org", s.PublicKey, "git") {
					t.Fatalf("%s: allowed signers accept another principal or namespace", name)
				}
				if err := s.Verify("git", msg); !errors.Is(err, sshsig.ErrVerify) {
					t.Fatalf("%s: wrong namespace: got %v", name, err)
				}
				if err := s.Verify("keyceremony", append(msg, 'x')); !errors.Is(err, sshsig.ErrVerify) {
					t.Fatalf("%s: changed message: got %v", name, err)
				}
			}
		})
	}
}

func TestParseAllowedSignersSkips(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEN5vBlC8Sd+6bm1H2mOb1TzCSXbN7Ssw5q0H4jtu3Kq"
	for _, tc := range []struct{ in, skip string }{
		{"alice " + key, ""},
		{"alice,bob@* " + key + " comment", ""},
		{"alice cert-authority " + key, ""},
		{"alice valid-after=\"20240101\" " + key, ""},
		{"  # comment", ""},
		{"alice", "invalid line"},
		{"alice ssh-ed25519 AAAA", "invalid key: no key"},
		{"alice namespaces=keyceremony " + key, "bad options: missing start quote"},
		{"alice namespaces=\"a\",namespaces=\"b\" " + key, `bad options: multiple "namespaces" clauses`},
		{"alice valid-after=\"2024-01-01\" " + key, `bad options: invalid "valid-after" time`},
		{"alice foo " + key, "bad options: unknown key option"},
		{"alice namespaces=\"a " + key, "invalid options: unterminated quote"},
	} {
		as, skipped := sshsig.ParseAllowedSigners([]byte(tc.in))
		switch {
		case tc.skip == "" && len(skipped) != 0:
			t.Errorf("%q: skipped %v", tc.in, skipped)
		case tc.skip != "" && (len(skipped) != 1 || skipped[0].Reason != tc.skip || skipped[0].Line != 1 || len(as) != 0):
			t.Errorf("%q: skipped %v, want one line skipped for %q", tc.in, skipped, tc.skip)
		}
	}
	if _, err := sshsig.Parse([]byte("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n")); err == nil {
		t.Error("Parse accepted a blob without preamble")
	}
}
