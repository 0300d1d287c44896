package main

import (
	"context"
	"errors"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/cmd/keyceremony/tui"
)

// defaultConfig is the config the TUI opens when keyceremony runs with no
// arguments.
const defaultConfig = "ceremony.yaml"

func cmdTUI(ctx context.Context, args []string, stdin *os.File, stderr io.Writer) error {
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
		return &hintError{error: errors.New("no ceremony config at " + *config), hint: "give one with keyceremony tui --config FILE (see the README's Config section)"}
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
	return tui.Run(ctx, cfg)
}
