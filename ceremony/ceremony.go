// Package ceremony is keyceremony's engine: it runs a ceremony as an ordered
// list of steps over the token (package hsm), KMS (package awskms) and the
// transcript (package transcripts).
//
// The engine prints nothing and imports no terminal library. It talks to the
// people in the room only through a [UI]: the command line's non-interactive
// runner and the TUI both implement it.
package ceremony

import (
	"github.com/keyceremony/keyceremony/internal/evidence"

	"github.com/keyceremony/keyceremony/transcripts/events"

	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/secret"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/wrap"
)

// UI is how the engine reaches the people in the room.
type UI interface {
	// StepStarted says step i of n (1-based) begins.
	StepStarted(i, n int, s Step)
	// StepDone says step i of n finished, with a one-line public summary.
	StepDone(i, n int, s Step, summary string)
	// Secret asks for a secret (a PIN, a passphrase) without echo. The
	// engine zeroes the returned slice after use.
	Secret(ctx context.Context, prompt string) ([]byte, error)
	// Confirm asks the operator to confirm a dangerous action by typing
	// want (usually a key alias). It returns an error if they do not, and
	// otherwise how the confirmation was obtained: the transcript records
	// it as it happened.
	Confirm(ctx context.Context, prompt, want string) (Confirmation, error)
	// Info reports a public fact worth showing (never a secret).
	Info(msg string)
	// Progress reports done of total items of the current step (keys of
	// a batch), for a progress bar.
	Progress(done, total int)
	// Ask asks a person at the keyboard for a public value, shown as typed
	// (a custodian's recipient). A UI without a person returns an error.
	Ask(ctx context.Context, prompt string) (string, error)
}

// Confirmation says how a UI obtained a confirmation.
type Confirmation struct {
	// Typed is true when a person typed the text asked for; false when
	// nobody was asked (a non-interactive run, confirmed by its config).
	Typed bool
}

// NotAsked is what the transcript records for a confirmation nobody was
// asked for.
const NotAsked = "not asked (non-interactive)"

// Record is how the transcript records the confirmation: "typed by " +
// by, or [NotAsked].
func (c Confirmation) Record(by string) string {
	if c.Typed {
		return "typed by " + by
	}
	return NotAsked
}

// Step is one step of a ceremony.
type Step struct {
	// No is the step's number in the ceremony script (keyceremony script)
	// and in the transcript's events ("step_no").
	No int
	// ID is stable across versions: it names the step in transcripts.
	ID string
	// Title is what the UI shows.
	Title string
	run   func(ctx context.Context, s *state) (string, error)
}

// Steps returns the steps of a full connected ceremony (the "run" command),
// in order.
func Steps() []Step {
	steps := []Step{
		{ID: "custodians", Title: "Check the escrow custodians", run: custodians},
		{ID: "open-token", Title: "Open the token and log in", run: openToken},
		{ID: "kms-keys", Title: "Create or check the KMS keys", run: kmsKeys},
		// Import parameters before any key is generated: an endpoint that
		// does not offer the wrapping algorithm or key spec stops the
		// ceremony before key material exists.
		{ID: "fetch-params", Title: "Fetch KMS import parameters", run: fetchParams},
		{ID: "generate-keys", Title: "Generate key material on the token", run: generateKeys},
		{ID: "escrow", Title: "Escrow the keys to the custodians", run: escrowKeys},
		{ID: "wrap", Title: "Wrap the key material for KMS", run: wrapKeys},
		{ID: "import", Title: "Import the wrapped material into KMS", run: importKeys},
		{ID: "check-import", Title: "Check the keys in KMS", run: checkImport},
		{ID: "seal", Title: "Seal the transcript on the token", run: seal},
	}
	// Numbered by position: the script and the transcript use the same
	// numbers.
	for i := range steps {
		steps[i].No = i + 1
	}
	return steps
}

// Result is what a finished ceremony leaves.
type Result struct {
	OutDir     string
	Transcript string
	PublicKey  string
	Keys       []KeyResult
	// SealHash is the hex SHA-256 of the sealed transcript.
	SealHash string
	// Fingerprint is the SHA-256 of the DER public key that sealed the
	// transcript: write it down, and pin it wherever the transcript is
	// checked (verify --fingerprint, upload --fingerprint).
	Fingerprint string
	// Offline is true when the ceremony ran without KMS: the bundles are
	// to be uploaded with keyceremony upload.
	Offline bool
	// SealWords is the seal payload's SHA-256 as PGP words, to read aloud;
	// SealPayload and SealSignature are the files openssl and the
	// witnesses check.
	SealWords     string
	SealPayload   string
	SealSignature string
	// SetAside lists the files a resumed ceremony moved out of the way
	// (files of steps that did not finish, void escrow shares).
	SetAside []SetAside
}

