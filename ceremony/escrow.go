package ceremony

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/internal/secret"
)

// EscrowConfig is the escrow section: who holds the shares of the escrow
// key-encryption key, and how many of them it takes to recover.
type EscrowConfig struct {
	// Threshold is M: any M custodians together recover the keys.
	Threshold int `yaml:"threshold"`
	// Custodians are the N share holders, in share-index order.
	Custodians []CustodianConfig `yaml:"custodians"`
	// Armor writes the share files in age's armored text form, for printing.
	Armor bool `yaml:"armor"`
	// AllowSingleCustodian allows threshold 1: each custodian alone can
	// recover every key. The plan shows it as a warning.
	AllowSingleCustodian bool `yaml:"allow_single_custodian"`
}

// AskRecipient is the recipient value that has the custodian give their
// recipient at the keyboard during the ceremony.
const AskRecipient = "ask"

// CustodianConfig is one share holder. Exactly one of Recipient and
// Passphrase is set.
type CustodianConfig struct {
	// Name names the custodian in files and the transcript.
	Name string `yaml:"name"`
	// Recipient is an age X25519 recipient (age1…) or an SSH public key
	// (ssh-ed25519 …, ssh-rsa …), or "ask": the custodian types or pastes
	// it at the keyboard during the ceremony.
	Recipient string `yaml:"recipient"`
	// Passphrase seals the share to a passphrase the custodian types.
	Passphrase bool `yaml:"passphrase"`
	// PassphraseEnv and PassphraseFile give the passphrase to a
	// non-interactive run; without them the UI asks.
	PassphraseEnv  string `yaml:"passphrase_env"`
	PassphraseFile string `yaml:"passphrase_file"`
}

var custodianRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)

// MinPassphrase is the shortest passphrase a custodian may choose.
const MinPassphrase = 12

