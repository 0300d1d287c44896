package hsm_test

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/wrap"
)

// wrappingKeys are the test's stand-ins for KMS wrapping key pairs, made once
// per test binary (RSA-4096 key generation is slow).
var (
	wrappingKeysOnce sync.Once
	wrappingKeys     map[string]*rsa.PrivateKey
)

func wrappingKey(t testing.TB, spec string) *rsa.PrivateKey {
	t.Helper()
	wrappingKeysOnce.Do(func() {
		wrappingKeys = map[string]*rsa.PrivateKey{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for spec, bits := range map[string]int{"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, err := rsa.GenerateKey(rand.Reader, bits)
				if err != nil {
					panic(err)
				}
				mu.Lock()
				wrappingKeys[spec] = k
				mu.Unlock()
			}()
		}
		wg.Wait()
	})
	return wrappingKeys[spec]
}

func writePrivatePEM(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "priv.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func openssl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		msg := "openssl not found; install it with: apt-get install -y openssl"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// opensslUnwrap undoes a KMS wrap with the openssl command line only:
// pkeyutl for RSA-OAEP, enc -id-aes256-wrap-pad for the AES part.
func opensslUnwrap(t *testing.T, alg wrap.Algorithm, privPEM string, size int, ct []byte) []byte {
	t.Helper()
	md := "sha1"
	if alg == wrap.RSAESOAEPSHA256 || alg == wrap.RSAAESKeyWrapSHA256 {
		md = "sha256"
	}
	oaep := []string{"pkeyutl", "-decrypt", "-inkey", privPEM, "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:" + md, "-pkeyopt", "rsa_mgf1_md:" + md}
	if !alg.KeyWrap() {
		return openssl(t, ct, oaep...)
	}
	if len(ct) <= size {
		t.Fatalf("%s ciphertext is only %d bytes", alg, len(ct))
	}
	eph := openssl(t, ct[:size], oaep...)
	if len(eph) != 32 {
		t.Fatalf("ephemeral key is %d bytes, want 32", len(eph))
	}
	return openssl(t, ct[size:], "enc", "-d", "-id-aes256-wrap-pad", "-iv", "A65959A6", "-K", hex.EncodeToString(eph))
}

func kcvOf(t *testing.T, material []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(material)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 16)
	b.Encrypt(out, out)
	return out[:3]
}

func TestMechanisms(t *testing.T) {
	hsmtest.Setup(t, "mech")
	tok := open(t, "mech")
	ms, err := tok.Mechanisms()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]hsm.Mechanism{}
	for _, m := range ms {
		byID[m.Name] = m
	}
	for _, name := range []string{"CKM_RSA_PKCS_OAEP", "CKM_AES_KEY_WRAP_PAD"} {
		m, ok := byID[name]
		if !ok {
			t.Errorf("SoftHSM does not list %s", name)
			continue
		}
		if !m.CanWrap() {
			t.Errorf("%s is listed without CKF_WRAP", name)
		}
	}
	// SoftHSM 2.6.1 has no CKM_RSA_AES_KEY_WRAP (../shared/SOFTHSM.md).
	if _, ok := byID["CKM_RSA_AES_KEY_WRAP"]; ok {
		t.Log("this SoftHSM lists CKM_RSA_AES_KEY_WRAP")
	}
}

