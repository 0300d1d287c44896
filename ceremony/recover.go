package ceremony

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/wrap"
)

// DrillToken is the label of the scratch SoftHSM token a drill recovers into.
const DrillToken = "keyceremony-drill"

// RecoverOptions describe a recovery from escrow, or a drill.
type RecoverOptions struct {
	// EscrowFile is the escrow blob (escrow.json) of the ceremony; when
	// empty, the blob the shares carry (format v2) is used.
	EscrowFile string
	// ShareFiles are the sealed shares brought by the custodians: at least
	// the threshold, each of a different custodian.
	ShareFiles []string
	// Identities open shares sealed to age (X25519, post-quantum) or SSH
	// keys.
	Identities []*escrow.Identity
	// Passphrases are tried on passphrase-sealed shares before the UI is
	// asked. Recover zeroes them.
	Passphrases [][]byte
	// Token is the target token. Ignored for a drill.
	Token *TokenConfig
	// Drill recovers into a scratch SoftHSM token made for the occasion and
	// destroyed afterwards; it touches no production token and no KMS.
	Drill bool
	// Transcript is the ceremony's original transcript: it is verified
	// against Pin, and the blob, every share (commitments, custodian name
	// and index, blob hash) and every recovered key check value must match
	// what it recorded. Only Pin.Insecure allows an unpinned transcript or
	// none.
	Transcript string
	Pin        Pin
	// OutDir receives the recovery transcript and files; existing files are
	// never overwritten.
	OutDir   string
	Operator string
	// Reimport, when set, wraps each recovered key for KMS and imports it
	// again into its KMS keys. Not allowed with Drill.
	Reimport *ReimportOptions
	// HostUnwrap unwraps each key (RFC 5649) in host memory and creates it
	// on the target token, for a token without a mechanism proven to unwrap
	// RFC 5649: the material is in host memory only for the call that
	// creates the token key, then zeroed. Recorded in the transcript.
	HostUnwrap bool
}

// ReimportOptions say how recovered keys go back into KMS.
type ReimportOptions struct {
	KMS awskms.Options
	// Algorithm is the KMS wrapping algorithm; empty chooses the best one
	// the token can do inside the HSM.
	Algorithm wrap.Algorithm
	KeySpec   string
	// AllowHostWrap lets the host wrap when the token cannot (the material
	// is then in host memory for a moment; see hsm.Token.WrapForKMS).
	AllowHostWrap bool
	// ValidFor is how long the re-imported material stays valid; 0 means it
	// does not expire.
	ValidFor time.Duration
}

// RecoverResult is what a recovery or drill leaves.
type RecoverResult struct {
	Drill bool
	// Confirmed reports whether the recovery was rooted in a transcript
	// pinned out of band ([Pin.Genuine]); PinnedBy says how it was pinned.
	Confirmed  bool
	PinnedBy   string
	Transcript string
	PublicKey  string
	SealHash   string
	// Custodians are the custodians whose shares were used; OpenedBy names,
	// for each, the identity that opened their share.
	Custodians []string
	OpenedBy   []string
	Keys       []RecoveredKey
}

// RecoveredKey is one key unwrapped from escrow.
type RecoveredKey struct {
	Label         string
	ID            string
	KeyCheckValue string
	KMSKeyARNs    []string
	// Reimported lists the KMS keys the material was imported into again.
	Reimported []string
}

// ErrDrillFailed wraps every error of a failed drill.
var ErrDrillFailed = errors.New("recovery drill FAILED")

type recovery struct {
	o *RecoverOptions
	// hostKEK is the KEK in host memory, for --host-unwrap only.
	hostKEK []byte
	ui      UI
	blob    *escrow.Blob
	blobSum string
	// blobName names where the blob came from, in messages.
	blobName string
	orig     *Original
	tr       *transcripts.Writer
	trPath   string
	ceremID  string
}