func (e *EscrowConfig) validate() error {
	n := len(e.Custodians)
	if n == 0 {
		return errors.New("escrow.custodians must list at least one custodian")
	}
	if n > escrow.MaxShares {
		return fmt.Errorf("escrow.custodians lists %d custodians, at most %d are supported", n, escrow.MaxShares)
	}
	if e.Threshold < 1 || e.Threshold > n {
		return fmt.Errorf("escrow.threshold %d must be between 1 and the number of custodians (%d)", e.Threshold, n)
	}
	if e.Threshold == 1 && !e.AllowSingleCustodian {
		return errors.New("escrow.threshold 1 lets any one custodian recover every key alone: raise it, or set escrow.allow_single_custodian: true")
	}
	seen := map[string]bool{}
	keys := map[string]string{} // recipient key → custodian
	for i, c := range e.Custodians {
		p := fmt.Sprintf("escrow.custodians[%d]", i)
		if !custodianRE.MatchString(c.Name) {
			return fmt.Errorf("%s.name %q must be 1-32 letters, digits, '.', '_' or '-'", p, c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("%s.name %q is used twice", p, c.Name)
		}
		seen[c.Name] = true
		if (c.Recipient == "") == !c.Passphrase {
			return fmt.Errorf("%s: set exactly one of recipient (age1… or an SSH public key) and passphrase: true", p)
		}
		if c.Recipient != "" && c.Recipient != AskRecipient {
			r, err := escrow.ParseRecipient(c.Recipient)
			if err != nil {
				return fmt.Errorf("%s.recipient: %w", p, err)
			}
			if other, ok := keys[r.Key]; ok {
				return fmt.Errorf("%s.recipient is the same key as custodian %q's: each custodian holds their own key, or one person holds two shares", p, other)
			}
			keys[r.Key] = c.Name
			if c.PassphraseEnv != "" || c.PassphraseFile != "" {
				return fmt.Errorf("%s: passphrase_env and passphrase_file need passphrase: true", p)
			}
		}
		if c.PassphraseEnv != "" && c.PassphraseFile != "" {
			return fmt.Errorf("%s: passphrase_env and passphrase_file are exclusive: use one", p)
		}
	}
	return nil
}

// recipients resolves every custodian's age recipient, reading or asking for
// passphrases. It runs before anything changes, so a missing passphrase or a
// bad recipient stops the ceremony with nothing done.
func recipients(ctx context.Context, c *Config, ui UI) ([]*escrow.Recipient, error) {
	rs, _, err := resolveCustodians(ctx, c, ui, nil)
	return rs, err
}

// resolveCustodians returns each custodian's recipient and, for passphrase
// custodians, the identity that opens their share (nil for the others), so
// that the ceremony can open each passphrase share once at the table. given
// holds the recipients that custodians configured with "ask" gave before a
// stop (from the transcript): they are used, not asked again.
func resolveCustodians(ctx context.Context, c *Config, ui UI, given map[string]string) ([]*escrow.Recipient, []age.Identity, error) {
	var out []*escrow.Recipient
	var ids []age.Identity
	// Keys already taken, by the config's custodians first: a custodian
	// asked at the keyboard cannot give another custodian's key.
	taken := map[string]string{}
	for _, cu := range c.Escrow.Custodians {
		if r, err := escrow.ParseRecipient(cu.Recipient); err == nil {
			taken[r.Key] = cu.Name
		}
	}
	var passes [][]byte
	defer func() {
		for _, p := range passes {
			clear(p)
		}
	}()
	for i, cu := range c.Escrow.Custodians {
		p := fmt.Sprintf("escrow.custodians[%d]", i)
		if !cu.Passphrase {
			rec := cu.Recipient
			if rec == AskRecipient && given[cu.Name] != "" {
				rec = given[cu.Name]
				ui.Info(fmt.Sprintf("custodian %s: the recipient given before the stop is used, as the transcript records it: %s", cu.Name, rec))
			} else if rec == AskRecipient {
				var err error
				if rec, err = askRecipient(ctx, cu.Name, ui, taken); err != nil {
					return nil, nil, fmt.Errorf("%s: %w", p, err)
				}
			}
			r, err := escrow.ParseRecipient(rec)
			if err != nil {
				return nil, nil, fmt.Errorf("%s.recipient: %w", p, err)
			}
			taken[r.Key] = cu.Name
			out, ids = append(out, r), append(ids, nil)
			continue
		}
		pass, err := custodianPassphrase(ctx, c, &cu, p, ui)
		if err != nil {
			return nil, nil, err
		}
		for j, prev := range passes {
			if subtle.ConstantTimeCompare(prev, pass) == 1 {
				clear(pass)
				return nil, nil, fmt.Errorf("%s: custodian %q chose the same passphrase as custodian %q: each custodian chooses their own, or one person holds two shares; nothing was changed", p, cu.Name, passNames(c, j))
			}
		}
		passes = append(passes, append([]byte(nil), pass...))
		r, err := escrow.PassphraseRecipient(pass)
		if err != nil {
			clear(pass)
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
		id, err := escrow.PassphraseIdentity(pass)
		clear(pass)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
		out, ids = append(out, r), append(ids, id)
	}
	return out, ids, nil
}

func custodianPassphrase(ctx context.Context, c *Config, cu *CustodianConfig, p string, ui UI) ([]byte, error) {
	var pass []byte
	switch {
	case cu.PassphraseFile != "":
		b, err := secret.ReadFile(c.path(cu.PassphraseFile))
		if err != nil {
			return nil, fmt.Errorf("failed to read the passphrase file named by %s.passphrase_file: %w", p, err)
		}
		pass = b
	case cu.PassphraseEnv != "":
		v, ok := secret.TakeEnv(cu.PassphraseEnv)
		if !ok {
			return nil, fmt.Errorf("%s.passphrase_env names %s but it is not set: export it, or remove passphrase_env to be asked", p, cu.PassphraseEnv)
		}
		pass = v
	default:
		return askPassphrase(ctx, cu.Name, p, c.Ceremony.ID, ui)
	}
	if err := checkPassphrase(pass, cu.Name, c.Ceremony.ID); err != nil {
		clear(pass)
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return pass, nil
}

// passNames names the j-th passphrase custodian.
func passNames(c *Config, j int) string {
	for _, cu := range c.Escrow.Custodians {
		if cu.Passphrase {
			if j == 0 {
				return cu.Name
			}
			j--
		}
	}
	return ""
}

// ErrNoEscrow is returned by Run for a config without an escrow section.
var ErrNoEscrow = errors.New("escrow must be set: a ceremony escrows its keys with M-of-N custodians before anything is uploaded; add an escrow section (see README, Escrow and recovery)")

func custodians(ctx context.Context, s *state) (string, error) {
	if s.cfg.Escrow == nil {
		return "", ErrNoEscrow
	}
	if s.escrowed {
		return "the escrow was made before the restart", nil
	}
	rs, ids, err := resolveCustodians(ctx, s.cfg, s.ui, s.askedRecipients)
	if err != nil {
		return "", err
	}
	s.recipients, s.openers = rs, ids
	// A recipient given at the keyboard is recorded at once, so that a
	// resume uses it instead of asking again (and accepting another).
	for i, cu := range s.cfg.Escrow.Custodians {
		if cu.Recipient != AskRecipient || s.askedRecipients[cu.Name] != "" {
			continue
		}
		if err := s.record(&events.CustodianRecipient{Name: cu.Name, Recipient: rs[i].Public, Given: "typed at the keyboard"}); err != nil {
			return "", err
		}
	}
	e := s.cfg.Escrow
	if e.Threshold == 1 {
		s.ui.Info("WARNING: escrow threshold 1 (allow_single_custodian): any one custodian alone recovers every key")
	}
	return fmt.Sprintf("%d of %d custodians will be needed to recover", e.Threshold, len(e.Custodians)), nil
}

// escrowKeys makes the escrow before anything is uploaded: a fresh KEK split
// among the custodians, every key wrapped under it on the token, the blob
// and the sealed shares written, and every M-subset of the shares recombined
// and checked against the commitments and, on the token, against the blob.
func escrowKeys(ctx context.Context, s *state) (_ string, err error) {
	e := s.cfg.Escrow
	if s.escrowed {
		return "the escrow was made and checked before the restart", nil
	}
	// An attempt that stops after writing files leaves shares that no
	// recorded escrow uses: say so in the transcript, with who took one.
	var taken []string
	first := len(s.files)
	defer func() {
		if err != nil && len(s.files) > first {
			err = s.voidEscrow(s.files[first:], taken, err)
		}
	}()
	id := s.cfg.Ceremony.ID
	n := len(e.Custodians)
	defer func() { s.openers = nil }()
	sharing, err := escrow.Split(rand.Reader, e.Threshold, n)
	if err != nil {
		return "", err
	}
	defer sharing.Destroy()
	kek, err := sharing.KEK(id)
	if err != nil {
		return "", err
	}
	kekCheck, err := escrow.CheckValue(kek)
	if err != nil {
		clear(kek)
		return "", err
	}
	// The token's probe proved which mechanism computes RFC 5649 (it
	// refused the ceremony at open-token when none does).
	wrapMech, err := s.tok.EscrowMechanism()
	if err != nil {
		clear(kek)
		return "", err
	}
	kekKey, err := s.tok.ImportKEK(kek) // zeroes kek
	if err != nil {
		return "", err
	}
	defer func() { _ = s.tok.DestroyKey(kekKey) }()

	blob := &escrow.Blob{CeremonyID: id, Created: testOnlyNow().UTC(), Threshold: e.Threshold, Shares: n,
		Commitments: sharing.Commitments, KEKCheckValue: kekCheck}
	var keyData []events.EscrowKey
	for _, k := range s.keys {
		wrapped, err := s.tok.WrapKWP(kekKey, k.key)
		if err != nil {
			return "", err
		}
		// Unwrap on the token at once: the escrow must give back this key.
		cv, err := s.tok.KWPCheckValue(kekKey, wrapped)
		if err != nil {
			return "", fmt.Errorf("the escrowed copy of key %q does not unwrap: %w", k.cfg.Label, err)
		}
		if hex.EncodeToString(cv) != k.kcv {
			return "", fmt.Errorf("the escrowed copy of key %q has check value %x, the key has %s", k.cfg.Label, cv, k.kcv)
		}
		blob.Keys = append(blob.Keys, escrow.BlobKey{Label: k.cfg.Label, ID: hex.EncodeToString(k.id), KeyType: "AES-256",
			KMSKeyARNs: k.arns(), WrappedKey: wrapped, KeyCheckValue: k.kcv})
		keyData = append(keyData, events.EscrowKey{Label: k.cfg.Label, ID: hex.EncodeToString(k.id), KeyCheckValue: k.kcv, WrappedKeySHA256: evidence.Hash(wrapped)})
	}
	for i, c := range e.Custodians {
		blob.Custodians = append(blob.Custodians, escrow.BlobCustodian{Name: c.Name, Index: i + 1, RecipientType: s.recipients[i].Kind})
	}
	blobData, err := blob.Marshal()
	if err != nil {
		return "", err
	}
	blobPath, blobSum, err := s.writeFile("escrow.json", blobData)
	if err != nil {
		return "", err
	}
	written, err := escrow.ParseBlob(blobData)
	if err != nil {
		return "", err
	}

	var shares []*escrow.Share
	var custData []events.EscrowCustodian
	for i, c := range e.Custodians {
		sh, err := sharing.Share(i+1, id, c.Name, blobSum)
		if err != nil {
			return "", err
		}
		// Every share carries the blob as written, so that any M
		// custodians recover with their shares alone.
		if err := sh.Carry(written); err != nil {
			return "", err
		}
		shares = append(shares, sh)
		sealed, err := escrow.SealShare(sh, s.recipients[i], e.Armor)
		if err != nil {
			return "", err
		}
		// Check what is written, not only what is in memory: one stanza of
		// the custodian's kind, and a passphrase share opens to this share.
		if err := escrow.CheckSealed(sealed, s.recipients[i]); err != nil {
			return "", fmt.Errorf("share of custodian %q: %w", c.Name, err)
		}
		check := "one " + s.recipients[i].Kind + " recipient stanza"
		if i < len(s.openers) && s.openers[i] != nil {
			check += ", opened back with the passphrase"
			back, err := escrow.OpenShare(sealed, c.Name, s.openers[i])
			if err != nil || back.Value != sh.Value || back.Index != sh.Index {
				return "", fmt.Errorf("the sealed share of custodian %q does not open back to its share with the passphrase: %v", c.Name, err)
			}
		}
		// A share file is for its custodian's eyes only, until handed out.
		path, sum, err := s.writeFileMode(fmt.Sprintf("share-%d-%s.age", i+1, c.Name), sealed, 0o600)
		if err != nil {
			return "", err
		}
		custData = append(custData, events.EscrowCustodian{Name: c.Name, Index: i + 1, RecipientType: s.recipients[i].Kind, Recipient: s.recipients[i].Public,
			File: filepath.Base(path), FileSHA256: sum, SealedCheck: check})
	}

	// Recombine every M-subset: against the commitments and the KEK's check
	// value in escrow, and on the token against every wrapped key.
	subsets, err := blob.Public().CheckQuorum(shares, kekCheck, func(kek []byte) error {
		h, err := s.tok.ImportKEK(kek)
		if err != nil {
			return err
		}
		defer func() { _ = s.tok.DestroyKey(h) }()
		for _, k := range blob.Keys {
			cv, err := s.tok.KWPCheckValue(h, k.WrappedKey)
			if err != nil {
				return fmt.Errorf("key %q: %w", k.Label, err)
			}
			if hex.EncodeToString(cv) != k.KeyCheckValue {
				return fmt.Errorf("key %q unwraps to check value %x, want %s", k.Label, cv, k.KeyCheckValue)
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("the quorum check failed, nothing was uploaded: %w", err)
	}
	// Each custodian, in turn, takes their share file and confirms it.
	for i, c := range e.Custodians {
		d := &custData[i]
		if err := handOver(ctx, s.ui, c.Name, fmt.Sprintf("Custodian %s takes their share file %s and confirms it.", c.Name, d.File)); err != nil {
			return "", err
		}
		got, err := s.ui.Confirm(ctx, fmt.Sprintf("Custodian %s (%d of %d): take %s (sha256 %.16s…) and keep it safe; %d of %d shares recover the keys.",
			c.Name, i+1, n, d.File, d.FileSHA256, e.Threshold, n), c.Name)
		if err != nil {
			return "", fmt.Errorf("custodian %q did not confirm receiving their share: %w", c.Name, err)
		}
		d.Receipt = got.Record("custodian " + c.Name)
		taken = append(taken, c.Name)
	}
	if err := s.record(&events.Escrow{
		Threshold: e.Threshold, Shares: n, Custodians: custData,
		Group: escrow.Group, KDF: escrow.KDF, WrapScheme: escrow.WrapScheme, WrapMechanism: wrapMech,
		Commitments: sharing.Commitments, KEKCheckValue: kekCheck,
		File: filepath.Base(blobPath), FileSHA256: blobSum, Keys: keyData,
		Armor: e.Armor, ShareFormat: escrow.ShareFormat, QuorumCheck: "ok", SubsetsChecked: subsets,
	}); err != nil {
		return "", err
	}
	s.ui.Info(fmt.Sprintf("escrow %s: %d of %d, %d subsets recombined and checked; hand each custodian their share file, then run keyceremony recover --drill", filepath.Base(blobPath), e.Threshold, n, subsets))
	return fmt.Sprintf("%d key(s) escrowed %d-of-%d, all %d subsets checked", len(blob.Keys), e.Threshold, n, subsets), nil
}

// askRecipient has custodian name give their recipient at the keyboard,
// asking again (three tries) while it does not parse.
func askRecipient(ctx context.Context, name string, ui UI, taken map[string]string) (string, error) {
	if err := handOver(ctx, ui, name, fmt.Sprintf("Custodian %s gives the public recipient their share is sealed to.", name)); err != nil {
		return "", err
	}
	var last error
	for try := 0; try < 3; try++ {
		r, err := ui.Ask(ctx, fmt.Sprintf("Custodian %s: type or paste your age recipient (age1pq1… post-quantum, or age1…) or SSH public key (ssh-ed25519 …)", name))
		if err != nil {
			return "", err
		}
		rec, err := escrow.ParseRecipient(strings.TrimSpace(r))
		if err != nil {
			last = err
			ui.Info(fmt.Sprintf("custodian %s: that is not a recipient: %v", name, err))
			continue
		}
		if other, ok := taken[rec.Key]; ok {
			last = fmt.Errorf("that is custodian %s's key", other)
			ui.Info(fmt.Sprintf("custodian %s: that is custodian %s's key: each custodian gives their own", name, other))
			continue
		}
		r = strings.TrimSpace(r)
		ui.Info(fmt.Sprintf("custodian %s: recorded recipient %s", name, r))
		return r, nil
	}
	return "", fmt.Errorf("custodian %s gave no valid recipient in three tries: %w", name, last)
}

// askPassphrase has a custodian type a new passphrase twice at the keyboard;
// a short, weak or mistyped one is asked again, three tries in all.
func askPassphrase(ctx context.Context, name, p, ceremonyID string, ui UI) ([]byte, error) {
	if err := handOver(ctx, ui, name, fmt.Sprintf("Custodian %s chooses the passphrase their share is sealed to, out of sight of everyone else.", name)); err != nil {
		return nil, err
	}
	for try := 0; try < 3; try++ {
		pass, err := ui.Secret(ctx, fmt.Sprintf("Escrow passphrase of custodian %q (at least %d characters)", name, MinPassphrase))
		if err != nil {
			return nil, fmt.Errorf("%s: cannot ask custodian %q for a passphrase (%w): for a non-interactive run set %s.passphrase_env or passphrase_file", p, name, err, p)
		}
		if err := checkPassphrase(pass, name, ceremonyID); err != nil {
			clear(pass)
			ui.Info(fmt.Sprintf("custodian %s: %v", name, err))
			continue
		}
		again, err := ui.Secret(ctx, fmt.Sprintf("Custodian %q: the same passphrase again", name))
		if err != nil {
			clear(pass)
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		same := string(again) == string(pass)
		clear(again)
		if same {
			return pass, nil
		}
		clear(pass)
		ui.Info(fmt.Sprintf("custodian %s: the two passphrases differ: type it again", name))
	}
	return nil, fmt.Errorf("%s: custodian %q gave no matching, strong enough passphrase of at least %d characters in three tries: nothing was changed", p, name, MinPassphrase)
}

// voidEscrow records that an escrow attempt stopped after writing files
// (cause): its shares belong to no recorded escrow and are void. A resume
// moves the files aside and makes a new escrow; custodians who took a share
// of this attempt destroy it. The files are named without "file" keys: they
// are not evidence of the ceremony.
func (s *state) voidEscrow(files []events.File, taken []string, cause error) error {
	d := &events.EscrowVoid{SharesTakenBy: taken, Reason: "the escrow step stopped before it was recorded: " + cause.Error()}
	for _, f := range files {
		d.VoidFiles = append(d.VoidFiles, events.VoidFile{Name: f.Name, ContentSHA256: f.SHA256})
	}
	if d.SharesTakenBy == nil {
		d.SharesTakenBy = []string{}
	}
	// Signed at once, so that a resume trusts it and says these files
	// are void rather than unrecorded.
	if err := s.recordChange(d); err != nil {
		return fmt.Errorf("%w (and recording the void escrow failed: %v)", cause, err)
	}
	if len(taken) > 0 {
		s.ui.Info(fmt.Sprintf("the shares already taken by %s are void: they belong to no recorded escrow; destroy them", strings.Join(taken, ", ")))
	}
	return cause
}
