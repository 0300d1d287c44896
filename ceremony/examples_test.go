package ceremony

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExamples loads every config in examples/ as written, and renders its
// plan and script.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := LoadConfig(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Plan()) == 0 || !strings.Contains(Script(cfg), "## Step 1") {
				t.Error("no plan or script")
			}
		})
	}
}

// TestREADMEConfig parses the README's Config block as written.
func TestREADMEConfig(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Config\n\n```yaml\n(.*?)```").FindSubmatch(data)
	if m == nil {
		t.Fatal("the README has no Config block")
	}
	cfg, err := ParseConfig(m[1])
	if err != nil {
		t.Fatalf("the README's Config block does not parse: %v", err)
	}
	if cfg.Escrow == nil || len(cfg.Escrow.Custodians) != 4 {
		t.Errorf("custodians: %+v", cfg.Escrow)
	}
}
