package hsm

import (
	"fmt"

	"github.com/miekg/pkcs11"
)

// SetTestOnlyForceRSAAES and SetTestOnlyForceHost flip the test seams of
// WrapForKMS for the external tests of this package.
func SetTestOnlyForceRSAAES(v bool) { testOnlyForceRSAAES = v }

// SetTestOnlyForceHost: see testOnlyForceHost.
func SetTestOnlyForceHost(v bool) { testOnlyForceHost = v }

// PrivateFlags reads the boolean attributes of s's private key that decide
// what it can be used for, by CKA_ name.
func (s *Signer) PrivateFlags() (map[string]bool, error) {
	names := map[uint]string{pkcs11.CKA_TOKEN: "CKA_TOKEN", pkcs11.CKA_PRIVATE: "CKA_PRIVATE", pkcs11.CKA_SENSITIVE: "CKA_SENSITIVE",
		pkcs11.CKA_EXTRACTABLE: "CKA_EXTRACTABLE", pkcs11.CKA_SIGN: "CKA_SIGN", pkcs11.CKA_DECRYPT: "CKA_DECRYPT", pkcs11.CKA_UNWRAP: "CKA_UNWRAP"}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	out := map[string]bool{}
	for a, name := range names {
		attrs, err := s.t.ctx.GetAttributeValue(s.t.session, s.priv, []*pkcs11.Attribute{pkcs11.NewAttribute(a, nil)})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = len(attrs[0].Value) > 0 && attrs[0].Value[0] != 0
	}
	return out, nil
}
