package ceremony

import (
	"github.com/keyceremony/keyceremony/transcripts/events"

	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/wrap"
)

// checkToken refuses, right after the token is opened and before anything
// changes, a token that lacks something the ceremony needs, naming it: the
// probe (hsm.Token.Probe) tried each thing on throw-away session objects.
// It returns the probe's result for the transcript.
func checkToken(s *state) (*hsm.Capabilities, error) {
	caps, err := s.tok.Probe()
	if err != nil {
		return nil, err
	}
	algs := map[wrap.Algorithm]bool{}
	if a, err := wrap.ParseAlgorithm(s.cfg.KMS.WrappingAlgorithm); err == nil && !s.cfg.Offline() {
		algs[a] = true
	}
	for _, k := range s.keys {
		if k.offline != nil {
			algs[k.offline.Algorithm] = true
		}
	}
	var lacks []string
	for _, a := range []wrap.Algorithm{wrap.RSAESOAEPSHA1, wrap.RSAESOAEPSHA256, wrap.RSAAESKeyWrapSHA1, wrap.RSAAESKeyWrapSHA256} {
		if algs[a] && !caps.KMSInHSM(a) && !s.cfg.KMS.AllowHostWrap {
			var can []string
			for _, r := range caps.KMS {
				if r.InHSM {
					can = append(can, string(r.Algorithm))
				}
			}
			list := "none"
			if len(can) > 0 {
				list = strings.Join(can, ", ")
			}
			return nil, fmt.Errorf("%w: token %q cannot wrap with %s inside the HSM; inside the HSM it can do: %s; set kms.wrapping_algorithm to one of those, or allow host wrapping (kms.allow_host_wrap: true or --allow-host-wrap)",
				hsm.ErrMechanism, s.tok.Info().Label, a, list)
		}
		if algs[a] {
			lacks = append(lacks, caps.Lacks(a, s.cfg.KMS.AllowHostWrap)...)
		}
	}
	if len(algs) == 0 {
		lacks = caps.Lacks("", true)
	}
	if len(lacks) > 0 {
		return nil, fmt.Errorf("%w: token %q lacks what the ceremony needs: %s; nothing was changed (keyceremony probe shows what the token can do)", hsm.ErrMechanism, s.tok.Info().Label, strings.Join(slices.Compact(lacks), "; "))
	}
	return caps, nil
}

// wrapData is the transcript event data of one wrap.
func wrapData(label, arn string, b *wrap.Bundle, w *hsm.Wrapped, allowedBy string) *events.Wrap {
	d := &events.Wrap{
		Label: label, KMSKeyARN: arn, WrappingAlgorithm: string(b.Algorithm), WrappingKeySpec: b.KeySpec,
		InHSM: w.InHSM, Method: w.Method,
		EncryptedKeyMaterialSHA256: evidence.Hash(w.Ciphertext), KeyCheckValue: b.KeyCheckValue,
	}
	if !w.InHSM {
		d.HostWrap, d.HostWrapAllowedBy = w.HostReason, allowedBy
	}
	return d
}

func wrapKeys(ctx context.Context, s *state) (string, error) {
	inHSM, host := 0, 0
	for n, k := range s.keys {
		if err := s.next(n); err != nil {
			return "", err
		}
		if !(k.imported || k.bundle != nil && k.bundle.ParamsValidTo.Equal(k.params.ValidTo)) {
			if !s.cfg.Offline() && k.params.CheckValid(testOnlyNow().Add(time.Hour)) != nil {
				// Parameters last 24 hours: after a long escrow they may be
				// too close to their end for the import. Fetch new ones.
				if err := s.fetchParamsFor(ctx, k); err != nil {
					return "", err
				}
			}
			b, name, in, err := s.wrapFor(k, k.arn, k.params, "bundle-"+k.cfg.Label+".json")
			if err != nil {
				return "", err
			}
			k.bundle, k.res.Bundle = b, name
			if in {
				inHSM++
			} else {
				host++
			}
		}
		in, h, err := s.wrapReplicas(ctx, k)
		if err != nil {
			return "", err
		}
		inHSM, host = inHSM+in, host+h
	}
	if host == 0 {
		return fmt.Sprintf("%d key(s) wrapped inside the HSM", inHSM), nil
	}
	return fmt.Sprintf("%d key(s) wrapped inside the HSM, %d on the host (allowed by %s)", inHSM, host, s.cfg.KMS.HostWrapAllowedBy), nil
}

// wrapFor wraps k's material for the KMS key arn under import parameters
// p, writes the bundle to a file named base (or a fresh variant of it) and
// records it. It reports whether the token wrapped it.
func (s *state) wrapFor(k *keyState, arn string, p *wrap.Params, base string) (*wrap.Bundle, string, bool, error) {
	if err := p.CheckValid(testOnlyNow()); err != nil {
		return nil, "", false, err
	}
	pub, err := p.RSAPublicKey()
	if err != nil {
		return nil, "", false, err
	}
	w, err := s.tok.WrapForKMS(k.key, pub, p.Algorithm, s.cfg.KMS.AllowHostWrap)
	if err != nil {
		if errors.Is(err, hsm.ErrMechanism) {
			return nil, "", false, fmt.Errorf("%w: nothing was imported; the generated key stays on the token", err)
		}
		return nil, "", false, err
	}
	if !w.InHSM {
		s.ui.Info(fmt.Sprintf("key %q wrapped on the host (allowed by %s): %s", k.cfg.Label, s.cfg.KMS.HostWrapAllowedBy, w.HostReason))
	}
	b := &wrap.Bundle{
		KeyARN: arn, Region: p.Region, Algorithm: p.Algorithm, KeySpec: p.KeySpec,
		ImportToken: p.ImportToken, ParamsValidTo: p.ValidTo, EncryptedKeyMaterial: w.Ciphertext,
		KeyCheckValue: k.kcv, TranscriptHash: s.tr.Hash(),
	}
	data, err := b.Marshal()
	if err != nil {
		return nil, "", false, err
	}
	name, sum, err := s.writeFile(s.freshName(base), data)
	if err != nil {
		return nil, "", false, err
	}
	ev := wrapData(k.cfg.Label, arn, b, w, s.cfg.KMS.HostWrapAllowedBy)
	ev.File, ev.FileSHA256 = filepath.Base(name), sum
	if err := s.record(ev); err != nil {
		return nil, "", false, err
	}
	return b, name, w.InHSM, nil
}
