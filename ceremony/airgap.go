package ceremony

// The air-gap flow splits a ceremony over three commands: FetchParams
// (online) writes a params file, WrapOffline (offline: it never loads an AWS
// configuration nor opens a connection) turns it into a bundle with the
// token, and Upload (online) imports the bundle.

import (
	"bytes"

	"github.com/keyceremony/keyceremony/transcripts/events"

	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/wrap"
)

// FetchParams asks KMS for import parameters for keyID (online) and checks
// them: an RSA public key of the asked size and a ParametersValidTo in the
// future.
//
// A key ARN names its Region, which wins over o.Region: a multi-Region
// key's replica gives parameters only in its own Region. The parameters
// carry what DescribeKey said of the key (state, current KeyMaterialId,
// multi-Region role) as a hint for the offline room.
func FetchParams(ctx context.Context, o awskms.Options, keyID string, alg wrap.Algorithm, spec string) (*wrap.Params, error) {
	if !wrap.ValidKeySpec(spec) {
		return nil, fmt.Errorf("wrapping key spec %q must be one of RSA_2048, RSA_3072, RSA_4096", spec)
	}
	if r := arnRegion(keyID); r != "" {
		o.Region = r
	}
	c, err := awskms.New(ctx, o)
	if err != nil {
		return nil, err
	}
	d, err := c.Describe(ctx, keyID)
	if err != nil {
		return nil, err
	}
	if d.Origin != "EXTERNAL" {
		return nil, fmt.Errorf("KMS key %s has origin %s: key material can only be imported into a key with Origin EXTERNAL; fetch the parameters of such a key", d.ARN, d.Origin)
	}
	p, err := c.GetParameters(ctx, keyID, alg, spec)
	if err != nil {
		return nil, err
	}
	if err := p.CheckValid(testOnlyNow()); err != nil {
		return nil, err
	}
	p.AtFetch = &wrap.KeyHint{State: d.State, KeyMaterialID: d.CurrentMaterialID, MultiRegionType: d.MultiRegionType, Replicas: d.Replicas}
	return p, nil
}

// WrapPlan is an offline wrap of one existing token key for KMS.
type WrapPlan struct {
	// CeremonyID names the wrap in its transcript; empty means
	// "wrap-" + KeyLabel.
	CeremonyID string
	// Operator is the person at the keyboard.
	Operator string
	// Token chooses the token and the PIN source (never a flag).
	Token TokenConfig
	// KeyLabel is the CKA_LABEL of the AES key to wrap, and KeyID its
	// CKA_ID; one is enough when it names one key. A token URI's object,
	// id and type select the key too, and must agree with these.
	KeyLabel string
	KeyID    []byte
	// AcceptKeyUsage wraps a key that is not sensitive or allows encrypt,
	// decrypt, sign or derive; AcceptedBy names the flag, for the
	// transcript.
	AcceptKeyUsage bool
	AcceptedBy     string
	// Params are the import parameters carried in, and ParamsFile the bytes
	// they were read from (its hash goes into the transcript header).
	Params     *wrap.Params
	ParamsFile []byte
	// ParamsSource describes where Params came from, for the transcript
	// ("keyceremony params file", "aws kms get-parameters-for-import
	// output", "PublicKey.bin + ImportToken.bin").
	ParamsSource string
	// OutDir receives transcript.jsonl, bundle-LABEL.json,
	// EncryptedKeyMaterial.bin, ImportToken.bin and signing-key.pem. It is
	// created if missing; existing files are never overwritten.
	OutDir string
	// AllowHostWrap and HostWrapAllowedBy: see KMSConfig.
	AllowHostWrap     bool
	HostWrapAllowedBy string
	// WrappingKeySHA256 pins the wrapping public key Params must carry (hex
	// SHA-256 of its DER, as params fetch prints it). Required unless
	// UnpinnedAllowedBy names the option that waived it.
	WrappingKeySHA256 string
	UnpinnedAllowedBy string
}

// ErrWrappingKeyMismatch is wrapped by the error of a params file whose
// wrapping public key is not the pinned one.
var ErrWrappingKeyMismatch = errors.New("wrapping key is not the pinned one")

