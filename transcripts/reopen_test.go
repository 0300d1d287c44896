package transcripts

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReopenRefusesWhatVerifyRefuses reopens each frozen vector of
// testdata/strict and the frozen resumed and RSA-sealed transcripts with their seal cut
// off, as an interrupted ceremony would have left them: Reopen accepts
// exactly those verify accepts, and refuses the others with verify's own
// error, since both read through readLines.
func TestReopenRefusesWhatVerifyRefuses(t *testing.T) {
	dir := filepath.Join("testdata", "strict")
	f, err := os.Open(filepath.Join(dir, "expect.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := []string{filepath.Join("testdata", "v1-5aa1006-resumed", "evidence", "transcript.jsonl"),
		filepath.Join("testdata", "v1-rsa-seal", "evidence", "transcript.jsonl")}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if file, _, ok := strings.Cut(sc.Text(), ": "); ok && !strings.HasPrefix(sc.Text(), "#") {
			files = append(files, filepath.Join(dir, file))
		}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, verr := VerifyBytes(data, Options{})
			unsealed := data[:bytes.LastIndexByte(data[:len(data)-1], '\n')+1]
			p := filepath.Join(t.TempDir(), "transcript.jsonl")
			if err := os.WriteFile(p, unsealed, 0o600); err != nil {
				t.Fatal(err)
			}
			r, rerr := Reopen(p)
			if rerr == nil {
				r.Writer.Close()
			}
			var ve *VerifyError
			switch {
			case verr == nil && rerr != nil:
				t.Fatalf("verify accepts it, Reopen refuses it: %v", rerr)
			case verr == nil:
				return
			case !errors.As(verr, &ve) || ve.Class != ClassChain:
				t.Fatalf("verify: %v, want a chain failure", verr)
			case rerr == nil || rerr.Error() != verr.Error():
				t.Fatalf("Reopen: %v\nverify: %v", rerr, verr)
			}
			after, _ := os.ReadFile(p)
			if !bytes.Equal(after, unsealed) {
				t.Fatal("a refused Reopen changed the transcript")
			}
		})
	}
	// A sealed transcript is refused as such.
	p := filepath.Join(t.TempDir(), "transcript.jsonl")
	good, _ := os.ReadFile(filepath.Join(dir, "good.jsonl"))
	if err := os.WriteFile(p, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Reopen(p); !errors.Is(err, ErrSealed) {
		t.Fatalf("Reopen of a sealed transcript: %v, want ErrSealed", err)
	}
}
