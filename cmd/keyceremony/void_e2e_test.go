package main_test

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestResumeVoidEvents kills the real binary right after an event line and
// before the checkpoint that covers it (after the first generate-key, the
// escrow, the first fetch-params and the first wrap) and right after it
// created an empty transcript, resumes with the same command, and checks
// the evidence from outside (crashCase.check: verify --files, every share
// with escrow verify-share --transcript, the drill, the token, KMS). The
// resume voids the events the checkpoint did not cover and does their work
// again; verify must count exactly what the resume counted.
func TestResumeVoidEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and resumes ceremonies")
	}
	conf, cu, _, _, _ := crashEnv(t)
	// Where the events are in a clean run.
	c := newCrashCase(t, conf, cu, 900)
	if r := c.run(killPoint{line: -1, request: -1}); r.code != 0 {
		t.Fatalf("clean run exited %d: %s", r.code, r.stderr)
	}
	lines, err := transcriptLines(filepath.Join(c.out, "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	points := []killPoint{lineKill(0)}
	want := []string{"generate-key", "escrow", "fetch-params", "wrap"}
	for _, step := range want {
		for n, l := range lines {
			if l["step"] == step {
				// generate-key events are signed by the step's checkpoint
				// after the last key (their intents by one before the first).
				if next := lines[n+1]["step"]; step == "escrow" && next != "checkpoint" {
					t.Fatalf("line %d (%s) is followed by %v, not its checkpoint: update this test", n+1, step, next)
				}
				points = append(points, lineKill(n+1)) // the file holds the event line, not what follows
				break
			}
		}
	}
	if len(points) != 1+len(want) {
		t.Fatalf("clean run lacks one of %v", want)
	}
	for i, p := range points {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			if msg := crashPoint(t, conf, cu, 901+i, p); msg != "" {
				t.Fatalf("killed at %s: %s", p, msg)
			}
		})
	}
}
