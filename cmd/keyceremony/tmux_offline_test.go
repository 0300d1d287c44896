package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// TestTUIOfflineSummary120x40 runs an offline ceremony in the real binary's
// TUI in a 120x40 terminal: params fetched online, then the plan, the PIN,
// the custodian, and the summary, whose every line fits; after exit the
// printed upload commands are typed into the shell exactly as printed, and
// each imports its bundle: the key is Enabled with the material the
// ceremony recorded (status exit 0, record match).
func TestTUIOfflineSummary120x40(t *testing.T) {
	e := newE2E(t)
	kc, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var keys strings.Builder
	for _, label := range []string{"pay", "arc"} {
		arn, err := kc.CreateKey(context.Background(), "offline tui", false)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(e.dir, "params-"+label+".json")
		out, errOut, code := e.run(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", p)
		_, after, ok := strings.Cut(out, "wrapping public key sha256 ")
		if code != 0 || !ok {
			t.Fatalf("params fetch: %s%s", out, errOut)
		}
		pin := strings.TrimSuffix(strings.Fields(after)[0], ":")
		fmt.Fprintf(&keys, "  - {label: off-%s, params_file: params-%s.json, wrapping_key_sha256: %s, valid_for: 60d}\n", label, label, pin)
	}
	e.config("offline.yaml", `
ceremony: {id: offline-tui, operator: tester, out_dir: out}
token: {label: ceremony}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
keys:
`+keys.String())
	tmux, waitFor, typeLine := tmuxShell(t, e, 120, 40)
	send := func(k ...string) { tmux(append([]string{"send-keys", "-t", "c"}, k...)...) }
	typeLine("keyceremony tui --config offline.yaml; echo FIRST=$?")
	plan := waitFor("Review the plan")
	for _, want := range []string{" KMS          offline (air gap): params files in, bundle files out", " Key off-pay  AES-256 → key of params-pay.json, expires in 60d"} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan lacks %q:\n%s", want, plan)
		}
	}
	send("Enter")
	waitFor("User PIN")
	send("-l", hsmtest.PIN)
	send("Enter")
	waitFor("Hand the keyboard to alice.")
	send("Enter")
	waitFor(`Type "alice" to confirm`)
	send("-l", "alice")
	send("Enter")
	done := waitFor("complete: the transcript is sealed")
	out := filepath.Join(e.dir, "out")
	for _, want := range []string{" ✓ All 10 steps done.", "     bundle           " + filepath.Join(out, "bundle-off-pay.json"), "     expiry           not imported yet: to be valid for 60d from the upload"} {
		if !strings.Contains(done, want) {
			t.Errorf("the summary lacks %q:\n%s", want, done)
		}
	}
	// Scrolled to its end, the summary shows the upload commands.
	send("End")
	end := waitFor("keyceremony upload --bundle")
	if !strings.Contains(strings.Join(strings.Fields(end), " "), "keyceremony upload --bundle "+filepath.Join(out, "bundle-off-arc.json")) {
		t.Errorf("the end of the summary lacks the upload command:\n%s", end)
	}
	send("Enter")
	after := waitFor("FIRST=0")
	var uploads []string
	for _, l := range strings.Split(after, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "keyceremony upload ") {
			uploads = append(uploads, l)
		}
	}
	if len(uploads) != 2 {
		t.Fatalf("%d upload commands printed, want 2:\n%s", len(uploads), after)
	}
	tmux("send-keys", "-t", "c", "clear", "Enter")
	for i, u := range uploads {
		// The marker is not in the typed line: the screen shows it only
		// when the command has ended.
		typeLine(u + fmt.Sprintf(`; echo "UP""LOAD%d=$?"`, i))
		if sc := waitFor(fmt.Sprintf("UPLOAD%d=", i)); !strings.Contains(sc, fmt.Sprintf("UPLOAD%d=0", i)) || !strings.Contains(sc, "encrypt then decrypt through KMS: ok") {
			t.Fatalf("%s, typed as printed, failed:\n%s", u, sc)
		}
	}
	tr := filepath.Join(out, "transcript.jsonl")
	if stdout, stderr, code := e.run(nil, "status", "--transcript", tr, "--pubkey", filepath.Join(out, "signing-key.pem"), "--warn", "7d"); code != 0 || strings.Count(stdout, " match\n") != 2 {
		t.Fatalf("status after the uploads exited %d:\n%s%s", code, stdout, stderr)
	}
}

