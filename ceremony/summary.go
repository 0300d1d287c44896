package ceremony

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/transcripts"
)

// Summary is what a completed ceremony leaves for the people in the room,
// as plain text: every key's check value, KMS key ARN and expiry, the seal
// words numbered in groups of four, the evidence files, and the next
// commands with every flag they need. The TUI shows it, prints it on exit
// and writes it into the evidence directory; nothing in it is shortened.
func Summary(cfg *Config, res *Result) string {
	var b strings.Builder
	out := res.OutDir
	fmt.Fprintf(&b, "Ceremony %s complete: the transcript is sealed and verified.\n", cfg.Ceremony.ID)
	b.WriteString("\nKeys\n")
	for i, k := range res.Keys {
		fmt.Fprintf(&b, "  %s\n", k.Label)
		fmt.Fprintf(&b, "    key check value  %s\n", k.KeyCheckValue)
		if k.KMSKeyARN != "" {
			fmt.Fprintf(&b, "    KMS key          %s\n", k.KMSKeyARN)
		}
		switch {
		case res.Offline:
			fmt.Fprintf(&b, "    bundle           %s\n", k.Bundle)
			if k.ImportBy != nil {
				fmt.Fprintf(&b, "    upload before    %s (the import parameters expire)\n", k.ImportBy.UTC().Format(time.RFC3339))
			}
			fmt.Fprintf(&b, "    expiry           not imported yet: %s\n", expiryOf(&cfg.Keys[i]))
		case k.ValidTo != nil:
			fmt.Fprintf(&b, "    expiry           valid to %s\n", k.ValidTo.UTC().Format(time.RFC3339))
		default:
			b.WriteString("    expiry           does not expire\n")
		}
		for _, r := range k.Replicas {
			fmt.Fprintf(&b, "    replica %-8s %s\n", r.Region, r.KMSKeyARN)
			if res.Offline {
				fmt.Fprintf(&b, "      bundle         %s\n", r.Bundle)
			}
		}
	}
	if res.SealWords != "" {
		b.WriteString("\nSeal words (read aloud; each witness writes them down)\n")
		for _, l := range numberedWords(res.SealWords) {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	fmt.Fprintf(&b, "Transcript SHA-256  %s\n", res.SealHash)
	fmt.Fprintf(&b, "\nEvidence in %s\n", out)
	for _, f := range evidenceFiles(out) {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	if len(res.SetAside) > 0 {
		b.WriteString("\nMoved aside (not evidence of this ceremony)\n")
		for _, a := range res.SetAside {
			fmt.Fprintf(&b, "  %s -> %s: %s\n", a.Name, a.MovedTo, a.Reason)
		}
	}
	b.WriteString("\nNext\n")
	for _, c := range NextCommands(cfg, res) {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	// Each line escaped: ARNs and labels a resume read from the
	// transcript, file names found in out_dir.
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = transcripts.Printable(l)
	}
	return strings.Join(lines, "\n")
}

// NextCommands are the commands to run after a completed ceremony, each
// with every flag it needs: verify the transcript and its files, check the
// seal with openssl, and (offline) upload each bundle.
func NextCommands(cfg *Config, res *Result) []string {
	// Quoted for the shell: an out_dir may hold spaces ("/media/USB stick").
	q := func(name string) string { return ShellQuote(filepath.Join(res.OutDir, name)) }
	pub := q("signing-key.pem")
	cmds := []string{
		fmt.Sprintf("keyceremony verify --pubkey %s --files %s %s", pub, ShellQuote(res.OutDir), q("transcript.jsonl")),
		fmt.Sprintf("openssl dgst -sha256 -verify %s -signature %s %s", pub, q(SealSignatureFile), q(SealPayloadFile)),
	}
	if res.Offline {
		for _, k := range res.Keys {
			cmds = append(cmds, k.UploadCommand) // with every Region's bundle
		}
	}
	return cmds
}

// numberedWords lays the seal words out four to a line, numbered, for
// reading aloud and writing down.
func numberedWords(words string) []string {
	ws := strings.Fields(words)
	wide := 0
	for _, w := range ws {
		wide = max(wide, len(w))
	}
	var lines []string
	for i := 0; i < len(ws); i += 4 {
		var l strings.Builder
		for j := i; j < min(i+4, len(ws)); j++ {
			if j > i {
				l.WriteString("  ")
			}
			fmt.Fprintf(&l, "%2d %-*s", j+1, wide, ws[j])
		}
		lines = append(lines, strings.TrimRight(l.String(), " "))
	}
	return lines
}

// evidenceFiles lists the files in out, names only, sorted.
func evidenceFiles(out string) []string {
	ents, err := os.ReadDir(out)
	if err != nil {
		return []string{"(cannot list: " + err.Error() + ")"}
	}
	var names []string
	for _, e := range ents {
		// Not evidence: the directory's lock (.keyceremony.lock).
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

func expiryOf(k *KeyConfig) string {
	switch {
	case k.ValidTo != "":
		return "to be valid to " + k.ValidTo
	case k.ValidFor != "":
		return "to be valid for " + k.ValidFor + " from the upload"
	}
	return "will not expire"
}
