package ceremony

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/wrap"
)

// An offline ceremony (every key has keys[].params_file) never reaches KMS
// and reads no AWS configuration: the import parameters come into the room
// as files (keyceremony params fetch, or AWS's CLI), and the wrapped bundles
// leave it as files for keyceremony upload. Its steps are the same as a
// connected ceremony's; kms-keys takes the ARNs from the params files, and
// import and check-import are left to the upload.

// loadOfflineParams reads every key's params file before anything happens,
// so that a missing, malformed or expired file changes nothing.
func (s *state) loadOfflineParams() error {
	var first *wrap.Params
	named := map[string]int{} // KMS key ARN → the first key whose params name it
	for i, k := range s.keys {
		path := s.cfg.path(k.cfg.ParamsFile)
		p, data, err := s.readParamsFile(fmt.Sprintf("keys[%d]", i), k.cfg.Label, path, k.cfg.WrappingKeySHA256, k.bundle == nil && !k.imported)
		if err != nil {
			return err
		}
		if first == nil {
			first = p
		} else if p.Algorithm != first.Algorithm || p.KeySpec != first.KeySpec {
			return fmt.Errorf("keys[%d].params_file %s is for %s with %s, another key's for %s with %s: fetch every key's parameters with one algorithm and key spec", i, path, p.Algorithm, p.KeySpec, first.Algorithm, first.KeySpec)
		}
		if err := checkFetchHint(fmt.Sprintf("keys[%d]", i), path, p, k.cfg.Rotate); err != nil {
			return err
		}
		if k.arn != "" && k.arn != p.KeyARN {
			return fmt.Errorf("keys[%d].params_file %s is for %s, but the transcript records %s for key %q", i, path, p.KeyARN, k.arn, k.cfg.Label)
		}
		// Two keys for one KMS key: the second upload would fail after the
		// first bound its material to the key for good.
		if j, ok := named[p.KeyARN]; ok {
			return fmt.Errorf("keys[%d].params_file %s is for KMS key %s, as keys[%d].params_file is: each key needs its own KMS key; fetch parameters for another key", i, path, p.KeyARN, j)
		}
		named[p.KeyARN] = i
		k.offline, k.offlineData = p, data
		for j, r := range k.replicas {
			if err := s.loadReplicaParams(fmt.Sprintf("keys[%d].replicas[%d]", i, j), k, r, first); err != nil {
				return err
			}
		}
		if err := checkRotationReplicas(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return err
		}
	}
	s.cfg.KMS.WrappingAlgorithm, s.cfg.KMS.WrappingKeySpec = string(first.Algorithm), first.KeySpec
	return nil
}

// checkFetchHint refuses, before anything happens, a key whose params file
// (path, for keys[i] named what) says its KMS key could not take what the
// ceremony makes: a rotation of a key that had no material, a replica,
// new material for a key that has some without rotate, or any new material
// for a key whose material expired or was deleted. The hint is what
// the key was when params fetch ran; upload checks it again.
func checkFetchHint(what, path string, p *wrap.Params, rotate bool) error {
	h := p.AtFetch
	switch {
	case h == nil:
		return nil
	case h.MultiRegionType == "REPLICA":
		return fmt.Errorf("%s.params_file %s is for %s, a multi-Region replica: a key's material goes into its primary first; fetch the primary's parameters for keys[].params_file and the replica's for keys[].replicas", what, path, p.KeyARN)
	case h.State == "PendingImport" && h.KeyMaterialID != "":
		// Its material expired or was deleted: KMS takes only that
		// material again, neither a first import nor a rotation.
		return fmt.Errorf("%s.params_file %s is for %s, which was PendingImport with key material %s when its parameters were fetched (expired or deleted): KMS takes only that material again; import it again (keyceremony renew, or recover --reimport), then fetch parameters for a rotation, or fetch parameters for a new key", what, path, p.KeyARN, h.KeyMaterialID)
	case rotate && h.State == "PendingImport":
		return fmt.Errorf("%s.params_file %s is for %s, which was PendingImport when its parameters were fetched: it has no material to rotate; remove rotate: true for its first import (or re-import its material first)", what, path, p.KeyARN)
	case rotate && h.State != "Enabled":
		return fmt.Errorf("%s.params_file %s is for %s, which was %s when its parameters were fetched: a rotation needs an Enabled key; enable it and fetch the parameters again", what, path, p.KeyARN, h.State)
	case !rotate && h.KeyMaterialID != "":
		return fmt.Errorf("%s.params_file %s is for %s, which had key material %s when its parameters were fetched: KMS refuses other material for it; add rotate: true to rotate it to new material, or fetch parameters for a new key", what, path, p.KeyARN, h.KeyMaterialID)
	}
	return nil
}