// checkPin compares the wrapping public key pub (DER) with a pinned hex
// SHA-256; what names the parameters in the error.
func checkPin(what string, pub []byte, pin string) error {
	got := sha256Hex(pub)
	if strings.EqualFold(got, pin) {
		return nil
	}
	return fmt.Errorf("%w: the wrapping key of %s has sha256 %.16s…, not the pinned %.16s…: they are not what params fetch wrote, or the pin was mistyped; fetch the parameters again", ErrWrappingKeyMismatch, what, got, pin)
}

// keyFromURI takes the key selection of the token URI (object, id, type):
// it must agree with KeyLabel and KeyID where both are given.
func (plan *WrapPlan) keyFromURI() error {
	if plan.Token.URI == "" {
		return nil
	}
	u, err := hsm.ParseURI(plan.Token.URI)
	if err != nil {
		return fmt.Errorf("token URI: %w", err)
	}
	if u.Type != "" && u.Type != "secret-key" {
		return fmt.Errorf("token URI: type=%s, but wrap wraps a secret key (type=secret-key)", u.Type)
	}
	if u.Object != "" {
		if plan.KeyLabel != "" && plan.KeyLabel != u.Object {
			return fmt.Errorf("the URI's object=%q and --key %q name different keys: give one", u.Object, plan.KeyLabel)
		}
		plan.KeyLabel = u.Object
	}
	if len(u.ID) > 0 {
		if len(plan.KeyID) > 0 && !bytes.Equal(plan.KeyID, u.ID) {
			return fmt.Errorf("the URI's id=%x and --key-id %x name different keys: give one", u.ID, plan.KeyID)
		}
		plan.KeyID = u.ID
	}
	return nil
}

// keyData is the transcript's "key" event of a wrap: the key, its
// attributes, and who accepted its usage when it allows any.
func keyData(key *hsm.Key, kcv string, f hsm.KeyFacts, acceptedBy string) *events.Key {
	d := &events.Key{Label: key.Label, ID: hex.EncodeToString(key.ID), KeyCheckValue: kcv, Attributes: events.Raw(f)}
	if u := f.Usage(); len(u) > 0 {
		d.Usage, d.UsageAcceptedBy = u, acceptedBy
	}
	return d
}

// WrapResult is what an offline wrap leaves.
type WrapResult struct {
	Transcript           string
	Bundle               string
	EncryptedKeyMaterial string
	ImportToken          string
	PublicKey            string
	SealHash             string
	Fingerprint          string
	KeyCheckValue        string
	InHSM                bool
	Method               string
	HostReason           string
}

// UploadCommand is the complete upload command for the bundle, with the
// expiry flags expiry.
func (r *WrapResult) UploadCommand(expiry string) string {
	return uploadCommand([]string{r.Bundle}, r.Transcript, r.Fingerprint, expiry)
}

