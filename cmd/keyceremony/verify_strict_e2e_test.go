package main_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
