package main_test

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/transcripts/transcriptstest"
)

// BenchmarkVerifyProcess10000 times keyceremony verify --pubkey, as a
// process, on a sealed 10,000-event transcript, and reports it against
// what checking the same file without keyceremony costs: sha256sum of the
// file plus openssl dgst -verify of the seal payload. The goal: at most 3
// times (x-baseline-wall and, less disturbed by a busy machine,
// x-baseline-cpu, user plus system time).
func BenchmarkVerifyProcess10000(b *testing.B) {
	for _, tool := range []string{"sha256sum", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	dir, done, err := transcriptstest.TempDir()
	if err != nil {
		b.Fatal(err)
	}
	defer done()
	s, err := transcriptstest.WriteSealed10000(dir)
	if err != nil {
		b.Fatal(err)
	}
	run := func(name string, args ...string) (wall, cpu time.Duration) {
		cmd := exec.Command(name, args...)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", name, err, out)
		}
		return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var vWall, vCPU, bWall, bCPU time.Duration
	for b.Loop() {
		w, c := run(filepath.Join(binDir, "keyceremony"), "verify", "--pubkey", s.PublicKey, s.Transcript)
		vWall, vCPU = vWall+w, vCPU+c
		b.StopTimer()
		w1, c1 := run("sha256sum", s.Transcript)
		w2, c2 := run("openssl", "dgst", "-sha256", "-verify", s.PublicKey, "-signature", s.Signature, s.Payload)
		bWall, bCPU = bWall+w1+w2, bCPU+c1+c2
		b.StartTimer()
	}
	b.ReportMetric(float64(vWall)/float64(bWall), "x-baseline-wall")
	b.ReportMetric(float64(vCPU)/float64(bCPU), "x-baseline-cpu")
}
