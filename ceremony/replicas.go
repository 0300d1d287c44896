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
	"github.com/keyceremony/keyceremony/transcripts/events"
	"github.com/keyceremony/keyceremony/wrap"
)

// Multi-Region keys (keys[].replicas). KMS never copies imported material
// between Regions: the ceremony creates the primary (MultiRegion=true,
// Origin EXTERNAL), replicates it into each Region (ReplicateKey), fetches
// each Region's own import parameters, wraps the material once per Region
// and imports it into the primary, then into each replica with
// EXISTING_KEY_MATERIAL and the primary's KeyMaterialId. A rotation imports
// NEW_KEY_MATERIAL into the primary, the same material into each replica,
// then rotates the primary (which rotates the replicas with it).

// replicaState is one replica Region of a multi-Region key: its KMS key,
// import parameters and bundle, and how far it got.
type replicaState struct {
	cfg    *ReplicaConfig
	region string
	arn    string
	// replicated says a trusted Replicate event records the replica.
	replicated bool
	// offline and offlineData are the params file of an offline ceremony.
	offline        *wrap.Params
	offlineData    []byte
	params         *wrap.Params
	paramsRecorded bool
	bundle         *wrap.Bundle
	imported       bool
	checked        bool
	res            ReplicaResult
}

// ReplicaResult is what a ceremony did for one replica Region of a key.
type ReplicaResult struct {
	Region    string
	KMSKeyARN string
	Bundle    string
	// ImportBy as in KeyResult, after an offline ceremony (the key's
	// UploadCommand takes this bundle too).
	ImportBy *time.Time
}

// newReplicas makes the state of k's configured replicas.
func newReplicas(k *KeyConfig) []*replicaState {
	var out []*replicaState
	for i := range k.Replicas {
		out = append(out, &replicaState{cfg: &k.Replicas[i], region: k.Replicas[i].Region})
	}
	return out
}

// replicaByARN returns k's replica whose KMS key is arn, or nil.
func (k *keyState) replicaByARN(arn string) *replicaState {
	for _, r := range k.replicas {
		if r.arn == arn {
			return r
		}
	}
	return nil
}

// arns lists the KMS keys k's material goes into: the key, then its
// replicas.
func (k *keyState) arns() []string {
	out := []string{k.arn}
	for _, r := range k.replicas {
		out = append(out, r.arn)
	}
	return out
}

// replicaARN is the ARN of the replica in region of the multi-Region key
// arn: the same key ID.
func replicaARN(arn, region string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 {
		return arn
	}
	parts[3] = region
	return strings.Join(parts, ":")
}