// checkRotationReplicas refuses a rotation of a multi-Region key (keys[i],
// named what) whose params file says it had replicas the config has no
// params file for: KMS rotates the primary only once every replica has the
// new material.
func checkRotationReplicas(what string, k *keyState) error {
	h := k.offline.AtFetch
	if !k.cfg.Rotate || h == nil {
		return nil
	}
	for _, arn := range h.Replicas {
		if !slices.ContainsFunc(k.replicas, func(r *replicaState) bool { return r.offline.KeyARN == arn }) {
			return fmt.Errorf("%s: KMS key %s had a replica %s when its parameters were fetched, and keys[].replicas has no params file for it: a rotation needs the new material in every replica; fetch its parameters (keyceremony params fetch --key %s) and add it to keys[].replicas", what, k.offline.KeyARN, arn, arn)
		}
	}
	return nil
}

// readParamsFile reads the params file at path, what (keys[i] or
// keys[i].replicas[j]) names in errors, for key label: parsed, its wrapping
// key checked against pin (or the missing pin warned about), and, when
// valid is set, its parameters not expired.
func (s *state) readParamsFile(what, label, path, pin string, valid bool) (*wrap.Params, []byte, error) {
	data, err := evidence.ReadFile(path, evidence.MaxFileSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.params_file: %w", what, err)
	}
	p, err := wrap.ParseParams(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s.params_file %s: %w", what, path, err)
	}
	if pin != "" {
		if err := checkPin(what+".params_file "+path, p.PublicKey, pin); err != nil {
			return nil, nil, err
		}
	} else {
		s.ui.Info(fmt.Sprintf("WARNING: key %q: the wrapping key of %s (sha256 %s) is NOT pinned (%s): compare it with what params fetch printed", label, filepath.Base(path), sha256Hex(p.PublicKey), UnpinnedOption))
	}
	if valid {
		if err := p.CheckValid(testOnlyNow()); err != nil {
			return nil, nil, fmt.Errorf("%s.params_file %s: %w", what, path, err)
		}
	}
	return p, data, nil
}

// loadReplicaParams reads the params file of replica r of k (what names
// it): pinned, valid, with the primary's algorithm and key spec, and for
// a replica of the primary (the same key ID in another Region).
func (s *state) loadReplicaParams(what string, k *keyState, r *replicaState, first *wrap.Params) error {
	path := s.cfg.path(r.cfg.ParamsFile)
	p, data, err := s.readParamsFile(what, k.cfg.Label, path, r.cfg.WrappingKeySHA256, r.bundle == nil && !r.imported)
	if err != nil {
		return err
	}
	switch {
	case p.Algorithm != first.Algorithm || p.KeySpec != first.KeySpec:
		return fmt.Errorf("%s.params_file %s is for %s with %s, another key's for %s with %s: fetch every key's parameters with one algorithm and key spec", what, path, p.Algorithm, p.KeySpec, first.Algorithm, first.KeySpec)
	case p.Region == k.offline.Region || replicaARN(k.offline.KeyARN, p.Region) != p.KeyARN || !strings.Contains(p.KeyARN, ":key/mrk-"):
		return fmt.Errorf("%s.params_file %s is for %s, which is not a replica of %s (a multi-Region key's replica has its key ID in another Region): fetch the parameters of the replica", what, path, p.KeyARN, k.offline.KeyARN)
	case r.arn != "" && r.arn != p.KeyARN:
		return fmt.Errorf("%s.params_file %s is for %s, but the transcript records %s", what, path, p.KeyARN, r.arn)
	case k.cfg.Rotate && p.AtFetch != nil && p.AtFetch.State != "Enabled":
		return fmt.Errorf("%s.params_file %s is for %s, which was %s when its parameters were fetched: a rotation imports new material into Enabled replicas; renew its material first (keyceremony renew), then fetch the parameters again", what, path, p.KeyARN, p.AtFetch.State)
	}
	r.offline, r.offlineData, r.region = p, data, p.Region
	return nil
}

