package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
)

// Exit codes of keyceremony status (besides exitOK, exitError, exitUsage).
const (
	exitStatusMismatch = 3 // a transcript fails verification, or KMS holds material the transcripts do not record
	exitStatusWarn     = 4 // a key expires within --warn, or is not Enabled (PendingImport)
)

const statusHelp = `Usage: keyceremony status [--transcript FILE]... [--pubkey PEM] [KEY_ARN...]
                          [--warn 30d] [--json] [--prom FILE] [--region R] [--profile P]

Reads each key from KMS: state, origin, expiry and days left (the earliest
expiry of all its materials), current key material id and rotations
(ListKeyRotations). Keys come from sealed transcripts (--transcript, every key
they record) and from the command line. For keys from a transcript it checks
KMS holds the material the ceremony recorded: the KeyMaterialIds KMS returned
at import, and the key check value in the KeyMaterialDescription.

Exit codes: 0 all keys fine, 1 error (a key could not be read), 2 usage,
3 a transcript fails verification or KMS holds material the transcripts do not
record, 4 a key expires within --warn or is not Enabled (e.g. PendingImport).
The worst applies: 3, then 1, then 4.

--prom writes the figures in the Prometheus text format, for node_exporter's
textfile collector (written to a temporary file and renamed).

`

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr, statusHelp)
	var trs multiFlag
	fs.Var(&trs, "transcript", "sealed transcript `FILE` whose keys to check (repeatable)")
	pubPath := fs.String("pubkey", "", "signing public key `PEM` the transcripts' seals must match")
	warn := fs.String("warn", "30d", "warn (exit 4) when a key expires within this `duration`; 0 warns only on keys not Enabled")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	prom := fs.String("prom", "", "also write the figures to this `file` in Prometheus text format")
	region := fs.String("region", "", "AWS `region` for key ids (an ARN's region wins)")
	profile := fs.String("profile", "", "AWS shared config `profile`")
	keys, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(keys) == 0 && len(trs) == 0 {
		return usageError("status takes key ARNs or --transcript FILE")
	}
	var window time.Duration
	if *warn != "0" {
		if window, err = ceremony.ParseValidFor(*warn); err != nil {
			return usageError(fmt.Sprintf("--warn %q %v", *warn, err))
		}
	}
	if *prom != "" && !strings.HasSuffix(*prom, ".prom") {
		return usageError("--prom file name must end in .prom (node_exporter's textfile collector reads only those)")
	}
	o := ceremony.StatusOptions{KMS: awskms.Options{Region: *region, Profile: *profile}, Keys: keys, Warn: window}
	if *pubPath != "" {
		if o.PublicKey, err = readSealPublicKey(*pubPath); err != nil {
			return err
		}
	}
	for _, t := range trs {
		// status runs unattended (cron, a textfile collector): a pipe or
		// a device in a transcript's place is refused, not waited on.
		data, err := evidence.ReadFile(t, transcripts.MaxSize)
		if err != nil {
			return fmt.Errorf("failed to read transcript: %w", err)
		}
		// Named as given: every ceremony names its own transcript.jsonl.
		o.Transcripts = append(o.Transcripts, ceremony.NamedFile{Name: t, Data: data})
	}
	rep, err := ceremony.KeysStatus(ctx, o)
	if err != nil {
		return exitCode{exitStatusMismatch, "error: " + err.Error()}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printStatus(stdout, rep)
	}
	if *prom != "" {
		if err := writeProm(*prom, rep); err != nil {
			return err
		}
	}
	switch rep.Worst() {
	case "mismatch":
		return exitCode{exitStatusMismatch, "mismatch: a key holds key material its ceremony did not record (see record above)"}
	case "error":
		return exitCode{exitError, "error: a key could not be read from KMS (see above)"}
	case "warn":
		return exitCode{exitStatusWarn, "warning: a key needs attention: it expires within --warn or is not Enabled (see above)"}
	}
	return nil
}

// exitCode ends a command with a documented exit code and a one-line
// message on stderr.
type exitCode struct {
	code int
	msg  string
}

func (e exitCode) Error() string { return e.msg }