// checkReplicas checks, before anything changes, the replicas of k (an
// existing KMS key: keys[].kms_key_id): k must be a multi-Region primary;
// for a rotation each replica must exist and be Enabled, otherwise a
// replica that exists must be PendingImport (one that does not is made).
// It fetches (without recording) the import parameters of each replica
// that exists, so the endpoint is checked in every Region.
func (s *state) checkReplicas(ctx context.Context, k *keyState, d *awskms.Key) error {
	if d.MultiRegionType != "PRIMARY" {
		return fmt.Errorf("KMS key %s is not a multi-Region primary key, so it has no replicas: remove keys[].replicas, or use a key made with multi_region: true", d.ARN)
	}
	for _, r := range k.replicas {
		if r.replicated {
			continue
		}
		r.arn = replicaARN(d.ARN, r.region)
		rd, err := s.kms.In(r.region).Describe(ctx, r.arn)
		var ke *awskms.Error
		switch {
		case err != nil && errors.As(err, &ke) && ke.Code == "NotFoundException" && k.cfg.Rotate:
			return fmt.Errorf("KMS key %s has no replica in %s: a rotation imports the new material into existing replicas only; replicate it first (keyceremony replicate) or remove the Region from keys[].replicas", d.ARN, r.region)
		case err != nil && errors.As(err, &ke) && ke.Code == "NotFoundException":
			continue // the ceremony replicates it
		case err != nil:
			return err
		case k.cfg.Rotate && rd.State != "Enabled":
			return fmt.Errorf("KMS key %s is %s: a rotation imports new material into Enabled replicas; renew its material first (keyceremony renew)", r.arn, rd.State)
		case !k.cfg.Rotate && rd.State != "PendingImport":
			return fmt.Errorf("KMS key %s is %s, not PendingImport: a new ceremony makes new material, which KMS refuses for a replica that has had material; use a new key, or rotate it (keys[].rotate: true)", r.arn, rd.State)
		}
		if err := s.getReplicaParams(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// checkReplicaRegions refuses a replica in the primary's own Region.
func (s *state) checkReplicaRegions(region string) error {
	for _, k := range s.keys {
		for i, r := range k.replicas {
			if r.region == region {
				return fmt.Errorf("key %q: replicas[%d].region %s is the Region of the key itself: a replica lives in another Region", k.cfg.Label, i, region)
			}
		}
	}
	return nil
}

// replicateKey makes (or finds) each replica of k's primary that no
// trusted event records, and records it.
func (s *state) replicateKey(ctx context.Context, k *keyState) error {
	for _, r := range k.replicas {
		if r.replicated {
			continue
		}
		r.arn = replicaARN(k.arn, r.region)
		c := s.kms.In(r.region)
		ev := &events.Replicate{Label: k.cfg.Label, KMSKeyARN: k.arn, ReplicaRegion: r.region, ReplicaARN: r.arn}
		_, err := c.Describe(ctx, r.arn)
		var ke *awskms.Error
		switch {
		case err == nil && k.cfg.Create:
			ev.Adopted = "found in " + r.region + " after the process died before recording it"
		case err == nil:
		case errors.As(err, &ke) && ke.Code == "NotFoundException":
			arn, err := s.kms.Replicate(ctx, k.arn, r.region, fmt.Sprintf("keyceremony %s: %s (replica)", s.cfg.Ceremony.ID, k.cfg.Label))
			if err != nil {
				return err
			}
			if arn != r.arn {
				return fmt.Errorf("KMS made the replica of %s in %s as %s, not %s", k.arn, r.region, arn, r.arn)
			}
			if err := waitCreated(ctx, c, arn); err != nil {
				return err
			}
			ev.Created = true
		default:
			return err
		}
		if err := s.locked(func() error { r.replicated = true; return s.recordChange(ev) }); err != nil {
			return err
		}
	}
	return nil
}

// waitCreated waits while a new replica is Creating (ReplicateKey returns
// before AWS KMS has made it).
func waitCreated(ctx context.Context, c *awskms.Client, arn string) error {
	for i := 0; ; i++ {
		d, err := c.Describe(ctx, arn)
		if err != nil {
			return err
		}
		if d.State != "Creating" {
			return nil
		}
		if i == 60 {
			return fmt.Errorf("KMS key %s is still Creating after a minute: run the ceremony again to go on", arn)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// replicaNeedsParams says whether r needs (new) import parameters: not
// imported, and none recorded with the configured algorithm and key spec
// that stay valid for another hour.
func (s *state) replicaNeedsParams(r *replicaState) bool {
	alg, _ := wrap.ParseAlgorithm(s.cfg.KMS.WrappingAlgorithm)
	return !(r.imported || r.paramsRecorded && r.params.Algorithm == alg && r.params.KeySpec == s.cfg.KMS.WrappingKeySpec &&
		r.params.CheckValid(testOnlyNow().Add(time.Hour)) == nil)
}

// getReplicaParams fetches import parameters for r in its own Region,
// without recording them.
func (s *state) getReplicaParams(ctx context.Context, r *replicaState) error {
	p, err := s.newParams(ctx, s.kms.In(r.region), r.arn)
	if err != nil {
		return err
	}
	r.params, r.paramsRecorded, r.bundle = p, false, nil
	return nil
}

// fetchReplicaParams writes and records r's import parameters: those
// fetched when the endpoint was checked, if still valid for an hour, else
// new ones from r's Region.
func (s *state) fetchReplicaParams(ctx context.Context, k *keyState, r *replicaState) error {
	if r.paramsRecorded || r.params == nil || r.params.CheckValid(testOnlyNow().Add(time.Hour)) != nil {
		if err := s.getReplicaParams(ctx, r); err != nil {
			return err
		}
	}
	return s.locked(func() error {
		if err := s.writeParams(k.cfg.Label, r.params, "params-"+k.cfg.Label+"-"+r.region+".json"); err != nil {
			return err
		}
		r.paramsRecorded = true
		return nil
	})
}

// wrapReplicas wraps k's material for each replica that needs it.
func (s *state) wrapReplicas(ctx context.Context, k *keyState) (inHSM, host int, err error) {
	for _, r := range k.replicas {
		if r.imported || r.bundle != nil && r.bundle.ParamsValidTo.Equal(r.params.ValidTo) {
			continue
		}
		if !s.cfg.Offline() && r.params.CheckValid(testOnlyNow().Add(time.Hour)) != nil {
			if err := s.fetchReplicaParams(ctx, k, r); err != nil {
				return inHSM, host, err
			}
		}
		b, name, in, err := s.wrapFor(k, r.arn, r.params, "bundle-"+k.cfg.Label+"-"+r.region+".json")
		if err != nil {
			return inHSM, host, err
		}
		r.bundle, r.res.Bundle = b, name
		if in {
			inHSM++
		} else {
			host++
		}
	}
	return inHSM, host, nil
}

// importReplicas imports k's material, which the primary holds as
// KeyMaterialId mid, into each replica not yet imported, with that
// Region's bundle: EXISTING_KEY_MATERIAL naming mid, and KMS must answer
// with mid (the same material).
func (s *state) importReplicas(ctx context.Context, k *keyState, mid, desc, confirmation string) error {
	for _, r := range k.replicas {
		if r.imported {
			continue
		}
		if err := r.bundle.CheckValid(testOnlyNow()); err != nil {
			return err
		}
		req := awskms.ImportRequest{Bundle: r.bundle, ValidTo: k.validTo, Description: desc, Type: awskms.ImportExisting, MaterialID: mid}
		if _, err := importChecked(ctx, s.kms.In(r.region), req); err != nil {
			return err
		}
		data := importData(k, r.arn, mid, desc, req.Type, confirmation)
		if err := s.locked(func() error { r.imported = true; return s.recordChange(data) }); err != nil {
			return err
		}
	}
	return nil
}

// checkReplicas checks each imported replica as checkKey checks the
// primary, and that a ciphertext made in the replica's Region decrypts in
// the primary's: they are one multi-Region key.
func (s *state) checkReplicasInKMS(ctx context.Context, k *keyState) error {
	for _, r := range k.replicas {
		if r.checked {
			continue
		}
		c := s.kms.In(r.region)
		data, err := s.checkTarget(ctx, c, k, r.arn)
		if err != nil {
			return err
		}
		probe := []byte("keyceremony multi-Region check " + r.region)
		ct, err := c.Encrypt(ctx, r.arn, probe)
		if err != nil {
			return err
		}
		pt, err := s.kms.Decrypt(ctx, k.arn, ct)
		if err != nil {
			return fmt.Errorf("a ciphertext of %s does not decrypt with %s: %w", r.arn, k.arn, err)
		}
		if !slices.Equal(pt, probe) {
			return fmt.Errorf("a ciphertext of %s decrypts to something else with %s", r.arn, k.arn)
		}
		if err := s.locked(func() error { r.checked = true; return s.record(data) }); err != nil {
			return err
		}
	}
	return nil
}

// replayReplica takes into k what event data d, naming a replica of k,
// says was done; it reports whether d named one.
func (s *state) replayReplica(k *keyState, d events.Data) (bool, error) {
	if rep, ok := d.(*events.Replicate); ok {
		// In config order; an offline replica's Region comes from its
		// params file, read later.
		for _, r := range k.replicas {
			if !r.replicated && (r.region == rep.ReplicaRegion || r.region == "") {
				r.arn, r.region, r.replicated = rep.ReplicaARN, rep.ReplicaRegion, true
				break
			}
		}
		return true, nil
	}
	f := keyFactsOf(d)
	r := k.replicaByARN(f.arn)
	if r == nil || f.arn == k.arn {
		return false, nil
	}
	switch d := d.(type) {
	case *events.FetchParams:
		data, err := s.readRecorded(d.File, d.FileSHA256)
		if err != nil {
			return true, err
		}
		if r.params, err = wrap.ParseParams(data); err != nil {
			return true, fmt.Errorf("cannot resume: %s: %w", d.File, err)
		}
		r.bundle, r.paramsRecorded = nil, true
	case *events.Wrap:
		data, err := s.readRecorded(d.File, d.FileSHA256)
		if err != nil {
			return true, err
		}
		if r.bundle, err = wrap.ParseBundle(data); err != nil {
			return true, fmt.Errorf("cannot resume: %s: %w", d.File, err)
		}
		r.res.Bundle = filepath.Join(s.res.OutDir, d.File)
	case *events.Import:
		r.imported = true
	case *events.CheckImport:
		r.checked = true
	}
	return true, nil
}

// replicasDone reports whether every replica of k is imported.
func (k *keyState) replicasDone() bool {
	return !slices.ContainsFunc(k.replicas, func(r *replicaState) bool { return !r.imported })
}

// targetNote is what the plan and the script add to a key's KMS target: a
// multi-Region key and its replicas, a rotation.
func (k *KeyConfig) targetNote() string {
	var notes []string
	if k.MultiRegion {
		notes = append(notes, "multi-Region")
	}
	if len(k.Replicas) > 0 {
		var where []string
		for _, r := range k.Replicas {
			if r.Region != "" {
				where = append(where, r.Region)
			} else {
				where = append(where, "the key of "+filepath.Base(r.ParamsFile))
			}
		}
		notes = append(notes, "replicas: "+strings.Join(where, ", "))
	}
	if k.Rotate {
		notes = append(notes, "rotation to new material")
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}
