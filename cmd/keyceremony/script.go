package main

import (
	"fmt"
	"io"

	"github.com/keyceremony/keyceremony/ceremony"
)

func cmdScript(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("script", stderr, "Usage: keyceremony script --config FILE\n\nPrints the ceremony as a numbered Markdown checklist for the witnesses to\nfollow and initial. The transcript's events carry the same step numbers\n(step_no), its header the SHA-256 of this text, and verify reports any step\nthe transcript lacks.\n\n")
	cfgPath := fs.String("config", "", "ceremony config `FILE` (YAML)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("script takes no arguments: keyceremony script --config FILE")
	}
	if *cfgPath == "" {
		return usageError("script needs --config FILE")
	}
	cfg, err := ceremony.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(stdout, ceremony.Script(cfg))
	return err
}