// KeyResult describes one generated and imported key.
type KeyResult struct {
	Label         string
	ID            string
	KeyCheckValue string
	KMSKeyARN     string
	ValidTo       *time.Time
	// KeyMaterialID is the KeyMaterialId KMS returned for the import.
	KeyMaterialID string
	Bundle        string
	// UploadCommand, after an offline ceremony, is the complete command
	// that checks the bundle against the sealed transcript and imports it.
	UploadCommand string
	// ImportBy is when the import parameters of an offline ceremony's
	// bundle expire: upload it before then.
	ImportBy *time.Time
	// Replicas are the other Regions of a multi-Region key.
	Replicas []ReplicaResult
}

type keyState struct {
	// generated, imported and checked are what the transcript of a
	// resumed ceremony shows done.
	kmsRecorded, generated, imported, checked bool
	// nonce tags the KMS key created for this key, and genIntent says a
	// trusted event records that the key was about to be generated with
	// id (adopt.go).
	nonce     string
	genIntent bool
	// intentReplayed says the generate intent comes from the transcript of
	// a run that died (which may have made the key), not from this run.
	intentReplayed bool
	// paramsRecorded is false for import parameters fetched (to check the
	// endpoint before anything changes) but not yet written and recorded.
	paramsRecorded bool
	cfg            *KeyConfig
	// offline and offlineData are the params file of an offline ceremony.
	offline     *wrap.Params
	offlineData []byte
	id          []byte
	key         *hsm.Key
	kcv         string
	arn         string
	params      *wrap.Params
	bundle      *wrap.Bundle
	validTo     *time.Time
	res         KeyResult
	// materialID is the KeyMaterialId KMS returned for the import, and
	// rotated says a rotation ceremony's key was rotated to it.
	materialID string
	rotated    bool
	// replicas are the other Regions of a multi-Region key.
	replicas []*replicaState
}

type state struct {
	// mu serializes what the concurrent online steps write: transcript,
	// files list, UI (see eachKey).
	mu sync.Mutex
	// commits, while a batch step runs, signs one checkpoint for the change
	// events of several keys (groupCommit).
	commits *commits
	// pending holds events recorded before the transcript exists: a
	// ceremony writes nothing until its first change (see begin).
	pending []pendingEvent
	cfg     *Config
	ui      UI
	tok     *hsm.Token
	// keyIndex lists the token's secret keys (read once in open-token).
	keyIndex *hsm.KeyIndex
	kms      *awskms.Client
	tr       *transcripts.Writer
	keys     []*keyState
	res      *Result
	// recipients are the custodians' age recipients, in config order.
	recipients []*escrow.Recipient
	// openers open the passphrase custodians' shares once at the table
	// (nil for the other custodians); dropped after the escrow step.
	openers []age.Identity
	// stepNo is the script number of the running step and recorded the
	// number of events so far; signer seals the transcript (named in its
	// header); files lists every file written.
	stepNo   int
	recorded int
	signer   crypto.Signer
	files    []events.File
	// A resumed ceremony (see resume.go): the files its transcript names,
	// the script steps that have events, and what was done.
	resumed, escrowed, signingKeyWritten bool
	// resumeHeaderKey is the signing key the resumed transcript's header
	// names: the token's signing key must be that key.
	resumeHeaderKey *transcripts.SigningKey
	referenced      map[string]bool
	stepHadEvents   map[int]bool
	// tagged are the KMS keys tagged with this ceremony's ID, listed once
	// by a resume that has a KMS key to find (adopt.go).
	tagged *[]awskms.TaggedKey
	// voided names the files of escrow attempts recorded as void.
	voided map[string]bool
	// askedRecipients are the recipients custodians gave at the keyboard
	// before a stop, by name, from the transcript.
	askedRecipients map[string]string
	// goneKeys are labels the transcript records work for that the config
	// no longer lists, with what was done (amend.go).
	goneKeys map[string]string
}

type pendingEvent struct {
	stepNo int
	data   events.Data
}

