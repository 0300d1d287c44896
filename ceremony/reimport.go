package ceremony

import (
	"context"
	"errors"
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
	list := algorithmList(can)
	what := "any KMS wrapping algorithm"
	if want != "" {
		what = string(want)
	}
	return "", fmt.Errorf("%w: token %q cannot wrap with %s inside the HSM; inside the HSM it can do: %s; choose one of those with --wrapping-algorithm, or allow host wrapping with --allow-host-wrap",
		hsm.ErrMechanism, tok.Info().Label, what, list)
}

// algorithmList names the algorithms a token can do inside the HSM, for
// an error message.
func algorithmList(can []wrap.Algorithm) string {
	if len(can) == 0 {
		return "none"
	}
	names := make([]string, len(can))
	for i, a := range can {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// reimportPlan is what a re-import checked before anything was written:
// the algorithm, each KMS key's parameters and its current key material.
type reimportPlan struct {
	o       *ReimportOptions
	clients map[string]*awskms.Client // by Region
	alg     wrap.Algorithm
	params  map[string]*wrap.Params // by KMS key ARN
	current map[string]string       // KMS key ARN -> KeyMaterialId before
	// others lists, per KMS key, its other materials (NON_CURRENT newest
	// first): a token or escrow key may hold an older version.
	others map[string][]string
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
	p := &reimportPlan{o: o, clients: map[string]*awskms.Client{}, alg: alg, params: map[string]*wrap.Params{}, current: map[string]string{}, others: map[string][]string{}}
	now := testOnlyNow()
	for _, arn := range arns {
		// Each KMS key is reached in the Region its ARN names.
		c, err := clientFor(ctx, p.clients, o.KMS, arn)
		if err != nil {
			return nil, err
		}
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
		ms, err := c.Materials(ctx, arn)
		if err != nil {
			return nil, err
		}
		for i := len(ms) - 1; i >= 0; i-- {
			if ms[i].State == "NON_CURRENT" {
				p.others[arn] = append(p.others[arn], ms[i].ID)
			}
		}
	}
	return p, nil
}

// kms returns the client for the Region of arn (made by prepareReimport).
func (p *reimportPlan) kms(arn string) *awskms.Client {
	if c := p.clients[arnRegion(arn)]; c != nil {
		return c
	}
	return p.clients[p.o.KMS.Region]
}

// importSame imports r as the same material the KMS key already has: as
// its current material, else as one of its older (NON_CURRENT) versions,
// each named by its KeyMaterialId (KMS refuses a wrong one and changes
// nothing). It returns the KeyMaterialId tried and the one KMS returned.
func (p *reimportPlan) importSame(ctx context.Context, r awskms.ImportRequest) (tried, got string, err error) {
	arn := r.Bundle.KeyARN
	if p.current[arn] == "" {
		// The key's first material: KMS's default import type.
		got, err = p.kms(arn).ImportMaterial(ctx, r)
		return "", got, err
	}
	for i, id := range append([]string{p.current[arn]}, p.others[arn]...) {
		r.Type, r.MaterialID = awskms.ImportExisting, id
		got, err = p.kms(arn).ImportMaterial(ctx, r)
		var ke *awskms.Error
		if err != nil && errors.As(err, &ke) && ke.Code == "IncorrectKeyMaterialException" && i < len(p.others[arn]) {
			continue
		}
		return id, got, err
	}
	return "", "", errors.New("unreachable")
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
	desc := MaterialDescription(kcv, ceremonyID, transcriptHash)
	before, id, err := p.importSame(ctx, awskms.ImportRequest{Bundle: b, ValidTo: vt, Description: desc})
	if err != nil {
		return nil, err
	}
	if before != "" && id != before {
		return nil, fmt.Errorf("KMS key %s reports key material %s after the re-import, not %s: it did not take the same material", arn, id, before)
	}
	d, err := p.kms(arn).Describe(ctx, arn)
	if err != nil {
		return nil, err
	}
	if d.State != "Enabled" {
		return nil, fmt.Errorf("KMS key %s is %s after the re-import, not Enabled", arn, d.State)
	}
	// The imported version's own expiry (it may be an older version).
	ms, err := p.kms(arn).Materials(ctx, arn)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(ms, func(m awskms.Material) bool { return m.ID == id })
	switch {
	case i < 0 || ms[i].ImportState != "IMPORTED":
		return nil, fmt.Errorf("KMS key %s does not list key material %s as imported after the re-import", arn, id)
	case vt == nil && ms[i].ExpirationModel != "KEY_MATERIAL_DOES_NOT_EXPIRE":
		return nil, fmt.Errorf("KMS key %s has expiration model %s for key material %s after the re-import, want KEY_MATERIAL_DOES_NOT_EXPIRE", arn, ms[i].ExpirationModel, short(id))
	case vt != nil && (ms[i].ValidTo == nil || !ms[i].ValidTo.Equal(*vt)):
		return nil, fmt.Errorf("KMS key %s has ValidTo %v for key material %s after the re-import, want %s", arn, ms[i].ValidTo, short(id), vt.Format(time.RFC3339))
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
