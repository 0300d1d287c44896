package hsm_test

import (
	"crypto"
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

func open(t *testing.T, label string) *hsm.Token {
	t.Helper()
	tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: label, PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tok.Close() })
	return tok
}

func TestOpenErrors(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	tests := []struct {
		name string
		cfg  hsm.Config
		is   error
		hint string
	}{
		{"wrong PIN", hsm.Config{Module: hsmtest.Module, TokenLabel: "ceremony", PIN: []byte("9999")}, hsm.ErrWrongPIN, "try again"},
		{"empty PIN", hsm.Config{Module: hsmtest.Module, TokenLabel: "ceremony"}, hsm.ErrWrongPIN, "prompt"},
		{"missing module", hsm.Config{Module: "/nonexistent/libpkcs11.so", TokenLabel: "ceremony", PIN: []byte("1234")}, hsm.ErrModuleNotFound, "install the module's package"},
		{"not a module", hsm.Config{Module: "/etc/hostname", TokenLabel: "ceremony", PIN: []byte("1234")}, hsm.ErrModuleNotFound, "--module"},
		{"unknown token", hsm.Config{Module: hsmtest.Module, TokenLabel: "nope", PIN: []byte("1234")}, hsm.ErrTokenNotFound, `tokens present: "ceremony"`},
		{"unknown serial", hsm.Config{Module: hsmtest.Module, TokenSerial: "0000", PIN: []byte("1234")}, hsm.ErrTokenNotFound, "initialize a token with the module's own tool"},
		{"no selector", hsm.Config{Module: hsmtest.Module, PIN: []byte("1234")}, hsm.ErrTokenNotFound, "token.label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := hsm.Open(tt.cfg)
			if err == nil {
				_ = tok.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("error %q lacks hint %q", err, tt.hint)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if strings.Contains(err.Error(), "9999") {
				t.Errorf("error contains the PIN: %q", err)
			}
		})
	}
	// After all failures the right PIN still works (SoftHSM never locks).
	tok := open(t, "ceremony")
	if got := tok.Info().Label; got != "ceremony" {
		t.Errorf("label = %q", got)
	}
}

func TestOpenBySerial(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	tok := open(t, "ceremony")
	serial := tok.Info().Serial
	_ = tok.Close()
	tok2, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenSerial: serial, PIN: []byte(hsmtest.PIN)})
	if err != nil {
		t.Fatal(err)
	}
	defer tok2.Close()
	if tok2.Info().Label != "ceremony" {
		t.Errorf("opened %q", tok2.Info().Label)
	}
}

func TestGenerateWrapCheckValue(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	tok := open(t, "ceremony")
	k, err := tok.GenerateAESKey("payments-2026", []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateAESKey("payments-2026", []byte{9}); !errors.Is(err, hsm.ErrKeyExists) {
		t.Fatalf("second generate with same label: %v", err)
	}
	kcv, err := tok.CheckValue(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(kcv) != 3 {
		t.Fatalf("kcv %x", kcv)
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := tok.WrapOAEP(k, &priv.PublicKey, crypto.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	material, err := rsa.DecryptOAEP(crypto.SHA1.New(), nil, priv, wrapped, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(material) != 32 {
		t.Fatalf("material is %d bytes", len(material))
	}
	// The token's check value is AES-ECB(key, 0^128)[:3], computed
	// independently here from the unwrapped material.
	c, _ := aes.NewCipher(material)
	block := make([]byte, 16)
	c.Encrypt(block, block)
	if string(block[:3]) != string(kcv) {
		t.Errorf("token kcv %x, computed %x", kcv, block[:3])
	}
	// SoftHSM 2.6.1 refuses OAEP with SHA-256: reported as ErrMechanism.
	// A module that can do it must produce a correct wrap.
	if w256, err := tok.WrapOAEP(k, &priv.PublicKey, crypto.SHA256); err != nil {
		if !errors.Is(err, hsm.ErrMechanism) {
			t.Errorf("SHA-256 wrap error does not wrap ErrMechanism: %v", err)
		}
	} else if m, err := rsa.DecryptOAEP(crypto.SHA256.New(), nil, priv, w256, nil); err != nil || string(m) != string(material) {
		t.Errorf("SHA-256 wrap does not decrypt to the material: %v", err)
	}
	found, err := tok.FindAESKey("payments-2026", nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(found.ID) != string([]byte{1, 2, 3}) {
		t.Errorf("found id %x", found.ID)
	}
	if err := tok.DestroyKey(found); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.FindAESKey("payments-2026", nil); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("after destroy: %v", err)
	}
}

func TestSigner(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	tok := open(t, "ceremony")
	if _, err := tok.Signer("transcript", false); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("missing signer: %v", err)
	}
	s, err := tok.Signer("transcript", true)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("hello"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("signature does not verify")
	}
	// Found again, same public key.
	s2, err := tok.Signer("transcript", true)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Public().(*ecdsa.PublicKey).Equal(s.Public()) {
		t.Error("second lookup returned another key")
	}
}

// TestSealSigner makes each kind of transcript signing key on each module,
// signs with it and checks the signature with Go's verifier and the key's
// attributes on the token: private, sensitive, not extractable, sign only.
func TestSealSigner(t *testing.T) {
	for _, module := range []string{"softhsm", "nss"} {
		for _, alg := range []hsm.SealKey{hsm.SealECDSAP256, hsm.SealRSA3072} {
			t.Run(module+"/"+string(alg), func(t *testing.T) {
				tok := openModule(t, module, hsm.Config{SealKey: alg})
				s, err := tok.Signer("transcript", true)
				if err != nil {
					t.Fatal(err)
				}
				if s.Algorithm() != alg {
					t.Fatalf("made a %s key", s.Algorithm())
				}
				digest := sha256.Sum256([]byte("hello"))
				sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				var ok bool
				switch k := s.Public().(type) {
				case *ecdsa.PublicKey:
					ok = alg == hsm.SealECDSAP256 && ecdsa.VerifyASN1(k, digest[:], sig)
				case *rsa.PublicKey:
					ok = alg == hsm.SealRSA3072 && k.N.BitLen() == 3072 && rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
				}
				if !ok {
					t.Fatalf("%T signature does not verify", s.Public())
				}
				if _, err := s.Sign(rand.Reader, digest[:], &rsa.PSSOptions{Hash: crypto.SHA256}); err == nil {
					t.Error("signed with PSS options")
				}
				flags, err := s.PrivateFlags()
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]bool{"CKA_TOKEN": true, "CKA_PRIVATE": true, "CKA_SENSITIVE": true, "CKA_EXTRACTABLE": false, "CKA_SIGN": true, "CKA_DECRYPT": false, "CKA_UNWRAP": false}
				for name, v := range want {
					if alg == hsm.SealECDSAP256 && (name == "CKA_DECRYPT" || name == "CKA_UNWRAP") {
						continue // the EC template leaves them to the module
					}
					if flags[name] != v {
						t.Errorf("%s = %v, want %v", name, flags[name], v)
					}
				}
			})
		}
	}
}
