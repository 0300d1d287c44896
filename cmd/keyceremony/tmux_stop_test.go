package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// tmuxShell starts an interactive shell in tmux (w×h) whose environment
// reaches the test's token and KMS, with the real binary on its PATH and no
// PIN: commands are typed into it as an operator types them, so that a
// command the binary prints can be run exactly as printed.
func tmuxShell(t *testing.T, e *e2e, w, h int) (tmux func(args ...string) string, waitFor func(string) string, typeLine func(string)) {
	t.Helper()
	shell := fmt.Sprintf("cd %s && env -i PATH=%s:%s HOME=%s TERM=xterm-256color NO_COLOR=1 HISTFILE=/dev/null PS1='$ ' %s bash --norc --noprofile -i",
		e.dir, binDir, os.Getenv("PATH"), e.dir, strings.Join(e.env, " "))
	tmux, waitFor = startTmuxSized(t, w, h, shell)
	waitFor("$ ")
	typeLine = func(s string) {
		tmux("send-keys", "-t", "c", "-l", s)
		tmux("send-keys", "-t", "c", "Enter")
	}
	return tmux, waitFor, typeLine
}

// TestTUIStopDuringKMSCall presses ctrl+c while a KMS call is in flight
// (kmslocal answers every request after 2 s) and confirms: the screen says
// it waits for the running call; the call finishes (the first KMS key,
// being created, exists and is recorded) and the second key is never
// created; the stop is recorded and signed; the screen and the terminal
// after exit say exactly what was changed and the command that resumes.
// That command, typed as printed, resumes the ceremony to its seal, and the
// result verifies with --files.
func TestTUIStopDuringKMSCall(t *testing.T) {
	e := newE2EWith(t, "--latency", "2s")
	// One key at a time (kms.parallel: 1): the stop comes between the
	// first key's CreateKey and the second's.
	e.config("ceremony.yaml", "ceremony:\n  id: e2e-slow\n  operator: tester\n  out_dir: slow\ntoken:\n  label: ceremony\n"+
		"kms:\n  wrapping_algorithm: RSAES_OAEP_SHA_1\n  wrapping_key_spec: RSA_2048\n  parallel: 1\nkeys:\n"+
		"  - label: first-slow\n    create: true\n    valid_for: 30d\n  - label: second-slow\n    create: true\n    valid_for: 30d\n"+
		"escrow:\n  threshold: 1\n  allow_single_custodian: true\n  custodians:\n    - name: alice\n      recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n")
	tmux, waitFor, typeLine := tmuxShell(t, e, 80, 24)
	keys := func(k ...string) { tmux(append([]string{"send-keys", "-t", "c"}, k...)...) }
	typeLine("keyceremony tui --config ceremony.yaml; echo FIRST=$?")
	waitFor("Review the plan")
	keys("Enter")
	waitFor("User PIN")
	keys("-l", hsmtest.PIN)
	keys("Enter")
	// Step 3 begins with the first CreateKey, which takes 2 s to answer.
	waitFor("step 3/10")
	keys("C-c")
	waitFor("Stop the ceremony?")
	keys("y")
	waitFor("Stopping: waiting for the PKCS#11 and KMS calls already running to finish")
	screen := waitFor("To go on:")
	out := filepath.Join(e.dir, "slow")
	flat := strings.Join(strings.Fields(screen), " ")
	for _, want := range []string{
		"Stopped at step 3 (Create or check the KMS keys), as you asked; the calls already running finished first.",
		"The stop is recorded in " + filepath.Join(out, "transcript.jsonl") + ".",
		"Changed so far, as the transcript records: - KMS key of first-slow (created): arn:aws:kms:eu-west-1:",
		"To go on: keyceremony tui --config ceremony.yaml (it resumes where it stopped; what is done is not done again).",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the stop screen lacks %q:\n%s", want, screen)
		}
	}
	if strings.Contains(screen, "second-slow (created)") {
		t.Errorf("the stop screen says the second key was created:\n%s", screen)
	}

	// The call in flight finished and is recorded; nothing after it ran.
	data, err := os.ReadFile(filepath.Join(out, "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := transcripts.ReadState(data)
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, ev := range st.Counted {
		if k, ok := ev.Data.(*events.KMSKey); ok {
			made = append(made, k.Label)
		}
	}
	last := st.Counted[len(st.Counted)-2:]
	stop, ok := last[0].Data.(*events.Interrupted)
	if len(made) != 1 || made[0] != "first-slow" || !ok || stop.StoppedStep != "kms-keys" || last[1].Step != "checkpoint" || len(st.Void) != 0 {
		t.Fatalf("transcript: KMS keys %v, last events %v %v, %d void", made, last[0].Step, last[1].Step, len(st.Void))
	}
	if n := kmsKeyCount(t); n != 1 {
		t.Fatalf("KMS holds %d keys after the stop, want the 1 whose creation was running", n)
	}

	// The report stays in the terminal, and its command works as printed.
	keys("Enter")
	after := waitFor("FIRST=1")
	m := regexp.MustCompile(`To go on: (.+?) \(it resumes`).FindStringSubmatch(after)
	if m == nil {
		t.Fatalf("no resume command in the terminal after exit:\n%s", after)
	}
	tmux("send-keys", "-t", "c", "clear", "Enter")
	typeLine(m[1] + "; echo SECOND=$?")
	plan := waitFor("enter: resume")
	for _, want := range []string{"Last run: stopped by the operator during step 3 (Create or check the KMS keys).", "KMS key of first-slow (created)", " 3 Create or check the KMS keys"} {
		if !strings.Contains(strings.Join(strings.Fields(plan), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("the resume plan lacks %q:\n%s", want, plan)
		}
	}
	keys("Enter")
	waitFor("User PIN")
	keys("-l", hsmtest.PIN)
	keys("Enter")
	waitFor("Hand the keyboard to alice.")
	keys("Enter")
	waitFor(`Type "alice" to confirm`)
	keys("-l", "alice")
	keys("Enter")
	for _, l := range []string{"first-slow", "second-slow"} {
		waitFor(fmt.Sprintf("Type %q to confirm", l))
		keys("-l", l)
		keys("Enter")
	}
	waitFor("complete: the transcript is sealed")
	keys("Enter")
	waitFor("SECOND=0")
	if n := kmsKeyCount(t); n != 2 {
		t.Errorf("KMS holds %d keys, want 2: one per key, none orphaned", n)
	}
	if stdout, stderr, code := e.run(nil, "verify", "--files", out, "--pubkey", filepath.Join(out, "signing-key.pem"), filepath.Join(out, "transcript.jsonl")); code != 0 {
		t.Fatalf("verify exited %d: %s %s", code, stdout, stderr)
	}
}

// TestInitFormTmux answers keyceremony init's form in the real binary at
// 60x15, as a new operator would: a bad expiry is refused at its question,
// a pasted secret key is neither shown nor kept, the config is reviewed and
// written. keyceremony script and run accept the file as written, and the
// ceremony verifies.
func TestInitFormTmux(t *testing.T) {
	e := newE2E(t)
	bob, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	tmux, waitFor, typeLine := tmuxShell(t, e, 60, 15)
	keys := func(k ...string) { tmux(append([]string{"send-keys", "-t", "c"}, k...)...) }
	typeLine("keyceremony init; echo INIT=$?")
	say := func(question, v string) {
		t.Helper()
		waitFor(question)
		if v != "" {
			keys("C-u")
			keys("-l", v)
		}
		keys("Enter")
	}
	say("Ceremony id", "init-form")
	say("Operator", "tester")
	say("Token label", "")
	say("Expiry of every key after import", "400d")
	waitFor(`"400d" is more than 365 days`)
	say("Expiry of every key after import", "30d")
	say("KMS wrapping algorithm", "RSAES_OAEP_SHA_1")
	say("KMS wrapping key spec", "RSA_2048")
	say("Key labels, separated by spaces", "payments-form archive-form")
	say("Custodian names, separated by spaces", "alice bob")
	waitFor("Custodian alice: age1")
	keys("C-u")
	keys("-l", bob.String())
	refused := waitFor("That is a SECRET key")
	if strings.Contains(strings.Join(strings.Fields(refused), ""), bob.String()[15:35]) {
		t.Fatalf("the pasted secret key is on the screen:\n%s", refused)
	}
	keys("-l", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	keys("Enter")
	say("Custodian bob: age1", bob.Recipient().String())
	say("Custodians needed to recover", "")
	waitFor("Write this config to ceremony.yaml?")
	keys("Enter")
	waitFor("INIT=0")
	cfg := filepath.Join(e.dir, "ceremony.yaml")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  id: init-form ", "  operator: tester ", "  - label: payments-form ", "  - label: archive-form ", "valid_for: 30d ",
		"  threshold: 2 ", "recipient: " + bob.Recipient().String() + "\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the config lacks %q:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), "AGE-SECRET-KEY") {
		t.Fatal("the secret key is in the config")
	}
	runAsWritten(t, e, cfg, "init-form")
}