// WrapOffline wraps an existing token key under the KMS public key of
// plan.Params, writes the bundle and AWS CLI files, and seals a transcript
// of it on the token. It uses no network and reads no AWS configuration.
//
// Expired parameters are refused (an error wrapping [wrap.ErrParamsExpired])
// before the token is opened. Nothing is written until the wrap succeeded.
func WrapOffline(ctx context.Context, plan *WrapPlan, ui UI) (*WrapResult, error) {
	p := plan.Params
	if err := p.CheckValid(testOnlyNow()); err != nil {
		return nil, err
	}
	pub, err := p.RSAPublicKey()
	if err != nil {
		return nil, err
	}
	switch {
	case plan.WrappingKeySHA256 != "":
		if err := checkPin("the import parameters", p.PublicKey, plan.WrappingKeySHA256); err != nil {
			return nil, err
		}
	case plan.UnpinnedAllowedBy == "":
		return nil, errors.New("the wrapping key is not pinned: give the SHA-256 params fetch printed")
	}
	if err := plan.keyFromURI(); err != nil {
		return nil, err
	}
	if plan.KeyLabel == "" && len(plan.KeyID) == 0 {
		return nil, errors.New("no key given: name the token key to wrap by label or id")
	}
	if plan.OutDir == "" {
		return nil, errors.New("no output directory given")
	}
	id := plan.CeremonyID
	if id == "" && plan.KeyLabel != "" {
		id = "wrap-" + plan.KeyLabel
	} else if id == "" {
		id = "wrap-" + hex.EncodeToString(plan.KeyID)
	}
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("ceremony id %q must be 1-64 letters, digits, '.', '_' or '-'", id)
	}
	if transcripts.Printable(plan.Operator) != plan.Operator {
		return nil, fmt.Errorf("operator %q must be printable text on one line: it is printed in the evidence", plan.Operator)
	}
	if err := plan.Token.validate(); err != nil {
		return nil, err
	}
	cfg := &Config{
		Ceremony: CeremonyConfig{ID: id, Operator: plan.Operator, OutDir: plan.OutDir},
		Token:    plan.Token,
		KMS:      KMSConfig{WrappingAlgorithm: string(p.Algorithm), WrappingKeySpec: p.KeySpec, AllowHostWrap: plan.AllowHostWrap, HostWrapAllowedBy: plan.HostWrapAllowedBy},
		dir:      ".",
		hash:     evidence.Hash(plan.ParamsFile),
	}
	s := &state{cfg: cfg, ui: ui, res: &Result{OutDir: cfg.OutDir(), Transcript: filepath.Join(cfg.OutDir(), "transcript.jsonl")}}
	defer func() {
		if s.tr != nil {
			_ = s.tr.Close()
		}
		if s.tok != nil {
			_ = s.tok.Close()
		}
	}()

	cfg.Token.KeyLabel, cfg.Token.KeyID = plan.KeyLabel, plan.KeyID
	tok, err := OpenToken(ctx, &cfg.Token, ui)
	if err != nil {
		return nil, err
	}
	s.tok = tok
	in := tok.Info()
	key, err := tok.FindKey(plan.KeyLabel, plan.KeyID)
	if err != nil {
		return nil, err
	}
	facts, err := tok.CheckForeignKey(key, plan.AcceptKeyUsage)
	if err != nil {
		return nil, err
	}
	plan.KeyLabel = key.Label
	kcvBytes, err := tok.CheckValue(key)
	if err != nil {
		return nil, err
	}
	kcv := hex.EncodeToString(kcvBytes)
	// Check again right before wrapping: the PIN prompt may have taken a while.
	if err := p.CheckValid(testOnlyNow()); err != nil {
		return nil, err
	}
	w, err := tok.WrapForKMS(key, pub, p.Algorithm, plan.AllowHostWrap)
	if err != nil {
		return nil, err
	}
	if !w.InHSM {
		ui.Info(fmt.Sprintf("key %q wrapped on the host (allowed by %s): %s", plan.KeyLabel, plan.HostWrapAllowedBy, w.HostReason))
	}

	// The wrap worked: from here on, everything is evidence.
	pd := &events.Params{Source: plan.ParamsSource, FileSHA256: cfg.hash, KMSKeyARN: p.KeyARN, Region: p.Region, WrappingAlgorithm: string(p.Algorithm),
		WrappingKeySpec: p.KeySpec, PublicKeySHA256: evidence.Hash(p.PublicKey), ImportTokenSHA256: evidence.Hash(p.ImportToken), ParametersValidTo: p.ValidTo}
	pd.WrappingKeyPinned, pd.UnpinnedAllowedBy = pinData(plan.WrappingKeySHA256 != "", plan.UnpinnedAllowedBy)
	for _, e := range []events.Data{
		&events.OpenToken{Label: in.Label, Serial: in.Serial, Manufacturer: in.Manufacturer, Model: in.Model, Module: in.Module},
		keyData(key, kcv, facts, plan.AcceptedBy),
		pd,
	} {
		if err := s.record(e); err != nil {
			return nil, err
		}
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	b := &wrap.Bundle{
		KeyARN: p.KeyARN, Region: p.Region, Algorithm: p.Algorithm, KeySpec: p.KeySpec,
		ImportToken: p.ImportToken, ParamsValidTo: p.ValidTo, EncryptedKeyMaterial: w.Ciphertext,
		KeyCheckValue: kcv, TranscriptHash: s.tr.Hash(),
	}
	data, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	res := &WrapResult{KeyCheckValue: kcv, InHSM: w.InHSM, Method: w.Method, HostReason: w.HostReason, Transcript: s.res.Transcript}
	// A key found by id may have a label that is no file name.
	fileLabel := plan.KeyLabel
	if !idRE.MatchString(fileLabel) {
		fileLabel = "id-" + hex.EncodeToString(key.ID)
	}
	bundlePath, bundleSum, err := s.writeFile("bundle-"+fileLabel+".json", data)
	if err != nil {
		return nil, err
	}
	ekmPath, ekmSum, err := s.writeFile("EncryptedKeyMaterial.bin", w.Ciphertext)
	if err != nil {
		return nil, err
	}
	itPath, itSum, err := s.writeFile("ImportToken.bin", p.ImportToken)
	if err != nil {
		return nil, err
	}
	res.Bundle, res.EncryptedKeyMaterial, res.ImportToken = bundlePath, ekmPath, itPath
	ev := wrapData(plan.KeyLabel, p.KeyARN, b, w, plan.HostWrapAllowedBy)
	ev.File, ev.FileSHA256 = filepath.Base(bundlePath), bundleSum
	ev.EncryptedKeyMaterialFile, ev.EncryptedKeyMaterialFileSHA256 = filepath.Base(ekmPath), ekmSum
	ev.ImportTokenFile, ev.ImportTokenFileSHA256 = filepath.Base(itPath), itSum
	if err := s.record(ev); err != nil {
		return nil, err
	}
	if _, err := seal(ctx, s); err != nil {
		return nil, err
	}
	res.PublicKey, res.SealHash, res.Fingerprint = s.res.PublicKey, s.res.SealHash, s.res.Fingerprint
	return res, nil
}

