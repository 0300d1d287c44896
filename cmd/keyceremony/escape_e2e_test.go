package main_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// evilLabel is a label a transcript's signer chose: an escape that
// conceals what follows, a carriage return that overwrites the line, and
// what the Prometheus text format escapes (double quote, backslash,
// newline).
const evilLabel = "pay\x1b[8m\rOK \"x\\y\nz"

// sealedWith writes a transcript sealed by a fresh key whose events are
// evs, and returns its path.
func sealedWith(t *testing.T, dir, id string, evs ...events.Data) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "transcript.jsonl")
	w, err := transcripts.Create(p, transcripts.Header{CeremonyID: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range evs {
		if err := w.Append("eve", d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Seal(key); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStatusPrintsNoEscapes runs status through the binary on a sealed
// transcript whose signer chose a label with an escape, a carriage return,
// a quote, a backslash and a newline: the table, the notes and the
// Prometheus file print it escaped, exactly.
func TestStatusPrintsNoEscapes(t *testing.T) {
	e := newE2E(t)
	kc, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	arn, err := kc.CreateKey(context.Background(), "status escapes", false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := "arn:aws:kms:eu-west-1:111122223333:key/\x1b]0;owned\x07"
	tr := sealedWith(t, dir, "c", &events.KMSKey{Label: evilLabel, KMSKeyARN: arn, Created: true, Region: "eu-west-1"},
		&events.KMSKey{Label: "other", KMSKeyARN: bad, Created: true, Region: "eu-west-1"})
	prom := filepath.Join(dir, "keys.prom")
	stdout, stderr, code := e.run(nil, "status", "--transcript", tr, "--warn", "0", "--prom", prom)
	pb, _ := os.ReadFile(prom)
	// The bad ARN makes KMS answer with an error that quotes it: exit 1.
	bad = `arn:aws:kms:eu-west-1:111122223333:key/\u001b]0;owned\u0007`
	want := strings.ReplaceAll(`KEY                                                                          LABEL                             STATE          ORIGIN    EXPIRES  DAYS  MATERIAL  ROTATIONS  RECORD
@GOOD  pay\u001b[8m\u000dOK "x\y\u000az  PendingImport  EXTERNAL  never    -     -         0          unknown
@BAD                  other                             error                                                        unknown
@GOOD: warning: key is PendingImport: its material expired or was deleted; import it again from the token or the escrow (keyceremony renew, keyceremony recover --reimport)
@BAD: error: failed to describe @BAD: InvalidArnException: @BAD is not a valid KMS key ARN
`, "@GOOD", arn)
	want = strings.ReplaceAll(want, "@BAD", bad)
	if code != 1 || stdout != want || stderr != "keyceremony: error: a key could not be read from KMS (see above)\n" {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1 and stdout:\n%s", code, stdout, stderr, want)
	}
	lbl := `label="pay\\u001b[8m\\u000dOK \"x\\y\\u000az"`
	for _, line := range []string{
		`keyceremony_kms_key_info{arn="` + arn + `",` + lbl + `,state="PendingImport",origin="EXTERNAL",key_material_id=""} 1`,
		`keyceremony_kms_key_up{arn="` + arn + `",` + lbl + `} 1`,
		`keyceremony_kms_key_up{arn="arn:aws:kms:eu-west-1:111122223333:key/\\u001b]0;owned\\u0007",label="other"} 0`,
	} {
		if !strings.Contains(string(pb), "\n"+line+"\n") {
			t.Errorf("the prom file lacks the line\n%s\n%s", line, pb)
		}
	}
	if i := strings.IndexFunc(strings.ReplaceAll(stdout+string(pb), "\n", ""), func(r rune) bool { return r < ' ' || r == 0x7f }); i >= 0 {
		t.Errorf("a control character was printed: %q", stdout+string(pb))
	}
}

// TestStatusTranscriptDevice: status (run unattended, from cron) refuses
// a transcript that is a device or a named pipe in one line, at once,
// instead of reading /dev/zero until memory runs out or waiting forever.
func TestStatusTranscriptDevice(t *testing.T) {
	e := newE2E(t)
	dir := t.TempDir()
	pipe := filepath.Join(dir, "transcript.jsonl")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	for p, kind := range map[string]string{"/dev/zero": "a device", pipe: "a named pipe"} {
		_, stderr, code := runWithin(e, 30*time.Second, nil, "keyceremony", "status", "--transcript", p)
		if want := "keyceremony: error: failed to read transcript: " + p + " is " + kind + ", not a regular file\n"; code != 1 || stderr != want {
			t.Errorf("status --transcript %s: exit %d\n%s\nwant exit 1 and\n%s", p, code, stderr, want)
		}
	}
}
