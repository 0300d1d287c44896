package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/secret"
)

func cmdRun(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr, "Usage: keyceremony run --config FILE [--allow-host-wrap]\n\nRuns a whole ceremony from a config file: generate on the token, fetch import\nparameters, wrap, import with expiry, check, and seal the transcript.\n\n")
	config := fs.String("config", "", "ceremony config `file` (YAML)")
	module := fs.String("module", "", "PKCS#11 module `path` (overrides token.module and $"+hsm.ModuleEnv+")")
	allowHost := fs.Bool("allow-host-wrap", false, "wrap on the host when the token cannot wrap with the algorithm inside the HSM (the key material is in host memory for a moment)")
	parallel := fs.Int("parallel", 0, fmt.Sprintf("keys the online steps work on at once (overrides kms.parallel; default %d)", ceremony.DefaultParallel))
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *config == "" || len(pos) > 0 {
		return usageError("run takes --config FILE and no other arguments")
	}
	cfg, err := ceremony.LoadConfig(*config)
	if err != nil {
		return err
	}
	if *module != "" {
		cfg.Token.Module = *module
	}
	if *allowHost {
		cfg.KMS.AllowHostWrap, cfg.KMS.HostWrapAllowedBy = true, "--allow-host-wrap"
	}
	if *parallel != 0 {
		if *parallel < 1 || *parallel > ceremony.MaxParallel {
			return usageError(fmt.Sprintf("--parallel %d must be between 1 and %d", *parallel, ceremony.MaxParallel))
		}
		cfg.KMS.Parallel = *parallel
	}
	lock, err := ceremony.LockDir(cfg.OutDir(), "keyceremony run")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	ui := &lineUI{in: stdin, out: stderr}
	res, err := ceremony.Run(ctx, cfg, ui)
	if err != nil && ctx.Err() != nil {
		return interrupted(err, cfg)
	}
	if err != nil {
		var se *ceremony.StepError
		if errors.As(err, &se) && se.Changed {
			return &hintError{error: err, hint: "the transcript in " + cfg.OutDir() + " records what was done: fix the cause and run the same command again to resume where it stopped"}
		}
		return err
	}
	fmt.Fprintf(stdout, "ceremony %s complete\n", cfg.Ceremony.ID)
	fmt.Fprintf(stdout, "transcript:  %s\n", res.Transcript)
	fmt.Fprintf(stdout, "signing key: %s\n", res.PublicKey)
	fmt.Fprintf(stdout, "seal sha256: %s\n", res.SealHash)
	fmt.Fprintf(stdout, "signer fingerprint: %s (write it down: pin it with verify/upload --fingerprint)\n", res.Fingerprint)
	if res.Offline {
		fmt.Fprintln(stdout, "offline ceremony: carry the bundles out of the room, then on a connected machine:")
		for _, k := range res.Keys {
			fmt.Fprintf(stdout, "  %s\n", k.UploadCommand) // with every Region's bundle
		}
	}
	printKeyTable(stdout, res)
	return nil
}

// interrupted is run's error after Ctrl-C (SIGINT), which cancels the
// running PKCS#11 or KMS call (the TUI, which has time to ask, stops
// between two calls instead): it says so, not "context canceled", and how
// to go on.
func interrupted(cause error, cfg *ceremony.Config) error {
	err := errors.New("interrupted (Ctrl-C): the running calls were cancelled")
	var se *ceremony.StepError
	if errors.As(cause, &se) {
		err = &ceremony.StepError{Step: se.Step, Err: err}
	}
	hint := "nothing was changed: run the same command again to start"
	if _, serr := os.Stat(filepath.Join(cfg.OutDir(), "transcript.jsonl")); serr == nil {
		hint = "the transcript in " + cfg.OutDir() + " records what was done: run the same command again to resume where it stopped"
	}
	return &hintError{error: err, hint: hint}
}

// lineUI is the non-interactive runner's UI: progress lines on stderr,
// secrets from a no-echo prompt only when stdin is a terminal, and
// confirmations given by the config itself.
type lineUI struct {
	in  *os.File
	out io.Writer
	// lastBar is the last progress bar drawn, so each is drawn once.
	lastBar string
	// started is when the running step started.
	started time.Time
}

var _ ceremony.UI = (*lineUI)(nil)