// Expiry says when imported material expires: exactly one field is set.
type Expiry struct {
	// ValidTo is an RFC 3339 time.
	ValidTo string
	// ValidFor is a duration such as "90d" or "2160h".
	ValidFor string
	// DoesNotExpire imports with KEY_MATERIAL_DOES_NOT_EXPIRE.
	DoesNotExpire bool
}

// validTo checks e (for the KMS key arn) as a config's expiry is checked
// and returns the ValidTo it asks for at now; nil means never.
func (e Expiry) validTo(arn string, now time.Time) (*time.Time, error) {
	kc := KeyConfig{Label: "bundle", KMSKeyID: arn, ValidTo: e.ValidTo, ValidFor: e.ValidFor, DoesNotExpire: e.DoesNotExpire}
	if err := kc.validate("expiry"); err != nil {
		return nil, fmt.Errorf("%w (flags --valid-to, --valid-for, --does-not-expire)", err)
	}
	return kc.validTo(now)
}

// UploadResult is what Upload did.
type UploadResult struct {
	KeyARN  string
	ValidTo *time.Time
	Check   *KeyCheck
	// Description is the KeyMaterialDescription sent to KMS.
	Description string
	// MaterialID is the KeyMaterialId KMS returned; Renewed says the key
	// already had that material (a renewal).
	MaterialID string
	Renewed    bool
	// Replica says the key is a multi-Region replica: it took the
	// material its primary has (EXISTING_KEY_MATERIAL with the primary's
	// KeyMaterialId), which is not a renewal.
	Replica bool
}

// UploadOptions say what Upload trusts and allows.
type UploadOptions struct {
	// Evidence is what the verified transcript of the bundle's ceremony
	// says about it ([VerifyBundle]): the key check value and transcript
	// hash in the KeyMaterialDescription come from it. Nil uploads an
	// unverified bundle, and the description says so.
	Evidence *BundleEvidence
	// AllowShorterExpiry lets an upload to a key that already has material
	// bring its expiry forward (ErrShorterExpiry otherwise).
	AllowShorterExpiry bool
}

// ErrShorterExpiry is wrapped by Upload's error when the import would make
// a key's material expire sooner than it does now.
var ErrShorterExpiry = errors.New("the upload would shorten the key's expiry")

// UnverifiedDescription is the KeyMaterialDescription of a bundle uploaded
// without checking it against its ceremony's transcript.
const UnverifiedDescription = "keyceremony UNVERIFIED bundle: no transcript checked"

