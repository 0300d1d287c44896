package main_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestVerifyStrictVectors runs keyceremony verify on each transcript of
// transcripts/testdata/strict: lines that chain and a seal that verifies,
// but one line that is not as keyceremony writes it (a duplicate name in
// the header, invalid UTF-8, trailing data, an unknown field or event).
// Each is refused with exit 3 and a one-line error naming the line and the
// problem.
func TestVerifyStrictVectors(t *testing.T) {
	dir, _ := filepath.Abs(filepath.Join("..", "..", "transcripts", "testdata", "strict"))
	e := &e2e{t: t, dir: t.TempDir()}
	f, err := os.Open(filepath.Join(dir, "expect.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() == "" || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		file, want, _ := strings.Cut(sc.Text(), ": ")
		t.Run(file, func(t *testing.T) {
			p := filepath.Join(dir, file)
			stdout, stderr, code := e.run(nil, "verify", "--pubkey", filepath.Join(dir, "signing-key.pem"), p)
			if want == "ok" {
				if code != 0 || !strings.HasPrefix(stdout, "OK: transcript of ceremony c1") {
					t.Fatalf("exit %d: %s%s", code, stdout, stderr)
				}
				return
			}
			// CLASS LINE REASON
			f := strings.SplitN(want, " ", 3)
			wantErr := "keyceremony: error: " + p + ": transcript line " + f[1] + ": " + f[2]
			if code != 3 || !strings.HasPrefix(stderr, wantErr) || strings.Count(stderr, "\n") != 1 || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 3 and %q", code, stdout, stderr, wantErr)
			}
		})
	}
}

// TestVerifyFrozen verifies, with the real binary, the transcript a
// ceremony resumed after a failure left at main 5aa1006 (see
// transcripts/testdata/v1-5aa1006-resumed/make.sh): that version's own
// verify rejected it with --files (exit 6, a void event's file), this one
// accepts it, as the resume did.
func TestVerifyFrozen(t *testing.T) {
	dir, _ := filepath.Abs(filepath.Join("..", "..", "transcripts", "testdata", "v1-5aa1006-resumed", "evidence"))
	e := &e2e{t: t, dir: t.TempDir()}
	stdout, stderr, code := e.run(nil, "verify", "--pubkey", filepath.Join(dir, "signing-key.pem"), "--files", dir, filepath.Join(dir, "transcript.jsonl"))
	if code != 0 || !strings.Contains(stdout, "33 events") || !strings.Contains(stdout, "cleanup inferno glucose alkali") {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
}

// TestVerifyFrozenRSA verifies, with the real binary and openssl, the
// frozen RSA-sealed transcript (transcripts/testdata/v1-rsa-seal/make.sh),
// and drills its escrow with the custodians' frozen keys: files written
// with an RSA seal today must open in ten years.
func TestVerifyFrozenRSA(t *testing.T) {
	hsmtest.Require(t)
	base, _ := filepath.Abs(filepath.Join("..", "..", "transcripts", "testdata", "v1-rsa-seal"))
	dir := filepath.Join(base, "evidence")
	const fp = "9c83621aff9121cb566ecd14f0644c50f140cd6ae3335c8174b803c11208729b"
	e := &e2e{t: t, dir: t.TempDir()}
	tr := filepath.Join(dir, "transcript.jsonl")
	stdout, stderr, code := e.run(nil, "verify", "--pubkey", filepath.Join(dir, "signing-key.pem"), "--files", dir, tr)
	if code != 0 || !strings.Contains(stdout, "27 events") || !strings.Contains(stdout, "seal algorithm: RSA-3072-PKCS1v15-SHA256\n") || !strings.Contains(stdout, "eyeglass congregate goldfish butterfat") {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	if o, err := exec.Command("openssl", "dgst", "-sha256", "-verify", filepath.Join(dir, "signing-key.pem"), "-signature", filepath.Join(dir, "seal.sig"), filepath.Join(dir, "seal.payload")).CombinedOutput(); err != nil || string(o) != "Verified OK\n" {
		t.Fatalf("openssl: %v: %s", err, o)
	}
	var ids []string
	for _, c := range []string{"alice", "bob"} {
		key := filepath.Join(e.dir, c)
		b, err := os.ReadFile(filepath.Join(base, "custodians", c))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(key, b, 0o600) // ssh keys must not be readable by others
		ids = append(ids, "--share", filepath.Join(dir, fmt.Sprintf("share-%d-%s.age", len(ids)/4+1, c)), "--identity", key)
	}
	stdout, stderr, code = e.run(nil, append([]string{"recover", "--drill", "--transcript", tr, "--fingerprint", fp, "--out", filepath.Join(e.dir, "drill")}, ids...)...)
	if code != 0 || !strings.Contains(stdout, "drill PASSED") {
		t.Fatalf("drill: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
