// Package transcriptstest makes transcripts for tests and benchmarks.
package transcriptstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// Sealed10000 is a sealed transcript of 10,000 events shaped like a real
// one: 2,000 keys, each generated, with import parameters fetched, wrapped,
// imported and checked. Dir holds transcript.jsonl, signing-key.pem,
// seal.payload and seal.sig (as a ceremony leaves them).
type Sealed10000 struct {
	Dir, Transcript, PublicKey, Payload, Signature string
	Key                                            *ecdsa.PrivateKey
}

// WriteSealed10000 writes a Sealed10000 into dir. Every line is synced as
// a ceremony syncs it: give it a directory on a RAM disk (/dev/shm) to
// make it fast.
func WriteSealed10000(dir string) (*Sealed10000, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &Sealed10000{Dir: dir, Transcript: filepath.Join(dir, "transcript.jsonl"), PublicKey: filepath.Join(dir, "signing-key.pem"),
		Payload: filepath.Join(dir, "seal.payload"), Signature: filepath.Join(dir, "seal.sig"), Key: key}
	sk, err := transcripts.NewSigningKey("bench", &key.PublicKey)
	if err != nil {
		return nil, err
	}
	w, err := transcripts.Create(s.Transcript, transcripts.Header{CeremonyID: "bench", Tool: "test", SigningKey: sk})
	if err != nil {
		return nil, err
	}
	validTo := time.Now().Add(24 * time.Hour).UTC()
	h := strings.Repeat("9c01a8f3e2b4d5c6", 4)
	for i := 0; i < 2000; i++ {
		label := fmt.Sprintf("key-%04d", i)
		kcv := fmt.Sprintf("%06x", i*7919)
		arn := "arn:aws:kms:eu-west-1:111122223333:key/0d803dbf-dbab-4b23-b609-" + fmt.Sprintf("%012d", i)
		for _, e := range []events.Data{
			&events.GenerateKey{Label: label, ID: "a1b2c3d4e5f60718", KeyCheckValue: kcv, Type: "AES-256", Attributes: events.KeyAttributes},
			&events.FetchParams{Label: label, KMSKeyARN: arn, WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_4096",
				PublicKeySHA256: h, ImportTokenSHA256: h, ParametersValidTo: validTo, File: "params-" + label + ".json", FileSHA256: h},
			&events.Wrap{Label: label, KMSKeyARN: arn, WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_4096", InHSM: true,
				Method: "CKM_RSA_PKCS_OAEP", EncryptedKeyMaterialSHA256: h, KeyCheckValue: kcv, File: "bundle-" + label + ".json", FileSHA256: h},
			&events.Import{Label: label, KMSKeyARN: arn, ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE", KeyCheckValue: kcv},
			&events.CheckImport{Label: label, KMSKeyARN: arn, KeyState: "Enabled", ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE", EncryptDecrypt: "ok"},
		} {
			if err := w.Append("operator", e); err != nil {
				return nil, err
			}
		}
	}
	seal, err := w.Seal(key)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{s.PublicKey, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})},
		{s.Payload, w.SealPayload()},
		{s.Signature, seal.Signature},
	} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// TempDir returns a new directory on a RAM disk when there is one, and
// a function that removes it.
func TempDir() (string, func(), error) {
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "keyceremony-bench-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
