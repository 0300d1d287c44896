package ceremony

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// RenewOptions describe the renewal of a token key's imported material:
// the same material imported again with a new expiry.
type RenewOptions struct {
	Token *TokenConfig
	// Label names the token key (its material is what KMS holds).
	Label string
	// KMSKeys are the KMS keys (ARNs) to renew, each holding that material.
	KMSKeys []string
	// Reimport says how: wrapping algorithm and key spec, expiry
	// (ValidFor 0: does not expire), host wrapping.
	Reimport ReimportOptions
	// OutDir receives the renewal transcript and bundles; it must not exist
	// or be empty.
	OutDir   string
	Operator string
	// ReplicaRegions, for Replicate: the Regions to replicate KMSKeys[0]
	// (a multi-Region primary) into before importing.
	ReplicaRegions []string
}

// RenewResult is what Renew did.
type RenewResult struct {
	Transcript    string
	PublicKey     string
	SealHash      string
	KeyCheckValue string
	// ARNs are the KMS keys imported into (the replicas, for Replicate).
	ARNs []string
	// MaterialIDs maps each KMS key to its (unchanged) KeyMaterialId.
	MaterialIDs map[string]string
	ValidTo     *time.Time
}

// Renew imports a token key's material again into its KMS keys with a new
// expiry: before anything is written it checks the token can wrap for KMS
// and fetches each key's import parameters; then for each KMS key it wraps
// on the token, imports as EXISTING_KEY_MATERIAL with the key's current
// KeyMaterialId and checks KMS reports that same KeyMaterialId back, the
// key Enabled and the new expiry. It records everything in a transcript in
// o.OutDir, sealed with the token's signing key.
func Renew(ctx context.Context, o *RenewOptions, ui UI) (*RenewResult, error) {
	if len(o.KMSKeys) == 0 {
		return nil, errors.New("renew needs at least one KMS key")
	}
	if ents, err := os.ReadDir(o.OutDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("output directory %s is not empty: use a new one for each renewal", o.OutDir)
	}
	tok, err := OpenToken(ctx, o.Token, ui)
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	key, err := tok.FindAESKey(o.Label, nil)
	if err != nil {
		return nil, fmt.Errorf("token %q: %w", tok.Info().Label, err)
	}
	raw, err := tok.CheckValue(key)
	if err != nil {
		return nil, err
	}
	kcv := hex.EncodeToString(raw)
	var replicated []*events.Replicate
	arns := o.KMSKeys
	if len(o.ReplicaRegions) > 0 {
		// The primary is checked first (wrap capability, parameters, its
		// material), then replicated.
		if _, err := prepareReimport(ctx, tok, &o.Reimport, o.KMSKeys); err != nil {
			return nil, err
		}
		if replicated, err = replicate(ctx, o); err != nil {
			return nil, err
		}
		arns = nil
		for _, r := range replicated {
			arns = append(arns, r.ReplicaARN)
		}
	}
	plan, err := prepareReimport(ctx, tok, &o.Reimport, arns)
	if err != nil {
		return nil, err
	}
	for _, arn := range arns {
		if plan.current[arn] == "" {
			return nil, fmt.Errorf("KMS key %s never had key material: a renewal imports the same material again; import it first with a ceremony or keyceremony upload", arn)
		}
	}

	if err := os.MkdirAll(o.OutDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create output directory: %w", err)
	}
	trPath := filepath.Join(o.OutDir, "transcript.jsonl")
	id := "renew-" + o.Label + "-" + testOnlyNow().UTC().Format("20060102T150405Z")
	tr, err := transcripts.Create(trPath, transcripts.Header{CeremonyID: id, Tool: ToolVersion(), Operator: o.Operator, Started: testOnlyNow().UTC()})
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	in := tok.Info()
	if err := tr.Append(o.Operator, &events.Renew{Label: o.Label, KeyCheckValue: kcv, KMSKeyARNs: arns,
		WrappingAlgorithm: string(plan.alg), WrappingKeySpec: o.Reimport.KeySpec, AllowHostWrap: o.Reimport.AllowHostWrap,
		Token: events.TokenRef{Label: in.Label, Serial: in.Serial, Model: in.Model}}); err != nil {
		return nil, err
	}
	for _, r := range replicated {
		if err := tr.Append(o.Operator, r); err != nil {
			return nil, err
		}
	}
	res := &RenewResult{KeyCheckValue: kcv, MaterialIDs: map[string]string{}, ARNs: arns}
	for _, arn := range arns {
		done, err := plan.reimportKey(ctx, tok, key, o.Label, kcv, arn, o.OutDir, id, tr.Hash())
		if err != nil {
			_ = tr.Append(o.Operator, &events.Failed{StepID: "reimport", Error: err.Error()})
			return nil, err
		}
		if err := tr.Append(o.Operator, done.data); err != nil {
			return nil, err
		}
		res.MaterialIDs[arn], res.ValidTo = done.data.KeyMaterialID, done.data.ValidTo
		ui.Info(fmt.Sprintf("key %q imported again into %s: same key material %s, %s", o.Label, arn, short(res.MaterialIDs[arn]), expiryText(res.ValidTo)))
	}
	return sealOnToken(tok, tr, trPath, signingKeyLabel(o.Token), res)
}