// TestTUIPlanPrintsNoEscapes opens the real binary's TUI on an out_dir whose
// transcript (the signer's to write) holds a label, a step title and an
// error with terminal escapes and a carriage return: the resume plan shows
// them escaped, and nothing on the screen is hidden or overwritten.
func TestTUIPlanPrintsNoEscapes(t *testing.T) {
	e := newE2E(t)
	e.config("ceremony.yaml", fmt.Sprintf(ceremonyYAML, "esc"))
	if err := os.Mkdir(filepath.Join(e.dir, "esc"), 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := transcripts.Create(filepath.Join(e.dir, "esc", "transcript.jsonl"), transcripts.Header{CeremonyID: "e2e-esc"})
	if err != nil {
		t.Fatal(err)
	}
	began := true
	for _, ev := range []struct {
		no int
		d  events.Data
	}{
		{3, &events.KMSKey{Label: "pay\x1b[8m", KMSKeyARN: "arn:aws:kms:eu-west-1:111122223333:key/x\rOK", Created: true}},
		{4, &events.Interrupted{StoppedStep: "fetch-params", Title: "Fetch\x1b[2J\x1b[H", Began: &began}},
	} {
		if err := w.AppendStep(ev.no, "eve", ev.d); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	tmux, waitFor, typeLine := tmuxShell(t, e, 120, 40)
	typeLine("keyceremony tui --config ceremony.yaml; echo FIRST=$?")
	plan := waitFor("enter: resume")
	// Each line whole, read without the spaces a pane may keep after a
	// line a later frame shortened; the screen may still be drawing.
	for _, want := range []string{
		` Last run: stopped by the operator during step 4 (Fetch\u001b[2J\u001b[H).`,
		`   - KMS key of pay\u001b[8m (created): arn:aws:kms:eu-west-1:111122223333:key/x\u000dOK: recorded after the last signed`,
	} {
		for deadline := time.Now().Add(30 * time.Second); !slices.ContainsFunc(strings.Split(plan, "\n"), func(l string) bool {
			return strings.HasSuffix(strings.TrimRight(l, " "), want)
		}); plan = tmux("capture-pane", "-p", "-J", "-t", "c") {
			if time.Now().After(deadline) {
				t.Fatalf("the resume plan lacks the line %q:\n%s", want, plan)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	tmux("send-keys", "-t", "c", "q")
	waitFor("FIRST=0")
}

// TestTUITranscriptPipe opens the real binary's TUI on an out_dir whose
// transcript.jsonl is a named pipe: the plan, which reads the transcript
// to say what is done, says at once that it cannot start and why (a plain
// read waited on the pipe forever, with a blank screen).
func TestTUITranscriptPipe(t *testing.T) {
	e := newE2E(t)
	e.config("ceremony.yaml", fmt.Sprintf(ceremonyYAML, "pipe"))
	tr := filepath.Join(e.dir, "pipe", "transcript.jsonl")
	if err := os.Mkdir(filepath.Dir(tr), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(tr, 0o600); err != nil {
		t.Fatal(err)
	}
	tmux, waitFor, typeLine := tmuxShell(t, e, 120, 40)
	typeLine("keyceremony tui --config ceremony.yaml; echo FIRST=$?")
	plan := waitFor("Cannot start")
	want := "Cannot start: cannot resume: failed to read transcript: " + tr + " is a named pipe, not a regular file: put back the transcript keyceremony wrote, from a copy"
	if !strings.Contains(strings.Join(strings.Fields(plan), " "), want) {
		t.Errorf("the plan lacks %q:\n%s", want, plan)
	}
	tmux("send-keys", "-t", "c", "q")
	waitFor("FIRST=")
}
