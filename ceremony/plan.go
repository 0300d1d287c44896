package ceremony

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"strings"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/wrap"
)

// PlanItem is one line of a ceremony's plan, as shown for review before it
// starts: what will happen, to which token and which KMS keys.
type PlanItem struct {
	Label string
	Value string
}

// Plan describes what Run will do with cfg, for review by the people in the
// room before anything happens. It makes no call to the token or KMS.
func (c *Config) Plan() []PlanItem {
	module, label, serial, _ := c.Token.selector()
	tok := fmt.Sprintf("label %q", label)
	if label == "" {
		tok = "serial " + serial
	}
	if module == "" {
		module = "default module"
	}
	region, endpoint := c.kmsWhere()
	kms := region + ", first contacted at step 3"
	if c.Offline() {
		kms = "offline (air gap): params files in, bundle files out"
	}
	wrapping := fmt.Sprintf("%s with %s", c.KMS.WrappingAlgorithm, c.KMS.WrappingKeySpec)
	if c.Offline() {
		wrapping = "as the params files say"
	}
	if c.KMS.AllowHostWrap {
		wrapping += ", on the host if the token cannot"
	}
	items := []PlanItem{
		{"Ceremony", fmt.Sprintf("%s, operator %s", c.Ceremony.ID, c.Ceremony.Operator)},
	}
	// Witnesses compare the binary's hash with the published SHA256SUMS;
	// two lines of four groups each fit an 80-column screen.
	if b, err := Binary(); err == nil && b.BinarySHA256 != "" {
		g := strings.Fields(GroupHex(b.BinarySHA256))
		items = append(items, PlanItem{"Binary", "sha256 " + strings.Join(g[:4], " ")}, PlanItem{"", "       " + strings.Join(g[4:], " ")})
	} else {
		items = append(items, PlanItem{"Binary", "could not be hashed: compare keyceremony version with SHA256SUMS"})
	}
	items = append(items, []PlanItem{
		{"Token", fmt.Sprintf("%s (%s)", tok, module)},
		{"KMS", kms},
	}...)
	if !c.Offline() {
		items = append(items, PlanItem{"", endpoint})
	}
	items = append(items, PlanItem{"Wrapping", wrapping})
	if c.KMS.InsecureUnpinnedWrappingKey {
		items = append(items, PlanItem{"WARNING", "wrapping keys NOT pinned (" + UnpinnedOption + ")"},
			PlanItem{"", "a swapped params file sends the keys to whoever made it:"},
			PlanItem{"", "compare each hash below with what params fetch printed"})
	}
	for _, k := range c.Keys {
		target := "new EXTERNAL key"
		switch {
		case k.ParamsFile != "":
			target = "key of " + filepath.Base(k.ParamsFile)
		case !k.Create:
			target = k.KMSKeyID
		}
		expiry := "does not expire"
		switch {
		case k.ValidTo != "":
			expiry = "expires " + k.ValidTo
		case k.ValidFor != "":
			expiry = "expires in " + k.ValidFor
		}
		items = append(items, PlanItem{"Key " + k.Label, fmt.Sprintf("AES-256 → %s%s, %s", target, k.targetNote(), expiry)})
		if k.ParamsFile != "" {
			items = append(items, c.paramsPlan(&k)...)
		}
	}
	if e := c.Escrow; e != nil {
		var names []string
		for _, cu := range e.Custodians {
			names = append(names, cu.Name+" ("+cu.kind()+")")
		}
		items = append(items, PlanItem{"Escrow", fmt.Sprintf("%d of %d custodians: %s", e.Threshold, len(e.Custodians), strings.Join(names, ", "))})
		if e.Threshold == 1 {
			items = append(items, PlanItem{"WARNING", "threshold 1: any one custodian alone recovers every key"})
		}
	}
	items = append(items, PlanItem{"Evidence", c.OutDir()})
	return items
}

// uploadCommand is the command that imports bundles (made by an offline
// ceremony or wrap: one key's, in each of its Regions) after checking them
// against the sealed transcript and the signer's fingerprint, with the
// expiry expiry (flags).
func uploadCommand(bundles []string, transcript, fingerprint, expiry string) string {
	cmd := "keyceremony upload"
	for _, b := range bundles {
		cmd += " --bundle " + ShellQuote(b)
	}
	return fmt.Sprintf("%s --transcript %s --fingerprint %s %s", cmd, ShellQuote(transcript), fingerprint, expiry)
}

// expiryFlags are the upload flags for the expiry k asks for.
func (k *KeyConfig) expiryFlags() string {
	switch {
	case k.ValidTo != "":
		return "--valid-to " + k.ValidTo
	case k.ValidFor != "":
		return "--valid-for " + k.ValidFor
	}
	return "--does-not-expire"
}

// ShellQuote quotes s for a POSIX shell when it needs it, so that a
// command printed with it works as printed.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// kmsWhere says which Region and KMS endpoint a connected ceremony will
// talk to, resolved from the AWS configuration as the ceremony will (no
// call is made), for the witnesses to check before anything happens. It is
// worked out once per config.
func (c *Config) kmsWhere() (region, endpoint string) {
	if c.where == nil {
		ctx := context.Background()
		w := [2]string{"Region not configured", "endpoint unknown"}
		cl, err := awskms.New(ctx, awskms.Options{Region: c.KMS.Region, Profile: c.KMS.Profile})
		if err != nil {
			w[1] = err.Error()
		} else if ep, err := cl.Endpoint(ctx); err != nil {
			w[0], w[1] = "Region "+cl.Region(), err.Error()
		} else {
			w[0], w[1] = "Region "+cl.Region(), "endpoint "+ep
		}
		c.where = &w
	}
	return c.where[0], c.where[1]
}

// kind says how a custodian's share is sealed, for the plan.
func (c *CustodianConfig) kind() string {
	switch {
	case c.Passphrase:
		return "passphrase"
	case c.Recipient == AskRecipient:
		return "recipient given at the keyboard"
	case strings.HasPrefix(c.Recipient, "ssh-"):
		return "SSH key"
	case strings.HasPrefix(c.Recipient, "age1pq1"):
		return "post-quantum age key"
	}
	return "age key"
}

// paramsPlan is what an offline key's params file says: the KMS key, the
// wrapping algorithm, until when it is valid, and the wrapping key's SHA-256
// in full, to compare with what params fetch printed online.
func (c *Config) paramsPlan(k *KeyConfig) []PlanItem {
	data, err := os.ReadFile(c.path(k.ParamsFile))
	if err != nil {
		return []PlanItem{{"", "params file unreadable: " + err.Error()}}
	}
	p, err := wrap.ParseParams(data)
	if err != nil {
		return []PlanItem{{"", "params file invalid: " + err.Error()}}
	}
	pin := ", NOT pinned"
	if k.WrappingKeySHA256 != "" {
		pin = ", pinned in the config"
	}
	return []PlanItem{
		{"", "KMS key " + p.KeyARN},
		{"", fmt.Sprintf("%s with %s, parameters valid until %s", p.Algorithm, p.KeySpec, p.ValidTo.UTC().Format(time.RFC3339))},
		{"", "wrapping key sha256 " + sha256Hex(p.PublicKey) + pin},
	}
}