// offlineKMSKeys records the KMS keys the params files name.
func offlineKMSKeys(s *state) (string, error) {
	for _, k := range s.keys {
		k.arn, k.res.KMSKeyARN = k.offline.KeyARN, k.offline.KeyARN
		if k.kmsRecorded {
			continue
		}
		if err := s.record(&events.KMSKey{Label: k.cfg.Label, KMSKeyARN: k.arn, Created: false, Region: k.offline.Region, Source: "params file", Rotation: k.cfg.Rotate}); err != nil {
			return "", err
		}
	}
	for _, k := range s.keys {
		for _, r := range k.replicas {
			if r.replicated {
				continue
			}
			r.arn, r.replicated = r.offline.KeyARN, true
			if err := s.record(&events.Replicate{Label: k.cfg.Label, KMSKeyARN: k.arn, ReplicaRegion: r.region, ReplicaARN: r.arn, Source: "params file"}); err != nil {
				return "", err
			}
		}
	}
	return fmt.Sprintf("offline: %d KMS key(s) named by the params files", len(s.keys)), nil
}

// offlineParams copies each params file into the evidence and records it.
func offlineParams(s *state) (string, error) {
	for n, k := range s.keys {
		if err := s.next(n); err != nil {
			return "", err
		}
		if k.imported || k.params != nil && k.bundle != nil {
			continue
		}
		p := k.offline
		if err := p.CheckValid(testOnlyNow()); err != nil {
			return "", err
		}
		k.params, k.bundle = p, nil
		if err := s.recordOfflineParams(k.cfg.Label, p, k.offlineData, k.cfg.ParamsFile, k.cfg.WrappingKeySHA256, "params-"+k.cfg.Label+".json"); err != nil {
			return "", err
		}
	}
	for _, k := range s.keys {
		for _, r := range k.replicas {
			if r.imported || r.params != nil && r.bundle != nil {
				continue
			}
			if err := r.offline.CheckValid(testOnlyNow()); err != nil {
				return "", err
			}
			r.params, r.bundle = r.offline, nil
			if err := s.recordOfflineParams(k.cfg.Label, r.offline, r.offlineData, r.cfg.ParamsFile, r.cfg.WrappingKeySHA256, "params-"+k.cfg.Label+"-"+r.region+".json"); err != nil {
				return "", err
			}
		}
	}
	return fmt.Sprintf("offline: parameters from the files, valid until %s", s.keys[0].offline.ValidTo.UTC().Format("2006-01-02T15:04:05Z")), nil
}

// recordOfflineParams copies the params file source (p, read as data) of
// key label into the evidence as base and records it, with its pin.
func (s *state) recordOfflineParams(label string, p *wrap.Params, data []byte, source, pin, base string) error {
	name, sum, err := s.writeFile(s.freshName(base), data)
	if err != nil {
		return err
	}
	d := &events.FetchParams{Label: label, KMSKeyARN: p.KeyARN, WrappingAlgorithm: string(p.Algorithm), WrappingKeySpec: p.KeySpec,
		PublicKeySHA256: hashHex(p.PublicKey), ImportTokenSHA256: hashHex(p.ImportToken), ParametersValidTo: p.ValidTo,
		Source: filepath.Base(source), File: filepath.Base(name), FileSHA256: sum}
	d.WrappingKeyPinned, d.UnpinnedAllowedBy = pinData(pin != "", UnpinnedOption)
	return s.record(d)
}

func hashHex(b []byte) string { return sha256Hex(b) }

// pinData is what an event records about the wrapping key's pin: whether
// it was pinned and, if not, which option allowed it: the transcript never
// suggests a check that did not happen.
func pinData(pinned bool, allowedBy string) (*bool, string) {
	if pinned {
		allowedBy = ""
	}
	return &pinned, allowedBy
}
