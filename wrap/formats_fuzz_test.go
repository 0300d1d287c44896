package wrap

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// FuzzParseParams: accepted params re-encode to params that parse again;
// every error is prefixed "invalid params file".
func FuzzParseParams(f *testing.F) {
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey(f).PublicKey)
	p := &Params{KeyARN: "arn:aws:kms:eu-west-1:111122223333:key/k", Region: "eu-west-1", Algorithm: RSAESOAEPSHA1, KeySpec: "RSA_2048",
		PublicKey: der, ImportToken: []byte("t"), ValidTo: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)}
	good, _ := p.Marshal()
	f.Add(good)
	f.Add([]byte(`{"format":"keyceremony/params/v1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseParams(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid params file") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseParams(out); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseBundle: as FuzzParseParams for bundles.
func FuzzParseBundle(f *testing.F) {
	b := &Bundle{KeyARN: "k", Algorithm: RSAAESKeyWrapSHA256, KeySpec: "RSA_2048", ImportToken: []byte("t"),
		ParamsValidTo: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), EncryptedKeyMaterial: []byte{1, 2}, KeyCheckValue: "abcdef"}
	good, _ := b.Marshal()
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid bundle file") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		out, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseBundle(out); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}