// Recover recovers the keys of an escrow from M custodians' shares into a
// token, rooted in the original transcript (o.Transcript, pinned by o.Pin):
// the blob (from o.EscrowFile, or the one the shares carry) must be the one
// it recorded; the shares are opened, each checked against its commitments,
// custodian name and index and sealed-to key (a bad share is named), and
// recombined into the KEK; the KEK is imported as a session key, and each key
// is unwrapped as a sensitive token key with its original label and CKA_ID,
// its check value compared with the blob's and the transcript's. With
// Reimport it then goes back into KMS. The recovery writes and seals its own
// transcript, which refers to the blob and the original transcript by hash
// and records what pinned the original and which identity opened each share.
//
// A drill (o.Drill) does the same into a scratch SoftHSM token and reports
// pass or fail; its errors wrap [ErrDrillFailed]. A drill sets SOFTHSM2_CONF
// for the process: run it where no other PKCS#11 module is loaded (the
// command line's recover --drill is its own process).
func Recover(ctx context.Context, o *RecoverOptions, ui UI) (res *RecoverResult, err error) {
	if o.Drill && o.Reimport != nil {
		return nil, errors.New("a drill touches no KMS: drop the re-import, or recover into a real token")
	}
	if !o.Drill && o.Token == nil {
		return nil, errors.New("recover needs a target token, or a drill")
	}
	// The token's selector (a URI may carry a PIN) is checked before
	// anything is read.
	if o.Token != nil {
		if err := o.Token.validate(); err != nil {
			return nil, err
		}
	}
	if o.Transcript == "" && !o.Pin.Insecure {
		return nil, errors.New("recover needs the original transcript (--transcript) and its signer pinned: the escrow and shares alone can be forged")
	}
	if o.Transcript == "" && o.EscrowFile == "" {
		return nil, errors.New("without the original transcript, recover needs the escrow blob (--escrow escrow.json)")
	}
	defer func() {
		for _, p := range o.Passphrases {
			clear(p)
		}
	}()
	r := &recovery{o: o, ui: ui}
	if o.Transcript != "" {
		if r.orig, err = OpenOriginal(o.Transcript, o.Pin); err != nil {
			return nil, err
		}
		r.ceremID = r.orig.Escrow.CeremonyID
	}
	// The escrow blob from --escrow, checked now; else the one the shares
	// carry, checked once they are open.
	if o.EscrowFile != "" {
		data, err := os.ReadFile(o.EscrowFile)
		if err != nil {
			return nil, fmt.Errorf("failed to read the escrow blob: %w", err)
		}
		b, err := escrow.ParseBlob(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.EscrowFile, err)
		}
		if err := r.useBlob(b, o.EscrowFile); err != nil {
			return nil, err
		}
	}
	if o.Drill {
		// A drill records its outcome, pass or fail, from the start.
		if err := r.begin(); err != nil {
			return nil, err
		}
		defer func() {
			if r.tr == nil {
				return
			}
			if err != nil {
				_ = r.tr.Append(o.Operator, &events.Drill{Result: "fail", Error: err.Error()})
				_ = r.tr.Close()
				err = fmt.Errorf("%w: %w", ErrDrillFailed, err)
			}
		}()
	}
	res, err = r.run(ctx)
	if err != nil && r.tr != nil && !o.Drill {
		_ = r.tr.Append(o.Operator, &events.Failed{StepID: "recover", Error: err.Error()})
		_ = r.tr.Close()
	}
	return res, err
}

// useBlob takes b (from file name) as the escrow to recover, after checking
// it against the original transcript.
func (r *recovery) useBlob(b *escrow.Blob, name string) error {
	sum, err := b.SHA256()
	if err != nil {
		return err
	}
	if r.orig != nil {
		if err := r.orig.CheckBlob(b, name); err != nil {
			return err
		}
	} else {
		r.ceremID = b.CeremonyID
	}
	r.blob, r.blobSum, r.blobName = b, sum, name
	return nil
}

