package ceremony

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts/events"
	"github.com/keyceremony/keyceremony/wrap"
)

// preferredAlgorithms is the order in which an unset wrapping algorithm is
// chosen among those the token can do inside the HSM.
var preferredAlgorithms = []wrap.Algorithm{wrap.RSAAESKeyWrapSHA256, wrap.RSAESOAEPSHA256, wrap.RSAAESKeyWrapSHA1, wrap.RSAESOAEPSHA1}

// chooseWrapAlgorithm returns the wrapping algorithm for a re-import from
// tok with wrapping keys of spec: want if the token can do it inside the
// HSM (or host wrapping is allowed), else, when want is empty, the best one
// the token can do inside the HSM, as its probe (hsm.Token.Probe) proved on
// throw-away session objects: no key material, nothing written.
func chooseWrapAlgorithm(tok *hsm.Token, spec string, want wrap.Algorithm, allowHost bool) (wrap.Algorithm, error) {
	if !wrap.ValidKeySpec(spec) {
		return "", fmt.Errorf("wrapping key spec %q must be one of RSA_2048, RSA_3072, RSA_4096", spec)
	}
	can, err := tok.InHSMAlgorithms(nil) // the token probe proves what it computes
	if err != nil {
		return "", err
	}
	switch {
	case want != "" && (slices.Contains(can, want) || allowHost):
		return want, nil
	case want == "":
		for _, a := range preferredAlgorithms {
			if slices.Contains(can, a) {
				return a, nil
			}
		}
		if allowHost {
			return wrap.RSAESOAEPSHA256, nil
		}
	}
	names := make([]string, len(can))
	for i, a := range can {
		names[i] = string(a)
	}
	list := "none"
	if len(names) > 0 {
		list = strings.Join(names, ", ")
	}
	what := "any KMS wrapping algorithm"
	if want != "" {
		what = string(want)
	}
	return "", fmt.Errorf("%w: token %q cannot wrap with %s inside the HSM; inside the HSM it can do: %s; choose one of those with --wrapping-algorithm, or allow host wrapping with --allow-host-wrap",
		hsm.ErrMechanism, tok.Info().Label, what, list)
}

// reimportPlan is what a re-import checked before anything was written:
// the algorithm, each KMS key's parameters and its current key material.
type reimportPlan struct {
	o       *ReimportOptions
	kms     *awskms.Client
	alg     wrap.Algorithm
	params  map[string]*wrap.Params // by KMS key ARN
	current map[string]string       // KMS key ARN -> KeyMaterialId before
}

// prepareReimport checks, before anything is written to the token or KMS,
// that tok can wrap for KMS as o asks (choosing the algorithm when o leaves
// it unset) and that every KMS key exists, takes imported material and
// gives import parameters for it.
func prepareReimport(ctx context.Context, tok *hsm.Token, o *ReimportOptions, arns []string) (*reimportPlan, error) {
	alg, err := chooseWrapAlgorithm(tok, o.KeySpec, o.Algorithm, o.AllowHostWrap)
	if err != nil {
		return nil, err
	}
	c, err := awskms.New(ctx, o.KMS)
	if err != nil {
		return nil, err
	}
	p := &reimportPlan{o: o, kms: c, alg: alg, params: map[string]*wrap.Params{}, current: map[string]string{}}
	now := testOnlyNow()
	for _, arn := range arns {
		d, err := c.Describe(ctx, arn)
		if err != nil {
			return nil, err
		}
		if d.Origin != "EXTERNAL" {
			return nil, fmt.Errorf("KMS key %s has origin %s, not EXTERNAL: it takes no imported material", arn, d.Origin)
		}
		par, err := c.GetParameters(ctx, arn, alg, o.KeySpec)
		if err != nil {
			return nil, err
		}
		if err := par.CheckValid(now.Add(time.Hour)); err != nil {
			return nil, err
		}
		p.params[arn], p.current[arn] = par, d.CurrentMaterialID
	}
	return p, nil
}