func (u *lineUI) StepStarted(i, n int, s ceremony.Step) {
	u.started = time.Now()
	fmt.Fprintf(u.out, "[%d/%d] %s\n", i, n, s.Title)
}

func (u *lineUI) StepDone(i, n int, s ceremony.Step, summary string) {
	fmt.Fprintf(u.out, "[%d/%d] done in %.3fs: %s\n", i, n, time.Since(u.started).Seconds(), show(summary))
}

// Info prints a message of the engine, escaped: it may quote a transcript,
// a params file, KMS or the token.
func (u *lineUI) Info(msg string) { fmt.Fprintf(u.out, "      %s\n", show(msg)) }

// Progress draws a bar for steps over ten keys or more, a line each time
// it moves by a twentieth (the output may be a log file, not a terminal).
func (u *lineUI) Progress(done, total int) {
	if total < 10 {
		return
	}
	const width = 20
	filled := done * width / total
	bar := fmt.Sprintf("      [%s%s] %d/%d keys", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total)
	if done != total && strings.HasPrefix(u.lastBar, bar[:width+8]) {
		return
	}
	u.lastBar = bar
	fmt.Fprintln(u.out, bar)
}

// Ask reads one line from a terminal with its echo off, then shows what was
// read, unless it is a secret key pasted by mistake: that is never on the
// screen, not even as the terminal's echo. A non-interactive run has nobody
// to ask.
func (u *lineUI) Ask(ctx context.Context, prompt string) (string, error) {
	if u.in == nil || !term.IsTerminal(int(u.in.Fd())) {
		return "", errors.New("nobody at the keyboard to ask (stdin is not a terminal): put the value in the config instead of \"ask\", or run the ceremony in the TUI")
	}
	fmt.Fprintf(u.out, "      (what you type is not echoed; it is shown after enter)\n%s: ", show(prompt))
	b, err := term.ReadPassword(int(u.in.Fd()))
	fmt.Fprintln(u.out)
	if err != nil {
		return "", fmt.Errorf("failed to read the answer: %w", err)
	}
	line := strings.TrimSpace(string(b))
	if secret.LooksLikeKey(line) {
		fmt.Fprintln(u.out, "      read: a SECRET key (not shown); give the PUBLIC recipient and keep the secret key to yourself")
	} else {
		fmt.Fprintf(u.out, "      read: %s\n", show(line))
	}
	return line, nil
}

func (u *lineUI) Secret(ctx context.Context, prompt string) ([]byte, error) {
	if u.in == nil || !term.IsTerminal(int(u.in.Fd())) {
		return nil, fmt.Errorf("%w: stdin is not a terminal: set %s or token.pin_file", ceremony.ErrNoPIN, ceremony.DefaultPINEnv)
	}
	fmt.Fprintf(u.out, "%s: ", show(prompt))
	b, err := term.ReadPassword(int(u.in.Fd()))
	fmt.Fprintln(u.out)
	if err != nil {
		return nil, fmt.Errorf("failed to read secret: %w", err)
	}
	return b, nil
}

// Confirm asks nobody: a non-interactive run is confirmed by its config,
// and the transcript says so.
func (u *lineUI) Confirm(ctx context.Context, prompt, want string) (ceremony.Confirmation, error) {
	fmt.Fprintf(u.out, "      %s\n      %s: confirmed by the config\n", show(prompt), ceremony.NotAsked)
	return ceremony.Confirmation{}, nil
}

// printKeyTable prints one line per key: label, key check value, KMS key,
// expiry and the KeyMaterialId KMS returned.
func printKeyTable(w io.Writer, res *ceremony.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tKCV\tKMS KEY\tEXPIRY\tKEY MATERIAL ID")
	for _, k := range res.Keys {
		vt := "does not expire"
		if res.Offline {
			vt = "not imported yet"
		} else if k.ValidTo != nil {
			vt = "valid to " + k.ValidTo.Format("2006-01-02T15:04:05Z07:00")
		}
		mid := k.KeyMaterialID
		if mid == "" {
			mid = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", show(k.Label), k.KeyCheckValue, show(k.KMSKeyARN), vt, show(mid))
		for _, r := range k.Replicas {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", show(k.Label), k.KeyCheckValue, show(r.KMSKeyARN), vt, show(mid))
		}
	}
	tw.Flush()
}