func (r *recovery) begin() error {
	if r.tr != nil {
		return nil
	}
	if err := os.MkdirAll(r.o.OutDir, 0o700); err != nil {
		return fmt.Errorf("failed to create output directory: %w", err)
	}
	r.trPath = filepath.Join(r.o.OutDir, "transcript.jsonl")
	tr, err := transcripts.Create(r.trPath, transcripts.Header{CeremonyID: r.ceremID, Tool: ToolVersion(), Operator: r.o.Operator, Started: testOnlyNow().UTC()})
	if err != nil {
		return fmt.Errorf("%w: use a new --out directory for each recovery", err)
	}
	r.tr = tr
	mode := "recover"
	if r.o.Drill {
		mode = "drill"
	}
	// With a transcript, the escrow is the one it recorded (a blob from
	// --escrow was checked against it already; one carried by the shares
	// is checked once they are open).
	com, sum, file := r.commitments(), r.blobSum, "carried by the shares"
	if r.orig != nil {
		sum = r.orig.BlobSHA256
	}
	if r.o.EscrowFile != "" {
		file = filepath.Base(r.o.EscrowFile)
	}
	d := &events.Recovery{Mode: mode, EscrowFile: file, EscrowSHA256: sum, OriginalCeremonyID: r.ceremID,
		Threshold: com.Threshold, Shares: com.Shares, Commitments: com.Commitments}
	if r.orig != nil {
		r.orig.record(d)
	} else {
		d.PinnedBy, d.PinConfirmed = "nothing: no original transcript (--insecure-unpinned)", new(bool)
	}
	return r.tr.Append(r.o.Operator, d)
}

// commitments are what shares are checked against: the original
// transcript's, else the blob's.
func (r *recovery) commitments() *escrow.Commitments {
	if r.orig != nil {
		return &r.orig.Escrow
	}
	return r.blob.Public()
}

func (r *recovery) record(data events.Data) error {
	if err := r.begin(); err != nil {
		return err
	}
	return r.tr.Append(r.o.Operator, data)
}

// openShares opens every share file, and returns the shares with the
// identities that opened them.
func (r *recovery) openShares(ctx context.Context) ([]*escrow.Share, []*escrow.Identity, error) {
	var shares []*escrow.Share
	var openers []*escrow.Identity
	for _, f := range r.o.ShareFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to read share file: %w", err)
		}
		sh, id, err := OpenShareFile(ctx, data, f, r.o.Identities, r.o.Passphrases, r.ui)
		if err != nil {
			return nil, nil, err
		}
		shares, openers = append(shares, sh), append(openers, id)
	}
	return shares, openers, nil
}

// OpenShareFile opens one sealed share: with the passphrases given, then
// with the UI's Secret when it is passphrase-sealed, else with each of ids in
// turn. It returns the share and the identity that opened it. name names it
// in errors.
func OpenShareFile(ctx context.Context, data []byte, name string, ids []*escrow.Identity, passphrases [][]byte, ui UI) (*escrow.Share, *escrow.Identity, error) {
	if !escrow.NeedsPassphrase(data) {
		if len(ids) == 0 {
			return nil, nil, fmt.Errorf("%s is sealed to an age or SSH key: give the custodian's identity file with --identity", name)
		}
		var last error
		for _, id := range ids {
			sh, err := escrow.OpenShare(data, name, id)
			if err == nil {
				return sh, id, nil
			}
			if !errors.Is(err, escrow.ErrWrongIdentity) {
				return nil, nil, err
			}
			last = err
		}
		return nil, nil, last
	}
	for _, p := range passphrases {
		id, err := escrow.PassphraseIdentity(p)
		if err != nil {
			continue
		}
		if sh, err := escrow.OpenShare(data, name, id); err == nil {
			return sh, id, nil
		} else if !errors.Is(err, escrow.ErrWrongIdentity) {
			return nil, nil, err
		}
	}
	if ui == nil {
		return nil, nil, fmt.Errorf("%s: %w: no passphrase given opens it", name, escrow.ErrWrongIdentity)
	}
	pass, err := ui.Secret(ctx, fmt.Sprintf("Passphrase of share %s", filepath.Base(name)))
	if err != nil {
		if len(passphrases) > 0 {
			return nil, nil, fmt.Errorf("%s: %w: no passphrase given opens it", name, escrow.ErrWrongIdentity)
		}
		return nil, nil, fmt.Errorf("%s is sealed to a passphrase and it cannot be asked for (%w): give it with --passphrase-file", name, err)
	}
	defer clear(pass)
	id, err := escrow.PassphraseIdentity(pass)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	sh, err := escrow.OpenShare(data, name, id)
	return sh, id, err
}