// Upload imports a bundle into KMS (online) and then checks the key: state
// Enabled, expiry as asked, encrypt and decrypt. An expired import token is
// refused (an error wrapping [wrap.ErrParamsExpired]) before any call to
// KMS, and an import that would bring forward the expiry of a key that has
// material ([ErrShorterExpiry]) before any call that changes anything.
func Upload(ctx context.Context, o awskms.Options, b *wrap.Bundle, e Expiry, u UploadOptions) (*UploadResult, error) {
	now := testOnlyNow()
	if err := b.CheckValid(now); err != nil {
		return nil, err
	}
	vt, err := e.validTo(b.KeyARN, now)
	if err != nil {
		return nil, err
	}
	if o.Region == "" {
		o.Region = b.Region
	}
	c, err := awskms.New(ctx, o)
	if err != nil {
		return nil, err
	}
	before, err := c.Describe(ctx, b.KeyARN)
	if err != nil {
		return nil, err
	}
	if err := checkShorterExpiry(ctx, c, before, vt, u.AllowShorterExpiry); err != nil {
		return nil, err
	}
	desc := UnverifiedDescription
	if ev := u.Evidence; ev != nil {
		desc = "keyceremony kcv " + ev.KeyCheckValue + " transcript sha256:" + ev.TranscriptHash
	}
	// A key that had material takes only the same material again (a
	// renewal): import it as such and check KMS reports the same
	// KeyMaterialId back.
	req := awskms.ImportRequest{Bundle: b, ValidTo: vt, Description: desc}
	if before.CurrentMaterialID != "" {
		req.Type, req.MaterialID = awskms.ImportExisting, before.CurrentMaterialID
	}
	mid, err := importChecked(ctx, c, req)
	if err != nil {
		return nil, err
	}
	chk, err := CheckKey(ctx, o, b.KeyARN)
	if err != nil {
		return nil, err
	}
	d := chk.Key
	if !chk.EncryptDecrypt {
		return nil, fmt.Errorf("KMS key %s is %s after import, not Enabled", d.ARN, d.State)
	}
	if err := checkMaterialExpiry(ctx, c, d, mid, vt); err != nil {
		return nil, err
	}
	return &UploadResult{KeyARN: d.ARN, ValidTo: vt, Check: chk, Description: desc, MaterialID: mid,
		Renewed: before.CurrentMaterialID != "" && before.MultiRegionType != "REPLICA", Replica: before.MultiRegionType == "REPLICA"}, nil
}

// checkShorterExpiry refuses, unless allowed, an import that would make the
// current material of a key that has some (any state but PendingImport)
// expire sooner than it does now; vt nil means never. DescribeKey's ValidTo
// is the earliest expiry of all the key's materials, so a rotated key's
// current one is read from ListKeyRotations.
func checkShorterExpiry(ctx context.Context, c *awskms.Client, d *awskms.Key, vt *time.Time, allow bool) error {
	if allow || d.State == "PendingImport" || vt == nil {
		return nil
	}
	model, validTo := d.ExpirationModel, d.ValidTo
	ms, err := c.Materials(ctx, d.ARN)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.ID == d.CurrentMaterialID && m.ExpirationModel != "" {
			model, validTo = m.ExpirationModel, m.ValidTo
		}
	}
	now := "does not expire"
	if model == "KEY_MATERIAL_EXPIRES" {
		if validTo == nil || !vt.Before(*validTo) {
			return nil
		}
		now = "expires " + validTo.UTC().Format(time.RFC3339)
	}
	return fmt.Errorf("%w: KMS key %s is %s and its material %s; this upload would make it expire %s: nothing was imported; to shorten it anyway add --allow-shorter-expiry",
		ErrShorterExpiry, d.ARN, d.State, now, vt.UTC().Format(time.RFC3339))
}

// BundleEvidence is what the verified transcript of a bundle's ceremony
// says about it.
type BundleEvidence struct {
	CeremonyID string
	// TranscriptHash is the SHA-256 of the sealed transcript file.
	TranscriptHash string
	// KeyCheckValue is the one the transcript's wrap event recorded.
	KeyCheckValue string
	// Signer is the fingerprint of the key that sealed the transcript.
	Signer string
	// Label is the key the bundle holds; KMSKeyARN the KMS key its
	// ceremony recorded for it (the multi-Region primary, when the bundle
	// is for a replica), empty for a transcript of keyceremony wrap.
	Label     string
	KMSKeyARN string
	// Rotation says the ceremony meant the material as a rotation of
	// KMSKeyARN (keys[].rotate).
	Rotation bool
	// Replicas are the replica ARNs the ceremony recorded for the key, and
	// Bundles the bundle file of each of the key's KMS keys (ARN → file
	// name in the transcript's directory).
	Replicas []string
	Bundles  map[string]string
}

