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

	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
	"github.com/keyceremony/keyceremony/transcripts/transcriptstest"
)

func write(t *testing.T, key *ecdsa.PrivateKey, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.jsonl")
	w, err := transcripts.Create(path, transcripts.Header{CeremonyID: "c1", Tool: "test"})
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