func expiryText(vt *time.Time) string {
	if vt == nil {
		return "does not expire"
	}
	return "valid to " + vt.UTC().Format(time.RFC3339)
}

func signingKeyLabel(t *TokenConfig) string {
	if t == nil || t.SigningKey == "" {
		return "keyceremony-transcript"
	}
	return t.SigningKey
}

// sealOnToken writes the signing key's public key beside the transcript,
// records it, seals the transcript with the token key label and verifies
// the sealed file.
func sealOnToken(tok *hsm.Token, tr *transcripts.Writer, trPath, label string, res *RenewResult) (*RenewResult, error) {
	signer, err := tok.Signer(label, true)
	if err != nil {
		return nil, err
	}
	pemBytes, err := hsm.PublicKeyPEM(signer.Public())
	if err != nil {
		return nil, err
	}
	pubPath := filepath.Join(filepath.Dir(trPath), "signing-key.pem")
	if err := evidence.Create(pubPath, pemBytes, 0o644); err != nil {
		return nil, err
	}
	if err := tr.Append("", &events.SigningKey{Label: label, File: filepath.Base(pubPath), FileSHA256: evidence.Hash(pemBytes)}); err != nil {
		return nil, err
	}
	seal, err := tr.Seal(signer)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(trPath)
	if err != nil {
		return nil, err
	}
	if _, err := transcripts.VerifyBytes(data, transcripts.Options{Fingerprint: seal.Fingerprint}); err != nil {
		return nil, fmt.Errorf("the sealed renewal transcript does not verify: %w", err)
	}
	res.Transcript, res.PublicKey, res.SealHash = trPath, pubPath, evidence.Hash(data)
	return res, nil
}

// replicate makes (or finds) a replica of the multi-Region primary
// o.KMSKeys[0] in each of o.ReplicaRegions and returns, per Region, the
// event data for the transcript.
func replicate(ctx context.Context, o *RenewOptions) ([]*events.Replicate, error) {
	primary := o.KMSKeys[0]
	clients := map[string]*awskms.Client{}
	pc, err := clientFor(ctx, clients, o.Reimport.KMS, primary)
	if err != nil {
		return nil, err
	}
	d, err := pc.Describe(ctx, primary)
	if err != nil {
		return nil, err
	}
	if !d.MultiRegion {
		return nil, fmt.Errorf("KMS key %s is not a multi-Region key: create it with keys[].multi_region: true", d.ARN)
	}
	var out []*events.Replicate
	for _, region := range o.ReplicaRegions {
		arn := replicaARN(d.ARN, region)
		rc, err := clientFor(ctx, clients, o.Reimport.KMS, arn)
		if err != nil {
			return nil, err
		}
		created := false
		if _, err := rc.Describe(ctx, arn); err != nil {
			var ke *awskms.Error
			if !errors.As(err, &ke) || ke.Code != "NotFoundException" {
				return nil, err
			}
			if arn, err = pc.Replicate(ctx, d.ARN, region, "keyceremony replica of "+d.ARN); err != nil {
				return nil, err
			}
			created = true
		}
		out = append(out, &events.Replicate{Label: o.Label, KMSKeyARN: d.ARN, ReplicaRegion: region, ReplicaARN: arn, Created: created})
	}
	return out, nil
}
