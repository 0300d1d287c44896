package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
