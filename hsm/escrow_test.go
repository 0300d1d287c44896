package hsm_test

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

func TestEscrowWrapUnwrap(t *testing.T) {
	hsmtest.Setup(t, "escrow")
	tok := open(t, "escrow")
	key, err := tok.GenerateAESKey("k1", []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	kcv, err := tok.CheckValue(key)
	if err != nil {
		t.Fatal(err)
	}

	kekBytes := make([]byte, 32)
	if _, err := rand.Read(kekBytes); err != nil {
		t.Fatal(err)
	}
	kekCopy := bytes.Clone(kekBytes)
	kek, err := tok.ImportKEK(kekBytes)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kekBytes, make([]byte, 32)) {
		t.Error("ImportKEK left the host copy of the KEK in place")
	}
	wrapped, err := tok.WrapKWP(kek, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapped) != 40 {
		t.Fatalf("wrapped AES-256 key is %d bytes, want 40", len(wrapped))
	}

	// Independent check with the openssl command line: unwrap with the KEK
	// and compare the key check value with the token's.
	if _, err := exec.LookPath("openssl"); err == nil {
		dir := t.TempDir()
		in := filepath.Join(dir, "wrapped")
		if err := os.WriteFile(in, wrapped, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "enc", "-d", "-id-aes256-wrap-pad", "-iv", "A65959A6", "-K", hex.EncodeToString(kekCopy), "-in", in).Output()
		if err != nil {
			t.Fatalf("openssl could not unwrap what the token wrapped: %v", err)
		}
		c, _ := aes.NewCipher(out)
		block := make([]byte, 16)
		c.Encrypt(block, block)
		if !bytes.Equal(block[:3], kcv) {
			t.Errorf("openssl-unwrapped material has KCV %x, token says %x", block[:3], kcv)
		}
	}

	// The check value of the wrapped key, computed in the token.
	if got, err := tok.KWPCheckValue(kek, wrapped); err != nil || !bytes.Equal(got, kcv) {
		t.Errorf("KWPCheckValue = %x, %v; want %x", got, err, kcv)
	}
	sk, err := tok.UnwrapKWP(kek, wrapped, "k1-check", []byte{9}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.DestroyKey(sk); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.UnwrapKWP(kek, wrapped, "k1", []byte{2}, true); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("unwrap over an existing label: got %v, want ErrKeyExists", err)
	}
	if err := tok.DestroyKey(key); err != nil {
		t.Fatal(err)
	}
	rk, err := tok.UnwrapKWP(kek, wrapped, "k1", []byte{1}, true)
	if err != nil {
		t.Fatal(err)
	}
	// An unwrapped key holds material though the token did not make it
	// (and SoftHSM reports no CKA_VALUE_LEN for it): never "empty", which
	// a resume would destroy.
	if empty, err := tok.HoldsNoValue(rk); err != nil || empty {
		t.Errorf("HoldsNoValue of an unwrapped key = %v, %v; want false", empty, err)
	}
	// Key wrap with padding is deterministic: wrapping the recovered key
	// again gives the escrowed bytes exactly.
	if again, err := tok.WrapKWP(kek, rk); err != nil || !bytes.Equal(again, wrapped) {
		t.Errorf("re-wrapping the recovered key gave %x, %v; want %x", again, err, wrapped)
	}
	// SoftHSM reports no CKA_CHECK_VALUE for unwrapped keys; CheckValue
	// computes it on the token instead.
	if got, err := tok.CheckValue(rk); err != nil || !bytes.Equal(got, kcv) {
		t.Errorf("recovered key CheckValue = %x, %v; want %x", got, err, kcv)
	}
	found, err := tok.FindAESKey("k1", []byte{1})
	if err != nil {
		t.Fatalf("recovered key is not a findable token key: %v", err)
	}
	// The recovered key is sensitive: it can be wrapped again (for KMS) but
	// never read.
	if _, err := tok.WrapKWP(kek, found); err != nil {
		t.Errorf("recovered key cannot be wrapped again: %v", err)
	}

	// A changed blob or another KEK is refused as ErrUnwrap.
	bad := bytes.Clone(wrapped)
	bad[10] ^= 1
	if _, err := tok.UnwrapKWP(kek, bad, "k2", []byte{3}, false); !errors.Is(err, hsm.ErrUnwrap) {
		t.Errorf("corrupted blob: got %v, want ErrUnwrap", err)
	}
	other := make([]byte, 32)
	_, _ = rand.Read(other)
	kek2, err := tok.ImportKEK(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.UnwrapKWP(kek2, wrapped, "k2", []byte{3}, false); !errors.Is(err, hsm.ErrUnwrap) {
		t.Errorf("wrong KEK: got %v, want ErrUnwrap", err)
	}
	if _, err := tok.KWPCheckValue(kek2, wrapped); !errors.Is(err, hsm.ErrUnwrap) {
		t.Errorf("wrong KEK check value: got %v, want ErrUnwrap", err)
	}
	// The KEK cannot wrap itself or be wrapped: it is not extractable.
	if _, err := tok.WrapKWP(kek2, kek); err == nil {
		t.Error("the KEK could be wrapped out of the token")
	}
	for _, k := range []*hsm.Key{kek, kek2} {
		if err := tok.DestroyKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tok.WrapKWP(kek, found); err == nil {
		t.Error("a destroyed KEK still wraps")
	}
}

func TestImportKEKBadLength(t *testing.T) {
	hsmtest.Setup(t, "escrow")
	tok := open(t, "escrow")
	b := []byte("short")
	if _, err := tok.ImportKEK(b); err == nil {
		t.Fatal("a 5-byte KEK was accepted")
	}
	if string(b) != "\x00\x00\x00\x00\x00" {
		t.Error("the refused KEK was not zeroed")
	}
}
