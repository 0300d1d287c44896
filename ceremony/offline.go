package ceremony

import (
	"fmt"
	"os"
	"path/filepath"

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
	for i, k := range s.keys {
		path := s.cfg.path(k.cfg.ParamsFile)
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("keys[%d].params_file: %w", i, err)
		}
		p, err := wrap.ParseParams(data)
		if err != nil {
			return fmt.Errorf("keys[%d].params_file %s: %w", i, path, err)
		}
		if pin := k.cfg.WrappingKeySHA256; pin != "" {
			if err := checkPin(fmt.Sprintf("keys[%d].params_file %s", i, path), p.PublicKey, pin); err != nil {
				return err
			}
		} else {
			s.ui.Info(fmt.Sprintf("WARNING: key %q: the wrapping key of %s (sha256 %s) is NOT pinned (%s): compare it with what params fetch printed", k.cfg.Label, filepath.Base(path), sha256Hex(p.PublicKey), UnpinnedOption))
		}
		if k.bundle == nil && !k.imported {
			if err := p.CheckValid(testOnlyNow()); err != nil {
				return fmt.Errorf("keys[%d].params_file %s: %w", i, path, err)
			}
		}
		if first == nil {
			first = p
		} else if p.Algorithm != first.Algorithm || p.KeySpec != first.KeySpec {
			return fmt.Errorf("keys[%d].params_file %s is for %s with %s, another key's for %s with %s: fetch every key's parameters with one algorithm and key spec", i, path, p.Algorithm, p.KeySpec, first.Algorithm, first.KeySpec)
		}
		if k.arn != "" && k.arn != p.KeyARN {
			return fmt.Errorf("keys[%d].params_file %s is for %s, but the transcript records %s for key %q", i, path, p.KeyARN, k.arn, k.cfg.Label)
		}
		k.offline, k.offlineData = p, data
	}
	s.cfg.KMS.WrappingAlgorithm, s.cfg.KMS.WrappingKeySpec = string(first.Algorithm), first.KeySpec
	return nil
}

// offlineKMSKeys records the KMS keys the params files name.
func offlineKMSKeys(s *state) (string, error) {
	for _, k := range s.keys {
		k.arn, k.res.KMSKeyARN = k.offline.KeyARN, k.offline.KeyARN
		if k.kmsRecorded {
			continue
		}
		if err := s.record("kms-key", map[string]any{"label": k.cfg.Label, "kms_key_arn": k.arn, "created": false, "region": k.offline.Region, "source": "params file"}); err != nil {
			return "", err
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
		name, sum, err := s.writeFile(s.freshName("params-"+k.cfg.Label+".json"), k.offlineData)
		if err != nil {
			return "", err
		}
		d := map[string]any{"label": k.cfg.Label, "kms_key_arn": p.KeyARN, "wrapping_algorithm": string(p.Algorithm), "wrapping_key_spec": p.KeySpec,
			"public_key_sha256": hashHex(p.PublicKey), "import_token_sha256": hashHex(p.ImportToken), "parameters_valid_to": p.ValidTo,
			"source": filepath.Base(k.cfg.ParamsFile), "file": filepath.Base(name), "file_sha256": sum}
		pinData(d, k.cfg.WrappingKeySHA256 != "", UnpinnedOption)
		if err := s.record("fetch-params", d); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("offline: parameters from the files, valid until %s", s.keys[0].offline.ValidTo.UTC().Format("2006-01-02T15:04:05Z")), nil
}

func hashHex(b []byte) string { return sha256Hex(b) }

// pinData records in an event whether the wrapping key was pinned and, if
// not, which option allowed it: the transcript never suggests a check that
// did not happen.
func pinData(d map[string]any, pinned bool, allowedBy string) {
	d["wrapping_key_pinned"] = pinned
	if !pinned {
		d["unpinned_allowed_by"] = allowedBy
	}
}