// VerifyBundle verifies a sealed transcript (the signer pinned by pub or
// fingerprint) and checks that it records a wrap of exactly this bundle
// file (its SHA-256): a bundle swapped on its way out of the room is
// refused before it reaches KMS. It returns what the transcript says
// about the bundle.
func VerifyBundle(transcript []byte, pub crypto.PublicKey, fingerprint string, bundle []byte) (*BundleEvidence, error) {
	evs, err := VerifyBundles(transcript, pub, fingerprint, []NamedFile{{Data: bundle}})
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// VerifyBundles is [VerifyBundle] for several bundles of one transcript,
// verified once; an error about one bundle starts with its Name.
func VerifyBundles(transcript []byte, pub crypto.PublicKey, fingerprint string, bundles []NamedFile) ([]*BundleEvidence, error) {
	if pub == nil && fingerprint == "" {
		return nil, errors.New("pin the transcript's signer with --fingerprint or --pubkey: a transcript checked against its own key proves nothing")
	}
	named := func(f NamedFile, err error) error {
		if f.Name == "" {
			return err
		}
		return fmt.Errorf("%s: %w", f.Name, err)
	}
	parsed := make([]*wrap.Bundle, len(bundles))
	for i, f := range bundles {
		b, err := wrap.ParseBundle(f.Data)
		if err != nil {
			return nil, named(f, err)
		}
		parsed[i] = b
	}
	res, err := transcripts.VerifyBytes(transcript, transcripts.Options{PublicKey: pub, Fingerprint: fingerprint})
	if err != nil {
		return nil, err
	}
	var out []*BundleEvidence
	for i, f := range bundles {
		ev, err := bundleEvidence(res, parsed[i], evidence.Hash(f.Data))
		if err != nil {
			return nil, named(f, err)
		}
		ev.TranscriptHash = evidence.Hash(transcript)
		out = append(out, ev)
	}
	return out, nil
}

// bundleEvidence finds the wrap event of the bundle b (whose file has
// SHA-256 sum) among the events of the verified transcript res, and what
// the transcript says of its key.
func bundleEvidence(res *transcripts.Result, b *wrap.Bundle, sum string) (*BundleEvidence, error) {
	var found *events.Wrap
	for _, e := range res.Events {
		if w, ok := e.Data.(*events.Wrap); ok && w.FileSHA256 == sum {
			found = w
			break
		}
	}
	if found == nil {
		return nil, fmt.Errorf("the bundle (sha256 %.16s…) is not one the transcript of ceremony %s recorded: it was changed or swapped on its way out; upload the bundle the ceremony wrote", sum, res.Header.CeremonyID)
	}
	kcv, arn := found.KeyCheckValue, found.KMSKeyARN
	if kcv == "" || kcv != b.KeyCheckValue || arn != b.KeyARN {
		return nil, fmt.Errorf("the transcript of ceremony %s records this bundle for %s with key check value %q, but the bundle says %s and %q: the ceremony wrote inconsistent evidence; do not upload it", res.Header.CeremonyID, arn, kcv, b.KeyARN, b.KeyCheckValue)
	}
	ev := &BundleEvidence{CeremonyID: res.Header.CeremonyID, KeyCheckValue: kcv, Signer: res.Seal.Fingerprint, Label: found.Label, Bundles: map[string]string{}}
	for _, e := range res.Events {
		switch d := e.Data.(type) {
		case *events.KMSKey:
			if d.Label == found.Label {
				ev.KMSKeyARN, ev.Rotation = d.KMSKeyARN, d.Rotation
			}
		case *events.Replicate:
			if d.Label == found.Label {
				ev.Replicas = append(ev.Replicas, d.ReplicaARN)
			}
		case *events.Wrap:
			if d.Label == found.Label {
				ev.Bundles[d.KMSKeyARN] = d.File // the last wrap for each counts
			}
		}
	}
	return ev, nil
}
