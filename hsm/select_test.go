package hsm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestSelection checks that every token, slot and library attribute of a URI
// narrows the choice, and that two matching tokens are refused before any
// PIN is tried.
func TestSelection(t *testing.T) {
	hsmtest.Setup(t, "dup", "dup", "solo")
	uri := func(s string) *hsm.URI {
		u, err := hsm.ParseURI(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	solo := open(t, "solo")
	in := solo.Info()
	_ = solo.Close()
	for _, tt := range []struct {
		name string
		cfg  hsm.Config
		is   error
		msg  string
	}{
		{"two tokens, wrong PIN", hsm.Config{TokenLabel: "dup", PIN: []byte("9999")}, hsm.ErrAmbiguous, `2 tokens match label "dup"`},
		{"wrong manufacturer", hsm.Config{URI: uri("pkcs11:token=solo;manufacturer=Thales")}, hsm.ErrTokenNotFound, `manufacturer "Thales"`},
		{"wrong model", hsm.Config{URI: uri("pkcs11:token=solo;model=Luna")}, hsm.ErrTokenNotFound, `model "Luna"`},
		{"wrong slot", hsm.Config{URI: uri("pkcs11:token=solo;slot-id=4242")}, hsm.ErrTokenNotFound, "slot-id 4242"},
		{"wrong library", hsm.Config{URI: uri("pkcs11:token=solo;library-description=NSS")}, hsm.ErrTokenNotFound, `library-description "NSS"`},
		{"wrong library version", hsm.Config{URI: uri("pkcs11:token=solo;library-version=1")}, hsm.ErrTokenNotFound, `library-version "1"`},
		{"label and URI disagree", hsm.Config{TokenLabel: "dup", URI: uri("pkcs11:token=solo")}, hsm.ErrTokenNotFound, "contradicts"},
		{"right everything", hsm.Config{URI: uri("pkcs11:token=solo;manufacturer=" + strings.ReplaceAll(in.Manufacturer, " ", "%20") + ";model=" + strings.ReplaceAll(in.Model, " ", "%20") + ";slot-id=" + itoa(in.SlotID) + ";serial=" + in.Serial)}, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Module = hsmtest.Module
			if cfg.PIN == nil {
				cfg.PIN = []byte(hsmtest.PIN)
			}
			tok, err := hsm.Open(cfg)
			if tt.is == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tok.Info().Serial != in.Serial {
					t.Errorf("opened %+v", tok.Info())
				}
				_ = tok.Close()
				return
			}
			if err == nil {
				_ = tok.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want %v with %q", err, tt.is, tt.msg)
			}
		})
	}
}

func itoa(n uint) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestKeyFactsUnwrapped: SoftHSM 2.6.1 gives an unwrapped key no
// CKA_VALUE_LEN; its size is still found (a recovered key must be wrappable
// for KMS).
func TestKeyFactsUnwrapped(t *testing.T) {
	for name, mk := range modules() {
		t.Run(name, func(t *testing.T) {
			tok := mk(t)
			kek := make([]byte, 32)
			kek[0] = 1
			kk, err := tok.ImportKEK(kek)
			if err != nil {
				t.Fatal(err)
			}
			k, err := tok.GenerateAESKey("a", []byte("a"))
			if err != nil {
				t.Fatal(err)
			}
			w, err := tok.WrapKWP(kk, k)
			if err != nil {
				t.Fatal(err)
			}
			k2, err := tok.UnwrapKWP(kk, w, "b", []byte("b"), true)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range []*hsm.Key{k, k2} {
				f, err := tok.CheckForeignKey(key, false)
				if err != nil || f.Bits != 256 || f.KeyType != "AES" || len(f.Usage()) != 0 {
					t.Errorf("key %s: %+v, %v", key.Label, f, err)
				}
			}
		})
	}
}
