package transcripts

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/strict")

// strictEdits make transcripts whose lines chain and whose seal verifies,
// but one line of which is not as keyceremony writes it: each must be
// refused. The vectors are in testdata/strict (go test -update rewrites
// them), with the expected outcome of each in expect.txt.
var strictEdits = []struct {
	file string
	line int // 1-based; 0 for none (good.jsonl)
	edit func(string) string
}{
	{"good.jsonl", 0, nil},
	{"duplicate-ceremony-id.jsonl", 1, func(l string) string {
		return strings.Replace(l, `{"type":"header",`, `{"type":"header","ceremony_id":"other",`, 1)
	}},
	{"name-in-other-case.jsonl", 1, func(l string) string { return strings.Replace(l, `"ceremony_id"`, `"Ceremony_ID"`, 1) }},
	{"invalid-utf8.jsonl", 1, func(l string) string { return strings.Replace(l, `"tool":"test"`, "\"tool\":\"te\xffst\"", 1) }},
	{"unpaired-surrogate.jsonl", 1, func(l string) string { return strings.Replace(l, `"tool":"test"`, `"tool":"te\ud800st"`, 1) }},
	{"trailing-data.jsonl", 2, func(l string) string { return l + ` {}` }},
	{"duplicate-in-data.jsonl", 2, func(l string) string { return strings.Replace(l, `"data":{`, `"data":{"label":"other",`, 1) }},
	{"unknown-field.jsonl", 2, func(l string) string { return strings.Replace(l, `"data":{`, `"data":{"note":"x",`, 1) }},
	{"unknown-event.jsonl", 2, func(l string) string { return strings.Replace(l, `"step":"generate-key"`, `"step":"teleport"`, 1) }},
}

var prevRE = regexp.MustCompile(`"prev":"[0-9a-f]{64}"`)

// rechain sets every line's prev to the hash of the line before and adds a
// seal by key.
func rechain(t *testing.T, lines []string, key *ecdsa.PrivateKey) []byte {
	prev := zeroHash
	var out bytes.Buffer
	for i, l := range lines {
		l = prevRE.ReplaceAllLiteralString(l, `"prev":"`+prev+`"`)
		lines[i] = l
		out.WriteString(l + "\n")
		sum := sha256.Sum256([]byte(l))
		prev = hex.EncodeToString(sum[:])
	}
	sk, _ := NewSigningKey("", &key.PublicKey)
	payload := SealPayload("c1", len(lines), prev, sk.Fingerprint)
	digest := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	seal, _ := json.Marshal(&Seal{Type: "seal", Seq: len(lines), Algorithm: SealAlgorithm, PublicKey: sk.PublicKey, Fingerprint: sk.Fingerprint,
		PayloadHash: hex.EncodeToString(digest[:]), Words: Words(digest[:WordCount]), Signature: sig, Prev: prev})
	out.Write(append(seal, '\n'))
	return out.Bytes()
}

func writeStrictVectors(t *testing.T, dir string) {
	good := build(t, testScript, ceremonyEvents(), testKey)
	lines := strings.Split(strings.TrimSuffix(string(good), "\n"), "\n")
	lines = lines[:len(lines)-1] // the seal
	spki, _ := x509.MarshalPKIXPublicKey(&testKey.PublicKey)
	if err := os.WriteFile(filepath.Join(dir, "signing-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range strictEdits {
		ls := append([]string(nil), lines...)
		if v.edit != nil {
			ls[v.line-1] = v.edit(ls[v.line-1])
		}
		if err := os.WriteFile(filepath.Join(dir, v.file), rechain(t, ls, testKey), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStrictVectors verifies each transcript of testdata/strict and
// checks the outcome expect.txt gives: "ok", or the failure's class, line
// and a part of its reason.
func TestStrictVectors(t *testing.T) {
	dir := filepath.Join("testdata", "strict")
	if *update {
		writeStrictVectors(t, dir)
	}
	f, err := os.Open(filepath.Join(dir, "expect.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pemBytes, _ := os.ReadFile(filepath.Join(dir, "signing-key.pem"))
	blk, _ := pem.Decode(pemBytes)
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() == "" || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		// file: ok | file: class line reason
		file, want, _ := strings.Cut(sc.Text(), ": ")
		n++
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = VerifyBytes(data, Options{PublicKey: k.(*ecdsa.PublicKey)})
			if want == "ok" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			f := strings.SplitN(want, " ", 3)
			line, _ := strconv.Atoi(f[1])
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Class.String() != f[0] || ve.Line != line || !strings.Contains(ve.Error(), f[2]) {
				t.Fatalf("got %v, want %s", err, want)
			}
		})
	}
	if n != len(strictEdits) {
		t.Fatalf("expect.txt has %d vectors, strictEdits %d", n, len(strictEdits))
	}
}

// TestFrozen verifies the frozen transcripts of testdata with their files
// and checks the outcomes their expect.txt gives: one sealed with ECDSA
// P-256 by the first release, one sealed with RSA 3072.
func TestFrozen(t *testing.T) {
	for _, name := range []string{"v1-5aa1006-resumed", "v1-rsa-seal"} {
		t.Run(name, func(t *testing.T) { testFrozen(t, filepath.Join("testdata", name)) })
	}
}

func testFrozen(t *testing.T, dir string) {
	want := map[string]string{}
	expect, err := os.ReadFile(filepath.Join(dir, "expect.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(expect), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && !strings.HasPrefix(l, "#") {
			want[k] = v
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, "evidence", "transcript.jsonl"))
	res, err := VerifyBytes(data, Options{Fingerprint: want["signer_fingerprint"], Files: os.DirFS(filepath.Join(dir, "evidence"))})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Void) == 0 {
		t.Fatal("no void events")
	}
	void := fmt.Sprintf("%d-%d", res.Void[0].Seq, res.Void[len(res.Void)-1].Seq)
	got := map[string]string{"ceremony_id": res.Header.CeremonyID, "events": fmt.Sprint(res.EventCount), "void": void,
		"signer_fingerprint": res.Seal.Fingerprint, "words": res.Seal.Words, "seal_algorithm": res.Seal.Algorithm}
	if want["seal_algorithm"] == "" {
		want["seal_algorithm"] = SealECDSAP256 // before RSA seals
	}
	for k, v := range got {
		if want[k] != v {
			t.Errorf("%s: got %s, want %s", k, v, want[k])
		}
	}
}