// reimported is what reimportKey did, for the transcript.
type reimported struct {
	data *events.Reimport
	desc *awskms.Key
}

// reimportKey wraps key (label, kcv) for the KMS key arn with the planned
// parameters and imports it again as EXISTING_KEY_MATERIAL with the key's
// current KeyMaterialId; KMS must report the same KeyMaterialId back and
// the key must then be Enabled. The bundle is written to outDir;
// transcriptHash goes into the KeyMaterialDescription.
func (p *reimportPlan) reimportKey(ctx context.Context, tok *hsm.Token, key *hsm.Key, label, kcv, arn, outDir, ceremonyID, transcriptHash string) (*reimported, error) {
	par := p.params[arn]
	pub, err := par.RSAPublicKey()
	if err != nil {
		return nil, err
	}
	w, err := tok.WrapForKMS(key, pub, par.Algorithm, p.o.AllowHostWrap)
	if err != nil {
		return nil, err
	}
	b := &wrap.Bundle{KeyARN: arn, Region: par.Region, Algorithm: par.Algorithm, KeySpec: par.KeySpec, ImportToken: par.ImportToken,
		ParamsValidTo: par.ValidTo, EncryptedKeyMaterial: w.Ciphertext, KeyCheckValue: kcv, TranscriptHash: transcriptHash}
	data, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	name := filepath.Join(outDir, "bundle-"+label+"-"+lastPart(arn)+".json")
	if err := evidence.Create(name, data, 0o644); err != nil {
		return nil, err
	}
	var vt *time.Time
	if p.o.ValidFor > 0 {
		t := testOnlyNow().Add(p.o.ValidFor).UTC().Truncate(time.Second)
		vt = &t
	}
	before := p.current[arn]
	desc := MaterialDescription(kcv, ceremonyID, transcriptHash)
	req := awskms.ImportRequest{Bundle: b, ValidTo: vt, Description: desc, Type: awskms.ImportExisting, MaterialID: before}
	if before == "" {
		req.Type = "" // the key's first material: KMS's default
	}
	id, err := p.kms.ImportMaterial(ctx, req)
	if err != nil {
		return nil, err
	}
	if before != "" && id != before {
		return nil, fmt.Errorf("KMS key %s reports key material %s after the re-import, not %s: it did not take the same material", arn, id, before)
	}
	d, err := p.kms.Describe(ctx, arn)
	if err != nil {
		return nil, err
	}
	switch {
	case d.State != "Enabled":
		return nil, fmt.Errorf("KMS key %s is %s after the re-import, not Enabled", arn, d.State)
	case vt == nil && d.ExpirationModel != "KEY_MATERIAL_DOES_NOT_EXPIRE":
		return nil, fmt.Errorf("KMS key %s has expiration model %s after the re-import, want KEY_MATERIAL_DOES_NOT_EXPIRE", arn, d.ExpirationModel)
	case vt != nil && d.CurrentMaterialID == id && (d.ValidTo == nil || !d.ValidTo.Equal(*vt)):
		return nil, fmt.Errorf("KMS key %s has ValidTo %v after the re-import, want %s", arn, d.ValidTo, vt.Format(time.RFC3339))
	}
	ev := &events.Reimport{Label: label, KMSKeyARN: arn, WrappingAlgorithm: string(par.Algorithm), WrappingKeySpec: par.KeySpec,
		InHSM: w.InHSM, Method: w.Method, KeyCheckValue: kcv, File: filepath.Base(name), FileSHA256: evidence.Hash(data),
		KeyState: d.State, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE", KeyMaterialID: id, KeyMaterialIDBefore: before,
		KeyMaterialDescription: desc}
	if !w.InHSM {
		ev.HostReason = w.HostReason
	}
	if vt != nil {
		ev.ExpirationModel, ev.ValidTo = "KEY_MATERIAL_EXPIRES", vt
	}
	return &reimported{data: ev, desc: d}, nil
}
