package transcripts_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
	"github.com/keyceremony/keyceremony/transcripts/transcriptstest"
)

// rsaKey is a 3072-bit RSA key, the seal key of a token that cannot make
// an ECDSA P-256 key; made once (it takes a while).
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		panic(err)
	}
	return k
})

// sealKeys are a key of each seal algorithm.
func sealKeys() map[string]crypto.Signer {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return map[string]crypto.Signer{transcripts.SealECDSAP256: ec, transcripts.SealRSA3072: rsaKey()}
}

func write(t *testing.T, key crypto.Signer, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.jsonl")
	sk, err := transcripts.NewSigningKey("seal", key.Public())
	if err != nil {
		t.Fatal(err)
	}
	w, err := transcripts.Create(path, transcripts.Header{CeremonyID: "c1", Tool: "test", SigningKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := w.Append("operator", &events.StepDone{ID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Seal(key); err != nil {
		t.Fatal(err)
	}
	if _, err := transcripts.Create(path, transcripts.Header{}); err == nil {
		t.Fatal("Create overwrote an existing transcript")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerify(t *testing.T) {
	for alg, key := range sealKeys() {
		t.Run(alg, func(t *testing.T) { testVerify(t, alg, key) })
	}
}

func testVerify(t *testing.T, alg string, key crypto.Signer) {
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := write(t, key, 4) // header, 4 events, seal: 6 lines
	res, err := transcripts.Verify(bytes.NewReader(good), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 4 || !res.Pinned || res.Header.CeremonyID != "c1" || res.Seal.Algorithm != alg || res.Header.SigningKey.Algorithm != alg {
		t.Fatalf("result %+v", res)
	}
	lines := strings.SplitAfter(string(good), "\n")
	lines = lines[:len(lines)-1]
	join := func(ls ...string) []byte { return []byte(strings.Join(ls, "")) }
	tests := []struct {
		name  string
		data  []byte
		pin   crypto.PublicKey
		line  int
		field string
	}{
		{"delete event", join(lines[0], lines[1], lines[3], lines[4], lines[5]), nil, 3, "prev"},
		{"reorder events", join(lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]), nil, 2, "prev"},
		{"insert line", join(lines[0], lines[1], lines[1], lines[2], lines[3], lines[4], lines[5]), nil, 3, "prev"},
		{"remove seal", join(lines[0], lines[1], lines[2], lines[3], lines[4]), nil, 5, ""},
		{"truncate", good[:len(good)-1], nil, 6, ""},
		{"wrong signer", good, &other.PublicKey, 6, "public_key"},
		{"edit data", bytes.Replace(good, []byte(`"id":"2"`), []byte(`"id":"7"`), 1), nil, 5, "prev"},
		{"edit last event", join(lines[0], lines[1], lines[2], lines[3], strings.Replace(lines[4], `"id":"3"`, `"id":"8"`, 1), lines[5]), nil, 6, "prev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transcripts.Verify(bytes.NewReader(tt.data), tt.pin)
			var ve *transcripts.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a VerifyError", err)
			}
			if ve.Line != tt.line || ve.Field != tt.field {
				t.Errorf("line %d field %q, want line %d field %q: %v", ve.Line, ve.Field, tt.line, tt.field, err)
			}
		})
	}
}

// TestFlipEveryByte flips each byte of a transcript in turn, sealed with
// each algorithm: every change must be detected.
func TestFlipEveryByte(t *testing.T) {
	for alg, key := range sealKeys() {
		good := write(t, key, 2)
		for i := range good {
			bad := bytes.Clone(good)
			bad[i] ^= 0x01
			if _, err := transcripts.Verify(bytes.NewReader(bad), nil); err == nil {
				t.Fatalf("%s: flipping byte %d (%q) went unnoticed", alg, i, good[i])
			}
		}
	}
}

// TestSealKeys: only ECDSA P-256 and RSA 3072 (exponent 65537) keys seal; a
// seal or header whose algorithm is not its key's is refused.
func TestSealKeys(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, k := range []crypto.PublicKey{&p384.PublicKey, &r2048.PublicKey} {
		if _, err := transcripts.NewSigningKey("x", k); err == nil {
			t.Errorf("NewSigningKey took a %T", k)
		}
		spki, _ := x509.MarshalPKIXPublicKey(k)
		if _, _, err := transcripts.ParseSealKey(spki); err == nil {
			t.Errorf("ParseSealKey took a %T", k)
		}
	}
	good := write(t, rsaKey(), 1)
	for _, c := range []struct {
		name, from, to string
		line           int
		field          string
	}{
		// The seal line is hashed by no later line: its algorithm must be
		// its key's. The header is chained: an edit breaks line 2's prev.
		{"seal algorithm", `"algorithm":"` + transcripts.SealRSA3072 + `","public_key"`, `"algorithm":"` + transcripts.SealECDSAP256 + `","public_key"`, 3, "algorithm"},
		{"header algorithm", `"algorithm":"` + transcripts.SealRSA3072 + `"},`, `"algorithm":"` + transcripts.SealECDSAP256 + `"},`, 2, "prev"},
	} {
		bad := bytes.Replace(good, []byte(c.from), []byte(c.to), 1)
		if bytes.Equal(bad, good) {
			t.Fatalf("%s: nothing replaced", c.name)
		}
		_, err := transcripts.Verify(bytes.NewReader(bad), nil)
		var ve *transcripts.VerifyError
		if !errors.As(err, &ve) || ve.Line != c.line || ve.Field != c.field {
			t.Errorf("%s: got %v, want line %d field %s", c.name, err, c.line, c.field)
		}
	}
}

// TestOpenSSLVerifiesSeal checks the seal of each algorithm with the
// openssl command line, an implementation independent of Go's.
func TestOpenSSLVerifiesSeal(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for alg, key := range sealKeys() {
		t.Run(alg, func(t *testing.T) { testOpenSSL(t, key) })
	}
}

func testOpenSSL(t *testing.T, key crypto.Signer) {
	good := write(t, key, 3)
	res, err := transcripts.Verify(bytes.NewReader(good), nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := transcripts.SignedPayload(good)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	os.WriteFile(filepath.Join(dir, "pub.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644)
	os.WriteFile(filepath.Join(dir, "payload"), payload, 0o644)
	os.WriteFile(filepath.Join(dir, "seal.sig"), res.Seal.Signature, 0o644)
	out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", filepath.Join(dir, "pub.pem"), "-signature", filepath.Join(dir, "seal.sig"), filepath.Join(dir, "payload")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("openssl: %v: %s", err, out)
	}
	payload[10] ^= 1
	os.WriteFile(filepath.Join(dir, "payload"), payload, 0o644)
	if out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", filepath.Join(dir, "pub.pem"), "-signature", filepath.Join(dir, "seal.sig"), filepath.Join(dir, "payload")).CombinedOutput(); err == nil {
		t.Fatalf("openssl verified a changed payload: %s", out)
	}
}

func FuzzVerify(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dir := f.TempDir()
	w, _ := transcripts.Create(filepath.Join(dir, "t"), transcripts.Header{CeremonyID: "c"})
	w.Append("a", &events.StepDone{ID: "v"})
	w.Seal(key)
	seed, _ := os.ReadFile(filepath.Join(dir, "t"))
	f.Add(seed)
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := transcripts.Verify(bytes.NewReader(b), nil)
		var ve *transcripts.VerifyError
		if err != nil && !errors.As(err, &ve) && !strings.HasPrefix(err.Error(), "failed to read") {
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}

// benchTranscript is a sealed 10,000-event transcript shaped like a real
// one (see transcriptstest.Sealed10000).
var benchTranscript = sync.OnceValues(func() ([]byte, *ecdsa.PrivateKey) {
	dir, done, err := transcriptstest.TempDir()
	if err != nil {
		panic(err)
	}
	defer done()
	s, err := transcriptstest.WriteSealed10000(dir)
	if err != nil {
		panic(err)
	}
	data, err := os.ReadFile(s.Transcript)
	if err != nil {
		panic(err)
	}
	return data, s.Key
})

// BenchmarkVerify10000 verifies a 10,000-event transcript as keyceremony
// verify --pubkey does, in the test process. Compare with BenchmarkRaw10000;
// cmd/keyceremony's BenchmarkVerifyProcess10000 compares the processes.
func BenchmarkVerify10000(b *testing.B) {
	data, key := benchTranscript()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := transcripts.VerifyBytes(data, transcripts.Options{PublicKey: &key.PublicKey}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRaw10000 is the floor BenchmarkVerify10000 is measured against:
// one SHA-256 over the same transcript's bytes plus one ECDSA signature
// check.
func BenchmarkRaw10000(b *testing.B) {
	data, key := benchTranscript()
	digest := sha256.Sum256(data)
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		d := sha256.Sum256(data)
		if !ecdsa.VerifyASN1(&key.PublicKey, d[:], sig) {
			b.Fatal("bad signature")
		}
	}
}
