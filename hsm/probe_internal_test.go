package hsm

import (
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/wrap"
)

// TestLacks checks what a ceremony is refused for, naming each missing
// thing, on results no software token gives (a token without RFC 5649, with
// a wrong check value, without the algorithm).
func TestLacks(t *testing.T) {
	full := func() *Capabilities {
		m := mech{id: CKMAESKeyWrapKWP}
		return &Capabilities{AESGenerate: "ok", CheckValue: "reported", Signing: "ECDSA P-256", seal: SealECDSAP256, escrowWrap: &m, escrowUnwrap: &m,
			KeyWrap: []KeyWrapResult{{m: m, wraps: RFC5649, unwraps: RFC5649}},
			KMS:     []KMSResult{{Algorithm: wrap.RSAESOAEPSHA1, InHSM: true}, {Algorithm: wrap.RSAESOAEPSHA256, Method: "token \"t\" cannot wrap with RSA-OAEP-SHA-256: CKR_ARGUMENTS_BAD"}}}
	}
	if l := full().Lacks(wrap.RSAESOAEPSHA1, false); len(l) != 0 {
		t.Fatalf("a full token lacks %q", l)
	}
	for _, tt := range []struct {
		name  string
		edit  func(c *Capabilities)
		alg   wrap.Algorithm
		host  bool
		wants string
	}{
		{"no RFC 5649", func(c *Capabilities) { c.escrowWrap = nil }, wrap.RSAESOAEPSHA1, false, "computes RFC 5649 (CKM_AES_KEY_WRAP_KWP) for the escrow"},
		{"wrong check value", func(c *Capabilities) {
			c.CheckValue = "the token reports check value 000000 for a key whose check value is 123456"
		}, wrap.RSAESOAEPSHA1, false, "a key check value (the token reports"},
		{"no signing key", func(c *Capabilities) {
			c.seal, c.Signing = "", "none: ECDSA P-256: key pair generation failed: CKR_MECHANISM_INVALID; RSA 3072: key pair generation failed: CKR_MECHANISM_INVALID"
		}, wrap.RSAESOAEPSHA1, false, "a transcript signing key (none: ECDSA P-256: key pair generation failed: CKR_MECHANISM_INVALID; RSA 3072"},
		{"no AES generation", func(c *Capabilities) { c.AESGenerate = "CKR_TEMPLATE_INCONSISTENT" }, wrap.RSAESOAEPSHA1, false, "AES-256 key generation (CKR_TEMPLATE_INCONSISTENT)"},
		{"algorithm not in HSM", func(c *Capabilities) {}, wrap.RSAESOAEPSHA256, false, "wrapping for KMS with RSAES_OAEP_SHA_256 inside the HSM (token \"t\" cannot wrap with RSA-OAEP-SHA-256: CKR_ARGUMENTS_BAD; or allow host wrapping)"},
		{"host wrap without transport", func(c *Capabilities) { c.escrowWrap, c.KeyWrap = nil, nil }, wrap.RSAESOAEPSHA256, true, "in the HSM or on the host (no AES key-wrap mechanism to take the key out)"},
	} {
		c := full()
		tt.edit(c)
		l := strings.Join(c.Lacks(tt.alg, tt.host), "; ")
		if !strings.Contains(l, tt.wants) {
			t.Errorf("%s: Lacks = %q, want %q", tt.name, l, tt.wants)
		}
	}
	if l := full().Lacks(wrap.RSAESOAEPSHA256, true); len(l) != 0 {
		t.Errorf("host wrap allowed, with a transport: Lacks = %q", l)
	}
}
