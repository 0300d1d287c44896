package transcripts_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	"time"

	"github.com/keyceremony/keyceremony/transcripts"
)

func write(t *testing.T, key *ecdsa.PrivateKey, events int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.jsonl")
	w, err := transcripts.Create(path, transcripts.Header{CeremonyID: "c1", Tool: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < events; i++ {
		if err := w.Append("step", "operator", map[string]any{"i": i}); err != nil {
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
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := write(t, key, 4) // header, 4 events, seal: 6 lines
	res, err := transcripts.Verify(bytes.NewReader(good), &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 4 || !res.Pinned || res.Header.CeremonyID != "c1" {
		t.Fatalf("result %+v", res)
	}
	lines := strings.SplitAfter(string(good), "\n")
	lines = lines[:len(lines)-1]
	join := func(ls ...string) []byte { return []byte(strings.Join(ls, "")) }
	tests := []struct {
		name  string
		data  []byte
		pin   *ecdsa.PublicKey
		line  int
		field string
	}{
		{"delete event", join(lines[0], lines[1], lines[3], lines[4], lines[5]), nil, 3, "prev"},
		{"reorder events", join(lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]), nil, 2, "prev"},
		{"insert line", join(lines[0], lines[1], lines[1], lines[2], lines[3], lines[4], lines[5]), nil, 3, "prev"},
		{"remove seal", join(lines[0], lines[1], lines[2], lines[3], lines[4]), nil, 5, ""},
		{"truncate", good[:len(good)-1], nil, 6, ""},
		{"wrong signer", good, &other.PublicKey, 6, "public_key"},
		{"edit data", bytes.Replace(good, []byte(`"i":2`), []byte(`"i":7`), 1), nil, 5, "prev"},
		{"edit last event", join(lines[0], lines[1], lines[2], lines[3], strings.Replace(lines[4], `"i":3`, `"i":8`, 1), lines[5]), nil, 6, "prev"},
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

// TestFlipEveryByte flips each byte of a transcript in turn: every change
// must be detected.
func TestFlipEveryByte(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := write(t, key, 2)
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		if _, err := transcripts.Verify(bytes.NewReader(bad), nil); err == nil {
			t.Fatalf("flipping byte %d (%q) went unnoticed", i, good[i])
		}
	}
}

// TestOpenSSLVerifiesSeal checks the seal with the openssl command line,
// an implementation independent of Go's.
func TestOpenSSLVerifiesSeal(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
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
	w.Append("s", "a", map[string]any{"k": "v"})
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
// one: 2,000 keys, each generated, with parameters fetched, wrapped,
// imported and checked, with labels, key check values, file names and hashes.
var benchTranscript = sync.OnceValues(func() ([]byte, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dir, err := os.MkdirTemp("", "bench")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	w, err := transcripts.Create(filepath.Join(dir, "t"), transcripts.Header{CeremonyID: "bench", Tool: "test"})
	if err != nil {
		panic(err)
	}
	validTo := time.Now().Add(24 * time.Hour).UTC()
	h := strings.Repeat("9c01a8f3e2b4d5c6", 4)
	for i := 0; i < 2000; i++ {
		label := fmt.Sprintf("key-%04d", i)
		kcv := fmt.Sprintf("%06x", i*7919)
		arn := "arn:aws:kms:eu-west-1:111122223333:key/0d803dbf-dbab-4b23-b609-" + fmt.Sprintf("%012d", i)
		for _, e := range []struct {
			step string
			data map[string]any
		}{
			{"generate-key", map[string]any{"label": label, "id": "a1b2c3d4e5f60718", "key_check_value": kcv, "type": "AES-256"}},
			{"fetch-params", map[string]any{"label": label, "kms_key_arn": arn, "parameters_valid_to": validTo, "file": "params-" + label + ".json", "file_sha256": h}},
			{"wrap", map[string]any{"label": label, "kms_key_arn": arn, "in_hsm": true, "key_check_value": kcv, "file": "bundle-" + label + ".json", "file_sha256": h}},
			{"import", map[string]any{"label": label, "kms_key_arn": arn, "expiration_model": "KEY_MATERIAL_DOES_NOT_EXPIRE", "key_check_value": kcv}},
			{"check-import", map[string]any{"label": label, "kms_key_arn": arn, "key_state": "Enabled", "encrypt_decrypt": "ok"}},
		} {
			if err := w.Append(e.step, "operator", e.data); err != nil {
				panic(err)
			}
		}
	}
	if _, err := w.Seal(key); err != nil {
		panic(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "t"))
	if err != nil {
		panic(err)
	}
	return data, key
})

// BenchmarkVerify10000 verifies a 10,000-event transcript as keyceremony
// verify --pubkey does. Compare with BenchmarkRaw10000.
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
