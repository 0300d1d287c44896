package hsm

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/pkcs11"
)

// ScratchConfig writes a SoftHSM2 config in dir (which must be private)
// whose token store is dir/tokens, and returns its path: export it as
// SOFTHSM2_CONF before the module is first loaded in the process. It holds
// no secret.
func ScratchConfig(dir string) (string, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", fmt.Errorf("failed to make a scratch token store: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return "", fmt.Errorf("failed to write the scratch SoftHSM2 config: %w", err)
	}
	return conf, nil
}

// InitScratchToken initializes a token labelled label in the first free
// slot of module through PKCS#11 (C_InitToken, then C_InitPIN as the
// security officer), with a random SO PIN that is forgotten at once and a
// random user PIN that it returns: no PIN is on any command line or in any
// file. The caller zeroes the PIN; the module keeps nothing of it. The
// module must not be in use in the process (it is initialized and
// finalized here).
func InitScratchToken(module, label string) ([]byte, error) {
	ctx := pkcs11.New(module)
	if ctx == nil {
		return nil, fmt.Errorf("%w: %s could not be loaded", ErrModuleNotFound, module)
	}
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		return nil, fmt.Errorf("failed to initialize %s for a scratch token: %w", module, err)
	}
	defer func() { _ = ctx.Finalize() }()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("failed to list the slots of %s: %w", module, err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		if ti, err := ctx.GetTokenInfo(s); err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			free, found = s, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %s has no free slot for a scratch token", ErrTokenNotFound, module)
	}
	so, pin := randomPIN(), randomPIN()
	defer clear(so)
	if err := ctx.InitToken(free, string(so), label); err != nil {
		clear(pin)
		return nil, fmt.Errorf("failed to initialize a scratch token in %s: %w", module, err)
	}
	// SoftHSM moves an initialized token to a new slot: find it again.
	if err := initUserPIN(ctx, label, so, pin); err != nil {
		clear(pin)
		return nil, err
	}
	return pin, nil
}

func initUserPIN(ctx *pkcs11.Ctx, label string, so, pin []byte) error {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("failed to list slots: %w", err)
	}
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil || strings.TrimRight(ti.Label, " \x00") != label || ti.Flags&pkcs11.CKF_USER_PIN_INITIALIZED != 0 {
			continue
		}
		sh, err := ctx.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return fmt.Errorf("failed to open a session on the scratch token: %w", err)
		}
		defer func() { _ = ctx.CloseSession(sh) }()
		if err := ctx.Login(sh, pkcs11.CKU_SO, string(so)); err != nil {
			return fmt.Errorf("failed to log in to the scratch token as its security officer: %w", err)
		}
		defer func() { _ = ctx.Logout(sh) }()
		if err := ctx.InitPIN(sh, string(pin)); err != nil {
			return fmt.Errorf("failed to set the scratch token's user PIN: %w", err)
		}
		return nil
	}
	return fmt.Errorf("%w: the scratch token %q is not to be found after its initialization", ErrTokenNotFound, label)
}

// randomPIN is 32 hex digits from crypto/rand.
func randomPIN() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	pin := []byte(hex.EncodeToString(b))
	clear(b)
	return pin
}
