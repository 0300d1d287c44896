package hsm

import (
	"fmt"
	"sort"

	"github.com/miekg/pkcs11"
)

// Mechanism is one mechanism the token reports through C_GetMechanismList
// and C_GetMechanismInfo.
type Mechanism struct {
	// ID is the CKM_ value.
	ID uint
	// Name is the CKM_ name for the mechanisms keyceremony cares about, else
	// the value in hex.
	Name string
	// MinKeySize and MaxKeySize are as the module reports them (bits or
	// bytes, depending on the mechanism).
	MinKeySize, MaxKeySize uint
	// Flags are the CKF_ flags of CK_MECHANISM_INFO.
	Flags uint
}

// CanWrap reports whether the module says the mechanism can C_WrapKey.
func (m Mechanism) CanWrap() bool { return m.Flags&pkcs11.CKF_WRAP != 0 }

var mechanismNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_OAEP:         "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_RSA_AES_KEY_WRAP:      "CKM_RSA_AES_KEY_WRAP",
	pkcs11.CKM_AES_KEY_WRAP:          "CKM_AES_KEY_WRAP",
	pkcs11.CKM_AES_KEY_WRAP_PAD:      "CKM_AES_KEY_WRAP_PAD",
	CKMAESKeyWrapKWP:                 "CKM_AES_KEY_WRAP_KWP",
	pkcs11.CKM_AES_KEY_GEN:           "CKM_AES_KEY_GEN",
	pkcs11.CKM_RSA_PKCS:              "CKM_RSA_PKCS",
	pkcs11.CKM_ECDSA:                 "CKM_ECDSA",
	pkcs11.CKM_EC_KEY_PAIR_GEN:       "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_AES_ECB:               "CKM_AES_ECB",
	pkcs11.CKM_AES_CMAC:              "CKM_AES_CMAC",
	pkcs11.CKM_SHA_1:                 "CKM_SHA_1",
	pkcs11.CKM_SHA256:                "CKM_SHA256",
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN",
}

// MechanismName returns the CKM_ name of id, or its value in hex.
func MechanismName(id uint) string {
	if n, ok := mechanismNames[id]; ok {
		return n
	}
	return fmt.Sprintf("CKM_0x%X", id)
}

// Mechanisms lists the mechanisms the token reports, sorted by ID. What a
// module lists is a claim, not a promise: SoftHSM 2.6.1 lists
// CKM_RSA_PKCS_OAEP with CKF_WRAP but refuses it with SHA-256. keyceremony
// therefore also judges a mechanism by the CKR_ code of the actual call.
func (t *Token) Mechanisms() ([]Mechanism, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mechanismsLocked()
}

func (t *Token) mechanismsLocked() ([]Mechanism, error) {
	list, err := t.ctx.GetMechanismList(t.slot)
	if err != nil {
		return nil, fmt.Errorf("failed to list the mechanisms of token %q: %w", t.info.Label, err)
	}
	out := make([]Mechanism, 0, len(list))
	for _, m := range list {
		info, err := t.ctx.GetMechanismInfo(t.slot, []*pkcs11.Mechanism{m})
		if err != nil {
			return nil, fmt.Errorf("failed to read mechanism %s of token %q: %w", MechanismName(m.Mechanism), t.info.Label, err)
		}
		out = append(out, Mechanism{ID: m.Mechanism, Name: MechanismName(m.Mechanism), MinKeySize: info.MinKeySize, MaxKeySize: info.MaxKeySize, Flags: info.Flags})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// mechanismLocked returns the token's C_GetMechanismInfo for id; listed is
// false when the module answers CKR_MECHANISM_INVALID (it has no such
// mechanism). One call, not the whole list: this runs once per wrap.
func (t *Token) mechanismLocked(id uint) (m Mechanism, listed bool, err error) {
	info, err := t.ctx.GetMechanismInfo(t.slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(id, nil)})
	if err != nil {
		if isCode(err, pkcs11.CKR_MECHANISM_INVALID) {
			return Mechanism{}, false, nil
		}
		return Mechanism{}, false, fmt.Errorf("failed to read mechanism %s of token %q: %w", MechanismName(id), t.info.Label, err)
	}
	return Mechanism{ID: id, Name: MechanismName(id), MinKeySize: info.MinKeySize, MaxKeySize: info.MaxKeySize, Flags: info.Flags}, true, nil
}

// checkWrapLocked returns an error wrapping [ErrMechanism] unless the token
// lists mechanism id with CKF_WRAP.
func (t *Token) checkWrapLocked(id uint) error {
	m, listed, err := t.mechanismLocked(id)
	if err != nil {
		return err
	}
	if !listed {
		return fmt.Errorf("%w: token %q does not list %s", ErrMechanism, t.info.Label, MechanismName(id))
	}
	if !m.CanWrap() {
		return fmt.Errorf("%w: token %q lists %s without CKF_WRAP", ErrMechanism, t.info.Label, MechanismName(id))
	}
	return nil
}

// refused reports whether err is the module declining a mechanism or its
// parameters, as opposed to a failure of the call itself.
func refused(err error) bool {
	return isCode(err, pkcs11.CKR_MECHANISM_INVALID) || isCode(err, pkcs11.CKR_MECHANISM_PARAM_INVALID) ||
		isCode(err, pkcs11.CKR_ARGUMENTS_BAD) || isCode(err, pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
