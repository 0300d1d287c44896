package main_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// TestVerifyPrintsNoEscapes verifies, through the binary, a transcript
// whose signer chose its strings: a ceremony id with the terminal escape
// that conceals all text after it (which would hide the closing "signer
// was not pinned" warning), a tool with a newline and a fake OK line. The
// output holds no control character but the newlines ending its own lines,
// and the warning is there; a broken one is refused in one line, escaped
// alike.
func TestVerifyPrintsNoEscapes(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "transcript.jsonl")
	w, err := transcripts.Create(p, transcripts.Header{CeremonyID: "payments-2026\x1b[8m", Tool: "keyceremony\nOK: transcript pinned",
		Build: &transcripts.Build{BinarySHA256: strings.Repeat("ab", 32)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append("eve\x1b[2K", &events.StepDone{ID: "one"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Seal(key); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runBin(t, "verify", p)
	want := "OK: transcript of ceremony payments-2026\\u001b[8m, 1 events, sealed by key "
	if code != 0 || !strings.HasPrefix(stdout, want) || !strings.Contains(stdout, "(keyceremony\\u000aOK: transcript pinned)\n") ||
		!strings.HasSuffix(stdout, "warning: the signer was not pinned: pass --pubkey or --fingerprint with the ceremony's signing key to check who sealed it\n") {
		t.Fatalf("exit %d\nstdout:\n%q\nstderr:\n%s\nwant it to start %q, the tool escaped and end with the warning", code, stdout, stderr, want)
	}
	if i := strings.IndexFunc(strings.ReplaceAll(stdout, "\n", ""), func(r rune) bool { return r < ' ' || r == 0x7f }); i >= 0 {
		t.Errorf("verify printed a control character: %q", stdout)
	}

	// A header whose format is not v1, with an escape in it.
	bad := filepath.Join(dir, "bad.jsonl")
	w, err = transcripts.Create(bad, transcripts.Header{CeremonyID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	data := mustRead(t, bad)
	if err := os.WriteFile(bad, []byte(strings.Replace(string(data), `"format":"keyceremony/transcript/v1"`, `"format":"v9\u001b[2K"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runBin(t, "verify", bad)
	wantErr := "keyceremony: error: " + bad + `: transcript line 1: field "format": unsupported transcript format (expected keyceremony/transcript/v1, found v9\u001b[2K)` + "\n"
	if code != 3 || stderr != wantErr {
		t.Errorf("exit %d, stderr %q\nwant exit 3 and %q", code, stderr, wantErr)
	}
}

// TestVerifyCRLF: a transcript whose line endings were converted (git
// autocrlf, a Windows editor) is refused naming that, not a changed line.
func TestVerifyCRLF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "transcript.jsonl")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(mustRead(t, v2+"transcript.jsonl")), "\n", "\r\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runBin(t, "verify", "--fingerprint", v2Fp, p)
	want := "keyceremony: error: " + p + ": transcript line 1: line ends in CR LF: the file's line endings were converted (by git autocrlf, a Windows editor or a mail client); use the original file, whose lines end in LF alone\n"
	if code != 3 || stderr != want {
		t.Errorf("exit %d, stderr %q\nwant exit 3 and %q", code, stderr, want)
	}
}

// TestVerifyFilesDevice verifies the frozen v2 evidence with one share
// file replaced by a link to /dev/zero, as a hostile copy of the evidence
// could hold, then a witness signature that is such a link: refused as not
// plain files (before, verify read them forever).
func TestVerifyFilesDevice(t *testing.T) {
	dir := t.TempDir()
	entries, err := os.ReadDir(v2)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.WriteFile(filepath.Join(dir, e.Name()), mustRead(t, v2+e.Name()), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	share := filepath.Join(dir, "share-1-alice.age")
	if err := os.Remove(share); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", share); err != nil {
		t.Fatal(err)
	}
	cmd := binary(t, "keyceremony", "verify", "--files", dir, "--fingerprint", v2Fp, filepath.Join(dir, "transcript.jsonl"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	_ = cmd.Wait()
	if !stop.Stop() {
		t.Fatal("verify --files read /dev/zero for a minute")
	}
	code := cmd.ProcessState.ExitCode()
	defer func() {
		// A witness signature beside the transcript that is a device.
		if err := os.Remove(share); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/dev/zero", filepath.Join(dir, "witness-mallory.sig")); err != nil {
			t.Fatal(err)
		}
		allowed := filepath.Join(dir, "allowed_signers")
		if err := os.WriteFile(allowed, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := runBin(t, "verify", "--fingerprint", v2Fp, "--allowed-signers", allowed, filepath.Join(dir, "transcript.jsonl"))
		if want := "keyceremony: error: witness signature " + filepath.Join(dir, "witness-mallory.sig") + " is not a plain file\n"; code != 1 || stderr != want {
			t.Errorf("witness signature /dev/zero: exit %d, stderr %q, want 1 and %q", code, stderr, want)
		}
	}()
	if code != 6 || !strings.HasSuffix(stderr.String(), ": field \"file\": file share-1-alice.age named by the transcript cannot be read: it is not a regular file: evidence files are plain files (expected "+mustShareHash(t, v2+"share-1-alice.age")+"…, found no file)\n") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// mustShareHash is the first 16 hex digits of the SHA-256 of file p.
func mustShareHash(t *testing.T, p string) string {
	sum := sha256.Sum256(mustRead(t, p))
	return hex.EncodeToString(sum[:])[:16]
}
