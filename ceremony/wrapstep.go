package ceremony

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/wrap"
)

// checkToken checks, once the token is open and before anything changes,
// that it can do what the ceremony needs. The token capability probe
// (issue 11: every operation of the ceremony, probed on the token) belongs
// here, beside the wrapping check.
func checkToken(s *state) error {
	return checkWrapAlgorithm(s)
}

// checkWrapAlgorithm refuses, right after the token is opened and before
// anything changes, a wrapping algorithm the token cannot do inside the HSM
// when host wrapping is not allowed. The token is probed with a throw-away
// RSA key of the configured size: no key material is involved.
func checkWrapAlgorithm(s *state) error {
	if s.cfg.KMS.AllowHostWrap {
		return nil
	}
	alg, err := wrap.ParseAlgorithm(s.cfg.KMS.WrappingAlgorithm)
	if err != nil {
		return err
	}
	bits := map[string]int{"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}[s.cfg.KMS.WrappingKeySpec]
	probe, err := probeKey(bits)
	if err != nil {
		return err
	}
	can, err := s.tok.InHSMAlgorithms(&probe.PublicKey)
	if err != nil {
		return err
	}
	if slices.Contains(can, alg) {
		return nil
	}
	names := make([]string, len(can))
	for i, a := range can {
		names[i] = string(a)
	}
	list := "none"
	if len(names) > 0 {
		list = strings.Join(names, ", ")
	}
	return fmt.Errorf("%w: token %q cannot wrap with %s inside the HSM; inside the HSM it can do: %s; set kms.wrapping_algorithm to one of those, or allow host wrapping (kms.allow_host_wrap: true or --allow-host-wrap)",
		hsm.ErrMechanism, s.tok.Info().Label, alg, list)
}

// probeKeys caches throw-away RSA keys for probing by size: only their
// public halves are used, to ask the token what it can do.
var (
	probeMu   sync.Mutex
	probeKeys = map[int]*rsa.PrivateKey{}
)

func probeKey(bits int) (*rsa.PrivateKey, error) {
	probeMu.Lock()
	defer probeMu.Unlock()
	if k, ok := probeKeys[bits]; ok {
		return k, nil
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("failed to make an RSA key to probe the token: %w", err)
	}
	probeKeys[bits] = k
	return k, nil
}

// wrapData is the transcript event data of one wrap.
func wrapData(label, arn string, b *wrap.Bundle, w *hsm.Wrapped, allowedBy string) map[string]any {
	d := map[string]any{
		"label": label, "kms_key_arn": arn, "wrapping_algorithm": string(b.Algorithm), "wrapping_key_spec": b.KeySpec,
		"in_hsm": w.InHSM, "method": w.Method,
		"encrypted_key_material_sha256": evidence.Hash(w.Ciphertext), "key_check_value": b.KeyCheckValue,
	}
	if !w.InHSM {
		d["host_wrap"] = w.HostReason
		d["host_wrap_allowed_by"] = allowedBy
	}
	return d
}

func wrapKeys(ctx context.Context, s *state) (string, error) {
	inHSM, host := 0, 0
	for n, k := range s.keys {
		if err := s.next(n); err != nil {
			return "", err
		}
		if k.imported || k.bundle != nil && k.bundle.ParamsValidTo.Equal(k.params.ValidTo) {
			continue
		}
		if !s.cfg.Offline() && k.params.CheckValid(testOnlyNow().Add(time.Hour)) != nil {
			// Parameters last 24 hours: after a long escrow they may be too
			// close to their end for the import. Fetch new ones.
			if err := s.fetchParamsFor(ctx, k); err != nil {
				return "", err
			}
		}
		if err := k.params.CheckValid(testOnlyNow()); err != nil {
			return "", err
		}
		pub, err := k.params.RSAPublicKey()
		if err != nil {
			return "", err
		}
		w, err := s.tok.WrapForKMS(k.key, pub, k.params.Algorithm, s.cfg.KMS.AllowHostWrap)
		if err != nil {
			if errors.Is(err, hsm.ErrMechanism) {
				return "", fmt.Errorf("%w: nothing was imported; the generated key stays on the token", err)
			}
			return "", err
		}
		if w.InHSM {
			inHSM++
		} else {
			host++
			s.ui.Info(fmt.Sprintf("key %q wrapped on the host (allowed by %s): %s", k.cfg.Label, s.cfg.KMS.HostWrapAllowedBy, w.HostReason))
		}
		b := &wrap.Bundle{
			KeyARN: k.arn, Region: k.params.Region, Algorithm: k.params.Algorithm, KeySpec: k.params.KeySpec,
			ImportToken: k.params.ImportToken, ParamsValidTo: k.params.ValidTo, EncryptedKeyMaterial: w.Ciphertext,
			KeyCheckValue: k.kcv, TranscriptHash: s.tr.Hash(),
		}
		data, err := b.Marshal()
		if err != nil {
			return "", err
		}
		name, sum, err := s.writeFile(s.freshName("bundle-"+k.cfg.Label+".json"), data)
		if err != nil {
			return "", err
		}
		k.bundle, k.res.Bundle = b, name
		ev := wrapData(k.cfg.Label, k.arn, b, w, s.cfg.KMS.HostWrapAllowedBy)
		ev["file"], ev["file_sha256"] = filepath.Base(name), sum
		if err := s.record("wrap", ev); err != nil {
			return "", err
		}
	}
	if host == 0 {
		return fmt.Sprintf("%d key(s) wrapped inside the HSM", inHSM), nil
	}
	return fmt.Sprintf("%d key(s) wrapped inside the HSM, %d on the host (allowed by %s)", inHSM, host, s.cfg.KMS.HostWrapAllowedBy), nil
}