// begin creates the output directory and the transcript, and writes the
// events recorded so far. Steps call it just before their first change (a
// KMS key created, a key generated), so that a ceremony stopped by bad input
// (wrong PIN, unknown token, bad key ARN) leaves nothing behind and can
// simply be run again.
func (s *state) begin() error {
	if s.tr != nil {
		return nil
	}
	if err := os.MkdirAll(s.res.OutDir, 0o700); err != nil {
		return fmt.Errorf("failed to create output directory: %w", err)
	}
	if err := evidence.SyncDir(filepath.Dir(s.res.OutDir)); err != nil {
		return err
	}
	h, err := s.header()
	if err != nil {
		return err
	}
	tr, err := transcripts.Create(s.res.Transcript, *h)
	if err != nil {
		return fmt.Errorf("%w: use a new ceremony.out_dir for each ceremony", err)
	}
	s.tr = tr
	for _, e := range s.pending {
		if err := s.tr.AppendStep(e.stepNo, s.cfg.Ceremony.Operator, e.data); err != nil {
			return err
		}
	}
	s.pending = nil
	return s.recordConfig()
}

// testOnlyNow replaces the clock in tests.
var testOnlyNow = time.Now

// Run runs a full ceremony. It writes the transcript first and records each
// step in it; on failure the transcript is left unsealed, as evidence of how
// far the ceremony got, and the error says which step failed.
func Run(ctx context.Context, cfg *Config, ui UI) (*Result, error) {
	out := cfg.OutDir()
	s := &state{cfg: cfg, ui: ui, res: &Result{OutDir: out, Transcript: filepath.Join(out, "transcript.jsonl")}, referenced: map[string]bool{}}
	defer func() {
		if s.tr != nil {
			_ = s.tr.Close()
		}
		if s.tok != nil {
			_ = s.tok.Close()
		}
	}()
	for i := range cfg.Keys {
		s.keys = append(s.keys, &keyState{cfg: &cfg.Keys[i], replicas: newReplicas(&cfg.Keys[i])})
	}
	// An unsealed transcript in out_dir is a ceremony to resume.
	if _, err := os.Stat(s.res.Transcript); err == nil {
		// The process died between the seal and the seal's files.
		if res, err := finishSeal(out, s.res.Transcript); res != nil || err != nil {
			if res != nil {
				ui.Info("the transcript was sealed; its seal files " + SealPayloadFile + " and " + SealSignatureFile + " were missing and are written now")
				ui.Info("seal words, to read aloud and write down: " + res.SealWords)
			}
			return res, err
		}
		if err := s.resume(); err != nil {
			return nil, &StepError{Step: "resume", Err: err}
		}
	}
	if err := s.preflight(testOnlyNow()); err != nil {
		return nil, &StepError{Step: "preflight", Err: err, Changed: s.tr != nil}
	}
	if cfg.Offline() {
		if err := s.loadOfflineParams(); err != nil {
			if s.tr != nil {
				_ = s.tr.Close()
			}
			return nil, &StepError{Step: "params", Err: err, Changed: s.tr != nil}
		}
		s.res.Offline = true
	}
	steps := Steps()
	for i, st := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.stepNo = st.No
		if err := s.checkStop(); err != nil {
			return nil, s.stopped(st, false)
		}
		ui.StepStarted(i+1, len(steps), st)
		recorded := s.recorded
		summary, err := st.run(ctx, s)
		if errors.Is(err, ErrInterrupted) {
			return nil, s.stopped(st, true)
		}
		if err != nil {
			if s.tr != nil {
				_ = s.tr.AppendStep(st.No, cfg.Ceremony.Operator, &events.Failed{StepID: st.ID, Error: err.Error()})
			}
			return nil, &StepError{Step: st.ID, Err: err, Changed: s.tr != nil}
		}
		// Every script step leaves an event bearing its number: one that
		// recorded nothing else records that it was done.
		if s.recorded == recorded && !s.stepHadEvents[st.No] {
			if err := s.record(&events.StepDone{ID: st.ID, Summary: summary}); err != nil {
				return nil, &StepError{Step: st.ID, Err: err, Changed: s.tr != nil}
			}
		}
		// Sign the chain head after every step once the transcript
		// exists: a resumed ceremony trusts only what a checkpoint covers.
		if s.tr != nil && s.signer != nil && st.ID != "seal" {
			if err := s.tr.Checkpoint(st.No, cfg.Ceremony.Operator, s.signer); err != nil {
				return nil, &StepError{Step: st.ID, Err: err, Changed: true}
			}
		}
		ui.StepDone(i+1, len(steps), st, summary)
	}
	for _, k := range s.keys {
		if s.res.Offline {
			bundles := []string{k.res.Bundle}
			for _, r := range k.replicas {
				bundles = append(bundles, r.res.Bundle)
			}
			k.res.UploadCommand = uploadCommand(bundles, s.res.Transcript, s.res.Fingerprint, k.cfg.expiryFlags())
			if k.bundle != nil {
				t := k.bundle.ParamsValidTo
				k.res.ImportBy = &t
			}
		}
		for _, r := range k.replicas {
			r.res.Region, r.res.KMSKeyARN = r.region, r.arn
			if s.res.Offline {
				if r.bundle != nil {
					t := r.bundle.ParamsValidTo
					r.res.ImportBy = &t
				}
			}
			k.res.Replicas = append(k.res.Replicas, r.res)
		}
		s.res.Keys = append(s.res.Keys, k.res)
	}
	return s.res, nil
}

