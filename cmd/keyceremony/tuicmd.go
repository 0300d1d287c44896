package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/term"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/cmd/keyceremony/tui"
	"github.com/keyceremony/keyceremony/internal/evidence"
)

// defaultConfig is the config the TUI opens when keyceremony runs with no
// arguments.
const defaultConfig = "ceremony.yaml"

func cmdTUI(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags("tui", stderr, "Usage: keyceremony tui [--config FILE]\n\nRuns a ceremony in the terminal UI: plan review, PIN, each step, confirmations\nof dangerous steps, and the seal for the witnesses. Works at 80x24 and with NO_COLOR.\n\n")
	config := fs.String("config", defaultConfig, "ceremony config `file` (YAML)")
	allowHost := fs.Bool("allow-host-wrap", false, "wrap on the host when the token cannot wrap with the algorithm inside the HSM (the key material is in host memory for a moment)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("tui takes only --config FILE")
	}
	if !term.IsTerminal(int(stdin.Fd())) {
		return errors.New("the terminal UI needs a terminal: run it in one, or use keyceremony run --config FILE for a non-interactive ceremony")
	}
	if _, err := os.Stat(*config); errors.Is(err, os.ErrNotExist) {
		return &hintError{error: errors.New("no ceremony config at " + *config), hint: "write one with keyceremony init --out " + *config + ", or give another with keyceremony tui --config FILE"}
	}
	cfg, err := ceremony.LoadConfig(*config)
	if err != nil {
		return err
	}
	if *allowHost {
		cfg.KMS.AllowHostWrap, cfg.KMS.HostWrapAllowedBy = true, "--allow-host-wrap"
	}
	lock, err := ceremony.LockDir(cfg.OutDir(), "keyceremony tui")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	command := "keyceremony tui --config " + ceremony.ShellQuote(*config)
	if *allowHost {
		command += " --allow-host-wrap"
	}
	out, err := tui.Run(ctx, cfg, command)
	if err != nil {
		return err
	}
	return tuiExit(cfg, out, stdout)
}

// tuiExit prints what the screen said last, so that it stays in the
// terminal, and writes a completed ceremony's summary into its evidence
// directory.
func tuiExit(cfg *ceremony.Config, out *tui.Outcome, stdout io.Writer) error {
	switch {
	case out.Result != nil:
		fmt.Fprint(stdout, out.Report)
		p, err := writeSummary(cfg.OutDir(), out.Report)
		if err != nil {
			return fmt.Errorf("the ceremony is complete, but its summary could not be written into %s: %w", cfg.OutDir(), err)
		}
		fmt.Fprintf(stdout, "\nThis summary is also in %s\n", p)
		return nil
	case out.Err != nil && !out.Stopped():
		var se *ceremony.StepError
		if errors.As(out.Err, &se) && se.Changed {
			return &hintError{error: out.Err, hint: "the transcript in " + cfg.OutDir() + " records what was done: fix the cause and run the same command again to resume where it stopped"}
		}
		return out.Err
	}
	fmt.Fprint(stdout, out.Report)
	if out.Stopped() {
		return errStopped
	}
	return nil
}

// errStopped makes the exit code 1 after a stop the report already
// explained on stdout.
var errStopped = silentError{errors.New("stopped by the operator")}

// writeSummary writes a completed ceremony's summary into its evidence
// directory, never over an existing file.
func writeSummary(dir, text string) (string, error) {
	for i := 1; ; i++ {
		name := "summary.txt"
		if i > 1 {
			name = fmt.Sprintf("summary-%d.txt", i)
		}
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		return p, evidence.Create(p, []byte(text), 0o644)
	}
}