// TestInHSMAlgorithms checks the probe finds what SoftHSM 2.6.1 really does:
// OAEP with SHA-1 only, and KWP.
func TestInHSMAlgorithms(t *testing.T) {
	hsmtest.Setup(t, "probe")
	tok := open(t, "probe")
	got, err := tok.InHSMAlgorithms(&wrappingKey(t, "RSA_2048").PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	want := []wrap.Algorithm{wrap.RSAESOAEPSHA1, wrap.RSAAESKeyWrapSHA1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("InHSMAlgorithms = %v, want %v", got, want)
	}
}

// TestWrapForKMSOpenSSL wraps a SoftHSM key for all twelve combinations of
// algorithm and wrapping key size, then unwraps with the openssl command line
// and compares the key check value with the token's.
func TestWrapForKMSOpenSSL(t *testing.T) {
	hsmtest.Setup(t, "wrap12")
	tok := open(t, "wrap12")
	key, err := tok.GenerateAESKey("material", []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	kcv, err := tok.CheckValue(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range wrap.KeySpecs {
		priv := wrappingKey(t, spec)
		privPEM := writePrivatePEM(t, priv)
		for _, alg := range wrap.Algorithms {
			t.Run(spec+"/"+string(alg), func(t *testing.T) {
				w, err := tok.WrapForKMS(key, &priv.PublicKey, alg, true)
				if err != nil {
					t.Fatal(err)
				}
				// SoftHSM 2.6.1 does OAEP with SHA-1 only: SHA-256 must
				// take the host path, SHA-1 must stay inside.
				wantIn := alg.Hash().String() == "SHA-1"
				if w.InHSM != wantIn {
					t.Fatalf("InHSM = %v (method %q, reason %q), want %v", w.InHSM, w.Method, w.HostReason, wantIn)
				}
				if !w.InHSM && !strings.Contains(w.HostReason, "CKR_ARGUMENTS_BAD") {
					t.Errorf("HostReason %q does not give the token's CKR_ code", w.HostReason)
				}
				if w.InHSM && w.HostReason != "" {
					t.Errorf("in-HSM wrap has a HostReason %q", w.HostReason)
				}
				wantLen := priv.Size()
				if alg.KeyWrap() {
					wantLen += 40
				}
				if len(w.Ciphertext) != wantLen {
					t.Fatalf("ciphertext is %d bytes, want %d", len(w.Ciphertext), wantLen)
				}
				material := opensslUnwrap(t, alg, privPEM, priv.Size(), w.Ciphertext)
				if len(material) != 32 {
					t.Fatalf("openssl unwrapped %d bytes, want 32", len(material))
				}
				if got := kcvOf(t, material); !bytes.Equal(got, kcv) {
					t.Fatalf("check value of unwrapped material %x, token says %x", got, kcv)
				}
			})
		}
	}
}

func TestWrapForKMSRefusesHostWithoutPermission(t *testing.T) {
	hsmtest.Setup(t, "refuse")
	tok := open(t, "refuse")
	key, err := tok.GenerateAESKey("material", []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	pub := &wrappingKey(t, "RSA_2048").PublicKey
	for _, alg := range []wrap.Algorithm{wrap.RSAESOAEPSHA256, wrap.RSAAESKeyWrapSHA256} {
		t.Run(string(alg), func(t *testing.T) {
			w, err := tok.WrapForKMS(key, pub, alg, false)
			if err == nil {
				t.Fatalf("WrapForKMS succeeded: %+v", w)
			}
			if !errors.Is(err, hsm.ErrMechanism) {
				t.Errorf("error does not wrap ErrMechanism: %v", err)
			}
			for _, want := range []string{"inside the HSM it can do: RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_1", "--allow-host-wrap", "kms.allow_host_wrap", "CKR_ARGUMENTS_BAD"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

// TestRSAAESKeyWrapFallback makes WrapForKMS try CKM_RSA_AES_KEY_WRAP on
// SoftHSM, which refuses it: the wrap must be composed on the token instead,
// and say so.
func TestRSAAESKeyWrapFallback(t *testing.T) {
	hsmtest.Setup(t, "fallback")
	tok := open(t, "fallback")
	key, err := tok.GenerateAESKey("material", []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	hsm.SetTestOnlyForceRSAAES(true)
	t.Cleanup(func() { hsm.SetTestOnlyForceRSAAES(false) })
	priv := wrappingKey(t, "RSA_2048")
	w, err := tok.WrapForKMS(key, &priv.PublicKey, wrap.RSAAESKeyWrapSHA1, false)
	if err != nil {
		t.Fatal(err)
	}
	if !w.InHSM || !strings.Contains(w.Method, "composed on token") || !strings.Contains(w.Method, "CKR_MECHANISM_INVALID") {
		t.Fatalf("wrap = InHSM %v, method %q; want composed on token after CKR_MECHANISM_INVALID", w.InHSM, w.Method)
	}
	material, err := wrap.DecryptOnHost(wrap.RSAAESKeyWrapSHA1, priv, w.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	kcv, _ := tok.CheckValue(key)
	if !bytes.Equal(kcvOf(t, material), kcv) {
		t.Fatal("unwrapped material does not match the token's check value")
	}
}

// TestWrapForKMSHostPathSHA1 forces the host path for an algorithm the token
// can do, to check the host path itself against openssl for SHA-1 as well.
func TestWrapForKMSHostPathSHA1(t *testing.T) {
	hsmtest.Setup(t, "host")
	tok := open(t, "host")
	key, err := tok.GenerateAESKey("material", []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	kcv, _ := tok.CheckValue(key)
	hsm.SetTestOnlyForceHost(true)
	t.Cleanup(func() { hsm.SetTestOnlyForceHost(false) })
	priv := wrappingKey(t, "RSA_2048")
	privPEM := writePrivatePEM(t, priv)
	for _, alg := range []wrap.Algorithm{wrap.RSAESOAEPSHA1, wrap.RSAAESKeyWrapSHA1} {
		w, err := tok.WrapForKMS(key, &priv.PublicKey, alg, true)
		if err != nil {
			t.Fatal(err)
		}
		if w.InHSM || !strings.HasPrefix(w.Method, "host:") {
			t.Fatalf("%s: InHSM %v method %q, want the host path", alg, w.InHSM, w.Method)
		}
		if got := kcvOf(t, opensslUnwrap(t, alg, privPEM, priv.Size(), w.Ciphertext)); !bytes.Equal(got, kcv) {
			t.Fatalf("%s: check value %x, token says %x", alg, got, kcv)
		}
	}
}

// BenchmarkWrapForKMS times one key's wrap per algorithm, inside the HSM
// where SoftHSM can and on the host, under an RSA-2048 wrapping key.
func BenchmarkWrapForKMS(b *testing.B) {
	hsmtest.Setup(b, "bench")
	tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "bench", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.GenerateAESKey("material", []byte{1})
	if err != nil {
		b.Fatal(err)
	}
	for _, spec := range []string{"RSA_2048", "RSA_3072", "RSA_4096"} {
		pub := &wrappingKey(b, spec).PublicKey
		for _, alg := range wrap.Algorithms {
			for _, path := range []string{"in-hsm", "host"} {
				if path == "in-hsm" && alg.Hash().String() != "SHA-1" {
					continue // SoftHSM 2.6.1 cannot
				}
				b.Run(fmt.Sprintf("%s/%s/%s", spec, alg, path), func(b *testing.B) {
					hsm.SetTestOnlyForceHost(path == "host")
					defer hsm.SetTestOnlyForceHost(false)
					for b.Loop() {
						w, err := tok.WrapForKMS(key, pub, alg, true)
						if err != nil {
							b.Fatal(err)
						}
						if w.InHSM != (path == "in-hsm") {
							b.Fatalf("InHSM = %v", w.InHSM)
						}
					}
				})
			}
		}
	}
}