// StepError says which step of a ceremony failed.
type StepError struct {
	Step string
	Err  error
	// Changed is false when the ceremony failed before changing anything
	// (no transcript, no key, no KMS call that creates): running it again
	// with the same config is safe.
	Changed bool
}

// Error names the step as the script and the screen number and title it
// ("step 2 (open the token and log in): …"), never by its internal id; a
// failure outside the script's steps (the checks before them, reading the
// transcript to resume) is its cause alone, which names what it is about.
func (e *StepError) Error() string {
	for _, s := range Steps() {
		if s.ID == e.Step {
			return fmt.Sprintf("step %d (%s): %v", s.No, strings.ToLower(s.Title[:1])+s.Title[1:], e.Err)
		}
	}
	return e.Err.Error()
}
func (e *StepError) Unwrap() error { return e.Err }

// ToolVersion names this build: module version and VCS revision when known.
func ToolVersion() string {
	v := "keyceremony (devel)"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = "keyceremony " + bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "+dirty"
		}
	}
	return v
}

// OpenToken opens the token a config names, asking the UI for the PIN when
// the config gives no PIN source. A PIN typed at the UI that the token
// refuses is asked for again, three tries in all, so that nothing done
// before (a custodian's recipient or passphrase) has to be done again. The
// PIN is zeroed before it returns.
func OpenToken(ctx context.Context, t *TokenConfig, ui UI) (*hsm.Token, error) {
	module, label, serial, _ := t.selector()
	var u *hsm.URI
	if t.URI != "" {
		u, _ = hsm.ParseURI(t.URI) // validated
	}
	const tries = 3
	for try := 1; ; try++ {
		pin, asked, err := readPIN(ctx, t, label+serial, ui, try, tries)
		if err != nil {
			return nil, err
		}
		tok, err := hsm.Open(hsm.Config{Module: module, InitArgs: t.InitArgs, TokenLabel: label, TokenSerial: serial, URI: u, PIN: pin, SealKey: hsm.SealKey(t.SealAlgorithm), ProbeAll: t.ProbeAll, KeyLabel: t.KeyLabel, KeyID: t.KeyID})
		clear(pin)
		if err == nil || !asked || !errors.Is(err, hsm.ErrWrongPIN) || try == tries {
			return tok, err
		}
		ui.Info(fmt.Sprintf("wrong PIN for token %q: nothing was changed; type the user PIN again (the token counts failed logins)", label+serial))
	}
}

// readPIN takes the PIN from token.pin_file, then token.pin_env, then
// $KEYCEREMONY_PIN, then asks the UI. Never from a flag or the config itself.
func readPIN(ctx context.Context, t *TokenConfig, token string, ui UI, try, tries int) (pin []byte, asked bool, err error) {
	_, _, _, pinFile := t.selector()
	if pinFile != "" {
		pin, err := secret.ReadFile(pinFile)
		if err != nil {
			return nil, false, fmt.Errorf("failed to read the PIN file named by token.pin_file: %w", err)
		}
		return pin, false, nil
	}
	env := t.PINEnv
	if env == "" {
		env = DefaultPINEnv
	}
	// Taken out of the environment once read: no child inherits it.
	if v, ok := secret.TakeEnv(env); ok {
		return v, false, nil
	}
	if t.PINEnv != "" {
		return nil, false, fmt.Errorf("token.pin_env names %s but it is not set: export it, or remove pin_env to be asked", t.PINEnv)
	}
	prompt := fmt.Sprintf("User PIN for token %q", token)
	if try > 1 {
		prompt += fmt.Sprintf(" (try %d of %d)", try, tries)
	}
	pin, err = ui.Secret(ctx, prompt)
	return pin, true, err
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ErrNoPIN is returned by a UI that cannot ask for a secret.
var ErrNoPIN = errors.New("no PIN available")