// printStatus prints the report as a table and notes. Every string in it
// comes from KMS or a transcript, and is printed escaped.
func printStatus(w io.Writer, rep *ceremony.StatusReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tLABEL\tSTATE\tORIGIN\tEXPIRES\tDAYS\tMATERIAL\tROTATIONS\tRECORD")
	for _, k := range rep.Keys {
		if k.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\terror\t\t\t\t\t\t%s\n", show(k.Key), show(k.Label), k.Record)
			continue
		}
		exp, days := "never", "-"
		if k.ValidTo != nil {
			exp, days = k.ValidTo.UTC().Format(time.RFC3339), strconv.Itoa(*k.DaysLeft)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", show(k.ARN), show(k.Label), show(k.State), show(k.Origin), exp, days, show(shortID(k.CurrentMaterialID)), k.Rotations, k.Record)
	}
	tw.Flush()
	for _, k := range rep.Keys {
		if k.Error != "" {
			fmt.Fprintf(w, "%s: error: %s\n", show(k.Key), show(k.Error))
		}
		for _, m := range k.Warnings {
			fmt.Fprintf(w, "%s: warning: %s\n", show(k.ARN), show(m))
		}
		if k.RecordDetail != "" {
			fmt.Fprintf(w, "%s: record %s: %s\n", show(orKey(k)), k.Record, show(k.RecordDetail))
		}
	}
}

func orKey(k ceremony.KeyStatus) string {
	if k.ARN != "" {
		return k.ARN
	}
	return k.Key
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	if id == "" {
		return "-"
	}
	return id
}

// writeProm writes the report in the Prometheus text exposition format,
// atomically (temporary file in the same directory, then rename), as
// node_exporter's textfile collector wants.
func writeProm(path string, rep *ceremony.StatusReport) error {
	var b strings.Builder
	metric := func(name, help, typ string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	lbl := func(k ceremony.KeyStatus) string {
		return fmt.Sprintf(`arn="%s",label="%s"`, promEscape(orKey(k)), promEscape(k.Label))
	}
	metric("keyceremony_kms_key_info", "KMS key state, origin and current key material (value 1).", "gauge")
	for _, k := range rep.Keys {
		if k.Error == "" {
			fmt.Fprintf(&b, "keyceremony_kms_key_info{%s,state=\"%s\",origin=\"%s\",key_material_id=\"%s\"} 1\n", lbl(k), promEscape(k.State), promEscape(k.Origin), promEscape(k.CurrentMaterialID))
		}
	}
	metric("keyceremony_kms_key_up", "1 if the key could be read from KMS.", "gauge")
	for _, k := range rep.Keys {
		fmt.Fprintf(&b, "keyceremony_kms_key_up{%s} %d\n", lbl(k), boolInt(k.Error == ""))
	}
	metric("keyceremony_kms_key_enabled", "1 if the key is Enabled.", "gauge")
	for _, k := range rep.Keys {
		fmt.Fprintf(&b, "keyceremony_kms_key_enabled{%s} %d\n", lbl(k), boolInt(k.State == "Enabled"))
	}
	metric("keyceremony_kms_key_material_expiry_timestamp_seconds", "Earliest expiry of the key's imported materials (absent when none expires).", "gauge")
	for _, k := range rep.Keys {
		if k.ValidTo != nil {
			fmt.Fprintf(&b, "keyceremony_kms_key_material_expiry_timestamp_seconds{%s} %d\n", lbl(k), k.ValidTo.Unix())
		}
	}
	metric("keyceremony_kms_key_rotations", "Completed rotations of the key's material.", "gauge")
	for _, k := range rep.Keys {
		if k.Error == "" {
			fmt.Fprintf(&b, "keyceremony_kms_key_rotations{%s} %d\n", lbl(k), k.Rotations)
		}
	}
	metric("keyceremony_kms_key_material_matches_record", "1 if KMS holds the material the ceremony recorded, 0 if not (absent when unknown).", "gauge")
	for _, k := range rep.Keys {
		if k.Record != ceremony.RecordUnknown {
			fmt.Fprintf(&b, "keyceremony_kms_key_material_matches_record{%s} %d\n", lbl(k), boolInt(k.Record == ceremony.RecordMatch))
		}
	}
	metric("keyceremony_status_timestamp_seconds", "When keyceremony status last ran.", "gauge")
	fmt.Fprintf(&b, "keyceremony_status_timestamp_seconds %d\n", rep.Checked.Unix())

	tmp, err := os.CreateTemp(filepath.Dir(path), ".keyceremony-status-*")
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(b.String())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}

// promEscape makes s a Prometheus label value: escaped as a terminal
// shows it (transcripts.Printable: a newline or an escape from KMS or a
// transcript becomes \uXXXX, invalid UTF-8 U+FFFD), then as the text
// format wants (backslash and double quote).
func promEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(transcripts.Printable(s))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