// SSHPassphrase returns the callback an encrypted SSH identity calls, when a
// share is sealed to its key, for its passphrase: the first of passphrases
// that decrypts it, else the UI's Secret.
func SSHPassphrase(ctx context.Context, pemBytes []byte, file string, passphrases [][]byte, ui UI) func(ssh.PublicKey) ([]byte, error) {
	return func(ssh.PublicKey) ([]byte, error) {
		for _, p := range passphrases {
			if escrow.CheckSSHPassphrase(pemBytes, p) {
				return append([]byte(nil), p...), nil
			}
		}
		if ui == nil {
			return nil, fmt.Errorf("%s is encrypted and no passphrase given decrypts it", file)
		}
		p, err := ui.Secret(ctx, fmt.Sprintf("Passphrase of SSH key %s", filepath.Base(file)))
		if err != nil {
			return nil, fmt.Errorf("%s is encrypted and its passphrase cannot be asked for (%w): give it with --passphrase-file", file, err)
		}
		return p, nil
	}
}

func (r *recovery) run(ctx context.Context) (*RecoverResult, error) {
	o := r.o
	res := &RecoverResult{Drill: o.Drill}
	shares, openers, err := r.openShares(ctx)
	if err != nil {
		return nil, err
	}
	var used []events.ShareUsed
	for i, sh := range shares {
		res.Custodians = append(res.Custodians, sh.Custodian)
		res.OpenedBy = append(res.OpenedBy, openers[i].String())
		used = append(used, events.ShareUsed{Custodian: sh.Custodian, Index: sh.Index, File: filepath.Base(sh.File),
			OpenedBy: openers[i].Kind, OpenedByKey: openers[i].Key})
	}
	if r.blob == nil {
		if err := r.blobFromShares(shares); err != nil {
			return nil, err
		}
	}
	com := r.commitments()
	for i, sh := range shares {
		if err := r.checkShare(sh, openers[i]); err != nil {
			return nil, err
		}
	}
	kek, err := com.Recover(shares)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	defer func() { r.hostKEK = nil }()
	kcv, err := escrow.CheckValue(kek)
	if err != nil {
		return nil, err
	}
	if kcv != r.blob.KEKCheckValue {
		return nil, fmt.Errorf("the shares recombine to a KEK with check value %s, but %s was made under %s: the blob and the shares do not belong together", kcv, r.blobName, r.blob.KEKCheckValue)
	}
	r.ui.Info(fmt.Sprintf("%d share(s) of %s verified against the commitments; KEK check value %s matches the escrow", len(shares), strings.Join(res.Custodians, ", "), kcv))

	tok, tokInfo, cleanup, err := r.openTarget(ctx)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	// Refuse before writing anything if a key is already on the token.
	for _, bk := range r.blob.Keys {
		if _, err := tok.FindAESKey(bk.Label, nil); err == nil {
			return nil, fmt.Errorf("%w: token %q already holds a key labelled %q: recover into another token, or destroy the old key first", hsm.ErrKeyExists, tok.Info().Label, bk.Label)
		} else if !errors.Is(err, hsm.ErrKeyNotFound) {
			return nil, err
		}
	}
	// Unwrap with the mechanism the target token's probe proved computes
	// RFC 5649, whatever the vendor that made the escrow called theirs.
	unwrapWith := "host (recover --host-unwrap)"
	if !o.HostUnwrap {
		if unwrapWith, err = tok.RecoveryMechanism(); err != nil {
			return nil, fmt.Errorf("%w; recover with --host-unwrap, which unwraps each key in host memory only for the call that creates it on the token", err)
		}
	}
	// The re-import is checked (algorithm, token, KMS keys, parameters)
	// before anything is written to the token.
	var plan *reimportPlan
	if o.Reimport != nil {
		var arns []string
		for _, bk := range r.blob.Keys {
			arns = append(arns, bk.KMSKeyARNs...)
		}
		if plan, err = prepareReimport(ctx, tok, o.Reimport, arns); err != nil {
			return nil, err
		}
	}
	if err := r.record(&events.Shares{Used: used, KEKCheckValue: kcv, FeldmanCheck: "ok", Token: tokInfo, EscrowSHA256: r.blobSum,
		WrapScheme: r.blob.Wrapping(), Unwrap: unwrapWith, HostUnwrap: o.HostUnwrap}); err != nil {
		return nil, err
	}
	var kekKey *hsm.Key
	if o.HostUnwrap {
		r.hostKEK = kek
	} else {
		if kekKey, err = tok.ImportKEK(kek); err != nil {
			return nil, err
		}
		defer func() { _ = tok.DestroyKey(kekKey) }()
	}

	for _, bk := range r.blob.Keys {
		rk, key, err := r.recoverKey(tok, kekKey, bk)
		if err != nil {
			return nil, err
		}
		if plan != nil {
			for _, arn := range bk.KMSKeyARNs {
				if err := r.reimport(ctx, plan, tok, key, bk, arn); err != nil {
					return nil, err
				}
				rk.Reimported = append(rk.Reimported, arn)
			}
		}
		res.Keys = append(res.Keys, *rk)
	}
	if o.Drill {
		// Only a drill rooted in a transcript pinned out of band proves the
		// real escrow; any other says what it could not tell.
		result := "pass"
		if r.orig == nil || !r.orig.Genuine {
			result = "recovered, not confirmed: the original transcript's signer was not pinned out of band"
		}
		if err := r.record(&events.Drill{Result: result, Keys: len(res.Keys)}); err != nil {
			return nil, err
		}
	}
	signer, err := tok.Signer(r.signingKey(), true)
	if err != nil {
		return nil, err
	}
	pemBytes, err := hsm.PublicKeyPEM(signer.Public())
	if err != nil {
		return nil, err
	}
	pubPath := filepath.Join(o.OutDir, "signing-key.pem")
	if err := evidence.Create(pubPath, pemBytes, 0o644); err != nil {
		return nil, err
	}
	if err := r.record(&events.SigningKey{Label: r.signingKey(), File: filepath.Base(pubPath), FileSHA256: evidence.Hash(pemBytes), Scratch: &o.Drill}); err != nil {
		return nil, err
	}
	seal, err := r.tr.Seal(signer)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(r.trPath)
	if err != nil {
		return nil, err
	}
	if _, err := transcripts.VerifyBytes(data, transcripts.Options{Fingerprint: seal.Fingerprint}); err != nil {
		return nil, fmt.Errorf("the sealed recovery transcript does not verify: %w", err)
	}
	res.Transcript, res.PublicKey, res.SealHash = r.trPath, pubPath, evidence.Hash(data)
	res.PinnedBy = "nothing: no original transcript (--insecure-unpinned)"
	if r.orig != nil {
		res.Confirmed, res.PinnedBy = r.orig.Genuine, r.orig.PinnedBy
	}
	return res, nil
}

