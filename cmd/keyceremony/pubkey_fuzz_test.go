package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// FuzzParseECPublicKey: the --pubkey reader returns a seal key (ECDSA
// P-256 or RSA 3072) that re-encodes to a file it reads back as the same
// key, or a one-line error naming the file.
func FuzzParseECPublicKey(f *testing.F) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pemPublicKey(f, &k.PublicKey))
	}
	for _, bits := range []int{1024, 3072} {
		r, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pemPublicKey(f, &r.PublicKey))
	}
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("not pem"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parseSealPublicKey(data, "signing-key.pem")
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "signing-key.pem") {
				t.Fatalf("error %q is not one line naming the file", msg)
			}
			return
		}
		again, err := parseSealPublicKey(pemPublicKey(t, k), "again.pem")
		if err != nil || !again.(interface{ Equal(crypto.PublicKey) bool }).Equal(k) {
			t.Fatalf("re-encoded key reads back as %v, %v", again, err)
		}
	})
}

func pemPublicKey(t testing.TB, k any) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
