package hsm_test

import (
	"fmt"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/wrap"
)

// modules opens a fresh token on each module the tests run on.
func modules() map[string]func(t *testing.T) *hsm.Token {
	return map[string]func(t *testing.T) *hsm.Token{
		"softhsm": func(t *testing.T) *hsm.Token { return openModule(t, "softhsm", hsm.Config{}) },
		"nss":     func(t *testing.T) *hsm.Token { return openModule(t, "nss", hsm.Config{}) },
	}
}

// openModule opens a fresh token on module ("softhsm" or "nss") with the
// PIN, module and token of cfg filled in.
func openModule(t *testing.T, module string, cfg hsm.Config) *hsm.Token {
	t.Helper()
	cfg.PIN = []byte(hsmtest.PIN)
	if module == "nss" {
		n := hsmtest.SetupNSS(t)
		cfg.Module, cfg.InitArgs, cfg.TokenLabel = n.Module, n.InitArgs, hsmtest.NSSLabel
	} else {
		hsmtest.Setup(t, "ceremony")
		cfg.Module, cfg.TokenLabel = hsmtest.Module, "ceremony"
	}
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tok.Close() })
	return tok
}

// TestProbe checks that the probe finds what each module really computes
// (../shared/PKCS11-MODULES.md): the same mechanism number means RFC 5649 on
// SoftHSM and PKCS#7 + RFC 3394 on NSS.
func TestProbe(t *testing.T) {
	type want struct {
		checkValue, escrow, recovery string
		wraps                        map[string]string
		inHSM                        map[wrap.Algorithm]bool
	}
	wants := map[string]want{
		"softhsm": {"reported", "CKM_AES_KEY_WRAP_PAD", "CKM_AES_KEY_WRAP_PAD",
			map[string]string{"CKM_AES_KEY_WRAP_PAD": "RFC 5649", "CKM_AES_KEY_WRAP": "RFC 3394"},
			map[wrap.Algorithm]bool{wrap.RSAESOAEPSHA1: true, wrap.RSAAESKeyWrapSHA1: true}},
		"nss": {"computed", "CKM_AES_KEY_WRAP with IV A65959A600000020", "CKM_AES_KEY_WRAP_KWP",
			map[string]string{"CKM_AES_KEY_WRAP_PAD": "PKCS#7 + RFC 3394", "CKM_AES_KEY_WRAP": "RFC 3394", "CKM_AES_KEY_WRAP with IV A65959A600000020": "RFC 5649"},
			map[wrap.Algorithm]bool{wrap.RSAESOAEPSHA1: true, wrap.RSAESOAEPSHA256: true, wrap.RSAAESKeyWrapSHA1: true, wrap.RSAAESKeyWrapSHA256: true}},
	}
	for name, mk := range modules() {
		t.Run(name, func(t *testing.T) {
			w := wants[name]
			c, err := mk(t).Probe()
			if err != nil {
				t.Fatal(err)
			}
			if c.AESGenerate != "ok" || c.Signing != "ECDSA P-256" || c.SigningECDSAP256 != "ok" || c.CheckValue != w.checkValue {
				t.Errorf("AES %q, signing %q (P-256 %q), check value %q (want %q)", c.AESGenerate, c.Signing, c.SigningECDSAP256, c.CheckValue, w.checkValue)
			}
			if c.SigningRSA3072 != "not tried: the token makes ECDSA P-256 keys" {
				t.Errorf("RSA 3072 probed without need: %q", c.SigningRSA3072)
			}
			if c.EscrowMechanism != w.escrow || c.RecoveryMechanism != w.recovery {
				t.Errorf("escrow mechanism %q, recovery %q; want %q, %q", c.EscrowMechanism, c.RecoveryMechanism, w.escrow, w.recovery)
			}
			for _, r := range c.KeyWrap {
				if s, ok := w.wraps[r.Mechanism]; ok && (r.Wraps != s || r.Unwraps != s) {
					t.Errorf("%s wraps %q, unwraps %q; want %q", r.Mechanism, r.Wraps, r.Unwraps, s)
				}
			}
			for _, r := range c.KMS {
				if r.InHSM != w.inHSM[r.Algorithm] {
					t.Errorf("%s in HSM = %v (%s)", r.Algorithm, r.InHSM, r.Method)
				}
			}
			if l := c.Lacks(wrap.RSAESOAEPSHA1, false); len(l) != 0 {
				t.Errorf("Lacks = %q", l)
			}
		})
	}
}

// TestProbeSealKeys: the probe tries RSA 3072 when asked (every kind, or
// token.seal_algorithm), and chooses the kind asked for.
func TestProbeSealKeys(t *testing.T) {
	for _, module := range []string{"softhsm", "nss"} {
		for _, c := range []struct {
			cfg            hsm.Config
			signing        string
			ec, rsaOutcome string
		}{
			{hsm.Config{ProbeAll: true}, "ECDSA P-256", "ok", "ok"},
			{hsm.Config{SealKey: hsm.SealRSA3072}, "RSA 3072 (PKCS#1 v1.5, SHA-256)", "not tried: rsa-3072 was asked for", "ok"},
			{hsm.Config{SealKey: hsm.SealECDSAP256}, "ECDSA P-256", "ok", "not tried: ecdsa-p256 was asked for"},
		} {
			t.Run(fmt.Sprintf("%s/%s/all-%v", module, string(c.cfg.SealKey), c.cfg.ProbeAll), func(t *testing.T) {
				caps, err := openModule(t, module, c.cfg).Probe()
				if err != nil {
					t.Fatal(err)
				}
				if caps.Signing != c.signing || caps.SigningECDSAP256 != c.ec || caps.SigningRSA3072 != c.rsaOutcome {
					t.Errorf("signing %q, P-256 %q, RSA %q; want %q, %q, %q", caps.Signing, caps.SigningECDSAP256, caps.SigningRSA3072, c.signing, c.ec, c.rsaOutcome)
				}
			})
		}
	}
}