// blobFromShares takes the escrow blob the shares carry (format v2): the
// first one; every share is then checked to name that same blob.
func (r *recovery) blobFromShares(shares []*escrow.Share) error {
	for _, sh := range shares {
		if sh.Escrow != nil {
			return r.useBlob(sh.Escrow, "the escrow blob carried by "+filepath.Base(sh.File))
		}
	}
	return errors.New("these shares do not carry the escrow blob (made before keyceremony/share/v2): give the ceremony's escrow.json with --escrow")
}

// checkShare binds a share to its custodian and escrow: against the
// original transcript (commitments, name and index, blob hash) when there is
// one, and always against the blob: the custodian the blob lists for the
// share's index, and the blob the share was made with. A swapped blob (other
// KMS keys, other labels, other wrapped keys) is refused before anything is
// unwrapped.
func (r *recovery) checkShare(sh *escrow.Share, opener *escrow.Identity) error {
	if r.orig != nil {
		if err := r.orig.CheckShare(sh); err != nil {
			return err
		}
		if err := r.orig.CheckOpener(sh, opener); err != nil {
			return err
		}
	}
	bad := func(reason string, args ...any) error {
		return &escrow.ShareError{File: sh.File, Custodian: sh.Custodian, Index: sh.Index, Reason: fmt.Sprintf(reason, args...)}
	}
	if err := r.blob.Public().Verify(sh); err != nil {
		return err
	}
	if bc := r.blob.Custodian(sh.Index); bc == nil || bc.Name != sh.Custodian {
		return bad("names custodian %q, but %s gives share %d to another custodian: the share was relabelled; use the custodian's own share file", sh.Custodian, filepath.Base(r.blobName), sh.Index)
	}
	if sh.EscrowSHA256 != r.blobSum {
		return bad("was made with escrow blob sha256 %s, not %s (sha256 %s): use the escrow.json of its ceremony", short(sh.EscrowSHA256), filepath.Base(r.blobName), short(r.blobSum))
	}
	return nil
}

