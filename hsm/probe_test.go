package hsm_test

import (
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/wrap"
)

// modules opens a fresh token on each module the tests run on.
func modules() map[string]func(t *testing.T) *hsm.Token {
	return map[string]func(t *testing.T) *hsm.Token{
		"softhsm": func(t *testing.T) *hsm.Token {
			hsmtest.Setup(t, "ceremony")
			return open(t, "ceremony")
		},
		"nss": func(t *testing.T) *hsm.Token {
			n := hsmtest.SetupNSS(t)
			tok, err := hsm.Open(hsm.Config{Module: n.Module, InitArgs: n.InitArgs, TokenLabel: hsmtest.NSSLabel, PIN: []byte(hsmtest.PIN)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tok.Close() })
			return tok
		},
	}
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
			if c.AESGenerate != "ok" || c.Signing != "ECDSA P-256" || c.CheckValue != w.checkValue {
				t.Errorf("AES %q, signing %q, check value %q (want %q)", c.AESGenerate, c.Signing, c.CheckValue, w.checkValue)
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
