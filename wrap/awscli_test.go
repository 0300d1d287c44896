package wrap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testKeyOnce sync.Once
	testKey     *rsa.PrivateKey
)

func rsaKey(t testing.TB) *rsa.PrivateKey {
	testKeyOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testKey
}

func TestEncryptOnHostRoundTrip(t *testing.T) {
	priv := rsaKey(t)
	material := bytes.Repeat([]byte{0x5a}, 32)
	for _, alg := range Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			ct, err := EncryptOnHost(nil, alg, &priv.PublicKey, material)
			if err != nil {
				t.Fatal(err)
			}
			want := 256
			if alg.KeyWrap() {
				want += 40
			}
			if len(ct) != want {
				t.Fatalf("ciphertext %d bytes, want %d", len(ct), want)
			}
			back, err := DecryptOnHost(alg, priv, ct)
			if err != nil || !bytes.Equal(back, material) {
				t.Fatalf("DecryptOnHost = %x, %v", back, err)
			}
			// The wrong hash must not decrypt.
			other := map[Algorithm]Algorithm{RSAESOAEPSHA1: RSAESOAEPSHA256, RSAESOAEPSHA256: RSAESOAEPSHA1, RSAAESKeyWrapSHA1: RSAAESKeyWrapSHA256, RSAAESKeyWrapSHA256: RSAAESKeyWrapSHA1}[alg]
			if _, err := DecryptOnHost(other, priv, ct); err == nil {
				t.Fatalf("%s ciphertext decrypted as %s", alg, other)
			}
		})
	}
	if _, err := EncryptOnHost(nil, "RSAES_PKCS1_V1_5", &priv.PublicKey, material); err == nil || !strings.Contains(err.Error(), "no longer accepted") {
		t.Errorf("PKCS1 v1.5: err = %v", err)
	}
	if _, err := EncryptOnHost(nil, RSAESOAEPSHA1, &priv.PublicKey, nil); err == nil {
		t.Error("empty material accepted")
	}
}

func awsJSON(pub, tok []byte, validTo string) []byte {
	return []byte(fmt.Sprintf(`{
    "KeyId": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "ImportToken": %q,
    "PublicKey": %q,
    "ParametersValidTo": %s
}
`, base64.StdEncoding.EncodeToString(tok), base64.StdEncoding.EncodeToString(pub), validTo))
}

func TestParseAWSCLIParams(t *testing.T) {
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey(t).PublicKey)
	tok := []byte("opaque-import-token")
	want := time.Date(2026, 11, 24, 18, 35, 16, 597000000, time.UTC)
	for _, vt := range []string{`"2026-11-24T10:35:16.597000-08:00"`, `"2026-11-24T18:35:16.597Z"`, `1795545316.597`} {
		t.Run(vt, func(t *testing.T) {
			p, err := ParseAWSCLIParams(awsJSON(der, tok, vt), RSAAESKeyWrapSHA256)
			if err != nil {
				t.Fatal(err)
			}
			if !p.ValidTo.Truncate(time.Millisecond).Equal(want) {
				t.Errorf("ValidTo = %s, want %s", p.ValidTo, want)
			}
			if p.Region != "eu-west-1" || p.KeySpec != "RSA_2048" || p.Algorithm != RSAAESKeyWrapSHA256 || !bytes.Equal(p.ImportToken, tok) {
				t.Errorf("params = %+v", p)
			}
			// It must survive our own format's round trip.
			data, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseParams(data); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseAWSCLIParamsErrors(t *testing.T) {
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey(t).PublicKey)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	good := string(awsJSON(der, []byte("t"), `"2026-11-24T18:35:16Z"`))
	tests := []struct {
		name, data string
		alg        Algorithm
		want       string
	}{
		{"unknown field", strings.Replace(good, `"KeyId"`, `"Extra": 1, "KeyId"`, 1), RSAESOAEPSHA256, `unknown field "Extra"`},
		{"trailing data", good + "{}", RSAESOAEPSHA256, "trailing data"},
		{"bad base64", strings.Replace(good, `"PublicKey": "`, `"PublicKey": "!`, 1), RSAESOAEPSHA256, "PublicKey is not base64"},
		{"no valid to", strings.Replace(good, `"2026-11-24T18:35:16Z"`, `null`, 1), RSAESOAEPSHA256, "ParametersValidTo: missing"},
		{"bad valid to", strings.Replace(good, `"2026-11-24T18:35:16Z"`, `"tomorrow"`, 1), RSAESOAEPSHA256, "not an ISO 8601 time"},
		{"pkcs1", good, "RSAES_PKCS1_V1_5", "no longer accepted"},
		{"not rsa", string(awsJSON(ecDER, []byte("t"), `1795545316`)), RSAESOAEPSHA1, "not one of RSA_2048"},
		{"no token", string(awsJSON(der, nil, `1795545316`)), RSAESOAEPSHA1, "import_token is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAWSCLIParams([]byte(tt.data), tt.alg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestParamsFromFiles(t *testing.T) {
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey(t).PublicKey)
	vt := time.Now().Add(time.Hour)
	p, err := ParamsFromFiles("arn:aws:kms:us-east-2:111122223333:key/k", der, []byte("tok"), RSAESOAEPSHA1, vt)
	if err != nil {
		t.Fatal(err)
	}
	if p.Region != "us-east-2" || p.KeySpec != "RSA_2048" {
		t.Errorf("params = %+v", p)
	}
	if _, err := ParamsFromFiles("", der, []byte("tok"), RSAESOAEPSHA1, vt); err == nil || !strings.Contains(err.Error(), "key_arn") {
		t.Errorf("empty ARN: %v", err)
	}
	if _, err := ParamsFromFiles("k", []byte("junk"), []byte("tok"), RSAESOAEPSHA1, vt); err == nil {
		t.Error("junk public key accepted")
	}
}

func TestRegionOf(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:kms:us-east-1:111122223333:key/abc":    "us-east-1",
		"arn:aws-cn:kms:cn-north-1:111122223333:key/ab": "cn-north-1",
		"1234abcd-12ab-34cd-56ef-1234567890ab":          "",
		"arn:aws:s3:::bucket":                           "",
	} {
		if got := RegionOf(in); got != want {
			t.Errorf("RegionOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseAWSCLIParams(f *testing.F) {
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey(f).PublicKey)
	f.Add(awsJSON(der, []byte("t"), `"2026-11-24T18:35:16Z"`))
	f.Add(awsJSON(der, []byte("t"), `1795545316.5`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseAWSCLIParams(data, RSAESOAEPSHA256)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid aws kms get-parameters-for-import output: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseParams(out); err != nil {
			t.Fatalf("accepted AWS params do not round-trip: %v", err)
		}
	})
}

// BenchmarkEncryptOnHost times the host half of a host-path wrap (RSA-2048).
func BenchmarkEncryptOnHost(b *testing.B) {
	pub := &rsaKey(b).PublicKey
	material := bytes.Repeat([]byte{1}, 32)
	for _, alg := range Algorithms {
		b.Run(string(alg), func(b *testing.B) {
			for b.Loop() {
				if _, err := EncryptOnHost(nil, alg, pub, material); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKeyWrapPad times RFC 5649 over a 32-byte key.
func BenchmarkKeyWrapPad(b *testing.B) {
	kek, p := bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	for b.Loop() {
		if _, err := KeyWrapPad(kek, p); err != nil {
			b.Fatal(err)
		}
	}
}