func (r *recovery) signingKey() string {
	if r.o.Drill || r.o.Token == nil || r.o.Token.SigningKey == "" {
		return "keyceremony-transcript"
	}
	return r.o.Token.SigningKey
}

// openTarget opens the target token, or makes and opens a scratch one.
func (r *recovery) openTarget(ctx context.Context) (*hsm.Token, events.TokenRef, func(), error) {
	if !r.o.Drill {
		if err := r.o.Token.refuseKeySelection("a recovery makes its keys from the escrow's labels"); err != nil {
			return nil, events.TokenRef{}, nil, err
		}
		tok, err := OpenToken(ctx, r.o.Token, r.ui)
		if err != nil {
			return nil, events.TokenRef{}, nil, err
		}
		in := tok.Info()
		return tok, events.TokenRef{Label: in.Label, Serial: in.Serial, Model: in.Model, Scratch: false}, func() { _ = tok.Close() }, nil
	}
	if _, err := os.Stat(hsm.DefaultModule); err != nil {
		return nil, events.TokenRef{}, nil, fmt.Errorf("%w: %s does not exist: a drill needs SoftHSM2 (Debian: apt-get install softhsm2)", hsm.ErrModuleNotFound, hsm.DefaultModule)
	}
	dir, stale, err := newScratchDir()
	for _, d := range stale {
		r.ui.Info("removed the scratch directory of a drill that did not finish: " + d)
	}
	if err != nil {
		return nil, events.TokenRef{}, nil, err
	}
	old, had := os.LookupEnv("SOFTHSM2_CONF")
	restore := func() {
		if had {
			os.Setenv("SOFTHSM2_CONF", old)
		} else {
			os.Unsetenv("SOFTHSM2_CONF")
		}
		os.RemoveAll(dir)
	}
	conf, err := hsm.ScratchConfig(dir)
	if err != nil {
		restore()
		return nil, events.TokenRef{}, nil, err
	}
	// SoftHSM reads its config at C_Initialize; the path is no secret.
	os.Setenv("SOFTHSM2_CONF", conf)
	pin, err := hsm.InitScratchToken(hsm.DefaultModule, DrillToken)
	if err != nil {
		restore()
		return nil, events.TokenRef{}, nil, err
	}
	tok, err := hsm.Open(hsm.Config{Module: hsm.DefaultModule, TokenLabel: DrillToken, PIN: pin})
	clear(pin)
	if err != nil {
		restore()
		return nil, events.TokenRef{}, nil, err
	}
	in := tok.Info()
	return tok, events.TokenRef{Label: in.Label, Serial: in.Serial, Model: in.Model, Scratch: true},
		func() { _ = tok.Close(); restore() }, nil
}

func (r *recovery) recoverKey(tok *hsm.Token, kekKey *hsm.Key, bk escrow.BlobKey) (*RecoveredKey, *hsm.Key, error) {
	id, _ := hex.DecodeString(bk.ID) // validated by ParseBlob
	var got string
	var key *hsm.Key
	var err error
	if r.hostKEK != nil {
		got, key, err = r.hostUnwrapKey(tok, bk, id)
	} else {
		got, key, err = r.tokenUnwrapKey(tok, kekKey, bk, id)
	}
	if err != nil {
		return nil, nil, err
	}
	d := &events.RecoverKey{Label: bk.Label, ID: bk.ID, KeyCheckValue: got, KMSKeyARNs: bk.KMSKeyARNs, MatchesEscrow: true}
	if r.orig != nil {
		want, ok := r.orig.KCVs[bk.Label]
		if !ok || want != got {
			return nil, nil, fmt.Errorf("key %q unwraps to check value %s, the original transcript recorded %q", bk.Label, got, want)
		}
		d.MatchesTranscript = true
	}
	d.TokenKey = events.KeyAttributes
	if r.o.Drill {
		d.TokenKey = "session,private,sensitive,extractable,no-encrypt,no-decrypt,no-sign,no-wrap,no-unwrap,no-derive"
	}
	if err := r.record(d); err != nil {
		return nil, nil, err
	}
	r.ui.Info(fmt.Sprintf("key %q recovered onto the token, key check value %s matches", bk.Label, got))
	return &RecoveredKey{Label: bk.Label, ID: bk.ID, KeyCheckValue: got, KMSKeyARNs: bk.KMSKeyARNs}, key, nil
}

