package ceremony

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// statusConfig returns a one-key config whose out_dir exists, empty, and
// that out_dir.
func statusConfig(t *testing.T) (*Config, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`
ceremony: {id: status-test, operator: test, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
  - {label: one, create: true, valid_for: 30d}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
`, out)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, out
}

// TestReadStatusVoid: the plan counts only what a resume counts. A key
// generated after the last signed checkpoint (the process died before
// signing it) is void: the plan must not show it done, nor skip its step,
// but say it counts for nothing. A map reader of every event would have
// shown it done, with its key check value, and resumed at step 5.
func TestReadStatusVoid(t *testing.T) {
	cfg, out := statusConfig(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := transcripts.NewSigningKey("test", &key.PublicKey)
	path := filepath.Join(out, "transcript.jsonl")
	w, err := transcripts.Create(path, transcripts.Header{CeremonyID: "status-test", Tool: "test", SigningKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	const arn = "arn:aws:kms:eu-west-1:111122223333:key/0d803dbf-dbab-4b23-b609-000000000001"
	step := func(no int, d events.Data) {
		t.Helper()
		if err := w.AppendStep(no, "test", d); err != nil {
			t.Fatal(err)
		}
	}
	step(3, &events.KMSKey{Label: "one", KMSKeyARN: arn, Created: true})
	if err := w.Checkpoint(3, "test", key); err != nil {
		t.Fatal(err)
	}
	step(5, &events.GenerateKey{Label: "one", KeyCheckValue: "aabbcc"})
	w.Close()

	st, err := ReadStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Done) != 1 || !strings.Contains(st.Done[0], arn) {
		t.Errorf("done: %q, want the KMS key only", st.Done)
	}
	if len(st.Voided) != 1 || !strings.HasPrefix(st.Voided[0], "key one generated on the token, key check value aabbcc: recorded after the last signed checkpoint, so it counts for nothing") {
		t.Errorf("voided: %q", st.Voided)
	}
	if st.Next != 3 || !st.Begun || st.Sealed {
		t.Errorf("next step %d (begun %v, sealed %v), want 3", st.Next, st.Begun, st.Sealed)
	}

	// A resume voided it for good (its event says so); the key generated
	// again after it counts, with its new check value.
	r, err := transcripts.Reopen(path)
	if err != nil {
		t.Fatal(err)
	}
	w = r.Writer
	step(0, r.Resume(nil))
	step(5, &events.GenerateKey{Label: "one", KeyCheckValue: "ddeeff"})
	if err := w.Checkpoint(5, "test", key); err != nil {
		t.Fatal(err)
	}
	step(6, &events.Failed{StepID: "escrow", Error: "the token was removed"})
	w.Close()
	st, err = ReadStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st.Done, "\n"); strings.Contains(got, "aabbcc") || !strings.Contains(got, "key check value ddeeff") {
		t.Errorf("done after the resume: %q", st.Done)
	}
	if len(st.Voided) != 1 || !strings.Contains(st.Voided[0], "aabbcc") {
		t.Errorf("voided after the resume: %q", st.Voided)
	}
	if st.Stopped != "step 6 failed: the token was removed" || st.Next != 5 {
		t.Errorf("stopped %q, next %d", st.Stopped, st.Next)
	}

	// A changed line: the plan cannot start, as the resume would refuse.
	data, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(data), "ddeeff", "ddeef0", 1)), 0o600)
	if _, err := ReadStatus(cfg); err == nil || !strings.Contains(err.Error(), "cannot be resumed") {
		t.Errorf("changed transcript: %v", err)
	}
}

// TestEvidenceFiles: the summary lists the directory's files, not its lock.
func TestEvidenceFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".keyceremony.lock", "transcript.jsonl", "escrow.json"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	if got := strings.Join(evidenceFiles(dir), " "); got != "escrow.json transcript.jsonl" {
		t.Errorf("evidence files: %s", got)
	}
}

// TestReadStatusStopWhere: the plan says where the operator stopped as the
// stop event records it, before step 4 began or during it, and a stop
// event written before that was recorded (no "began") is not read as
// either. Each label and title is the signer's, printed escaped.
func TestReadStatusStopWhere(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		began *bool
		want  string
	}{
		{nil, `stopped by the operator at step 4 (Fetch\u001b[8m), before it began or during it (this transcript does not record which)`},
		{&yes, `stopped by the operator during step 4 (Fetch\u001b[8m)`},
		{&no, `stopped by the operator before step 4 (Fetch\u001b[8m) began`},
	} {
		cfg, out := statusConfig(t)
		w, err := transcripts.Create(filepath.Join(out, "transcript.jsonl"), transcripts.Header{CeremonyID: "status-test", Tool: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AppendStep(3, "test", &events.KMSKey{Label: "one\x1b[2K\r", KMSKeyARN: "arn:x", Created: true}); err != nil {
			t.Fatal(err)
		}
		if err := w.AppendStep(4, "test", &events.Interrupted{StoppedStep: "fetch-params", Title: "Fetch\x1b[8m", Began: c.began}); err != nil {
			t.Fatal(err)
		}
		w.Close()
		st, err := ReadStatus(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if st.Stopped != c.want || st.Next != 1 {
			t.Errorf("began %v: stopped %q, next %d; want %q, next 1 (nothing is signed)", c.began, st.Stopped, st.Next, c.want)
		}
		if want := `KMS key of one\u001b[2K\u000d (created): arn:x: recorded after the last signed checkpoint`; len(st.Voided) != 1 || !strings.HasPrefix(st.Voided[0], want) {
			t.Errorf("voided %q, want it to begin %q", st.Voided, want)
		}
	}
}