// tokenUnwrapKey checks the wrapped key's check value on a session copy,
// then unwraps it as a token key.
func (r *recovery) tokenUnwrapKey(tok *hsm.Token, kekKey *hsm.Key, bk escrow.BlobKey, id []byte) (string, *hsm.Key, error) {
	cv, err := tok.KWPCheckValue(kekKey, bk.WrappedKey)
	if err != nil {
		return "", nil, fmt.Errorf("key %q: %w", bk.Label, err)
	}
	got := hex.EncodeToString(cv)
	if err := r.checkUnwrapped(bk, got); err != nil {
		return "", nil, err
	}
	// A drill's keys are session objects: gone with the session, never in
	// the scratch token's files.
	key, err := tok.UnwrapKWP(kekKey, bk.WrappedKey, bk.Label, id, !r.o.Drill)
	if err != nil {
		return "", nil, err
	}
	return got, key, checkTokenKey(tok, key, got)
}

// hostUnwrapKey unwraps the key in host memory (RFC 5649), checks it, and
// creates it on the token; the material is zeroed right after.
func (r *recovery) hostUnwrapKey(tok *hsm.Token, bk escrow.BlobKey, id []byte) (string, *hsm.Key, error) {
	material, err := wrap.KeyUnwrapPad(r.hostKEK, bk.WrappedKey)
	if err != nil {
		return "", nil, fmt.Errorf("%w: key %q: the escrow key-encryption key is not the one it was wrapped under, or the escrow file was changed (%v)", hsm.ErrUnwrap, bk.Label, err)
	}
	got, err := escrow.CheckValue(material)
	if err == nil {
		err = r.checkUnwrapped(bk, got)
	}
	if err != nil {
		clear(material)
		return "", nil, err
	}
	key, err := tok.ImportAESKey(material, bk.Label, id) // zeroes material
	if err != nil {
		return "", nil, err
	}
	return got, key, checkTokenKey(tok, key, got)
}

// checkUnwrapped compares the check value of an unwrapped key with the
// blob's and the original transcript's, before it goes onto the token.
func (r *recovery) checkUnwrapped(bk escrow.BlobKey, got string) error {
	if got != bk.KeyCheckValue {
		return fmt.Errorf("key %q unwraps to check value %s, the escrow says %s", bk.Label, got, bk.KeyCheckValue)
	}
	if r.orig != nil && r.orig.KCVs[bk.Label] != got {
		return fmt.Errorf("key %q unwraps to check value %s, the original transcript recorded %q", bk.Label, got, r.orig.KCVs[bk.Label])
	}
	return nil
}

// checkTokenKey checks that the recovered token key holds exactly the
// escrowed material.
func checkTokenKey(tok *hsm.Token, key *hsm.Key, want string) error {
	back, err := tok.CheckValue(key)
	if err != nil {
		return err
	}
	if hex.EncodeToString(back) != want {
		return fmt.Errorf("the recovered token key %q has check value %x, the escrow says %s", key.Label, back, want)
	}
	return nil
}

func (r *recovery) reimport(ctx context.Context, plan *reimportPlan, tok *hsm.Token, key *hsm.Key, bk escrow.BlobKey, arn string) error {
	if err := r.begin(); err != nil {
		return err
	}
	done, err := plan.reimportKey(ctx, tok, key, bk.Label, bk.KeyCheckValue, arn, r.o.OutDir, r.ceremID, r.tr.Hash())
	if err != nil {
		return err
	}
	if err := r.record(done.data); err != nil {
		return err
	}
	r.ui.Info(fmt.Sprintf("key %q imported again into %s (same key material %s), now %s", bk.Label, arn, short(done.data.KeyMaterialID), done.desc.State))
	return nil
}

func lastPart(arn string) string {
	if i := strings.LastIndexAny(arn, "/:"); i >= 0 {
		return arn[i+1:]
	}
	return arn
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	if h == "" {
		return "nothing"
	}
	return h
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
