package kmslocal

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const fuzzAuth = "AWS4-HMAC-SHA256 Credential=test/20261126/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=00"

func fuzzCall(s *Server, op string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("X-Amz-Target", "TrentService."+op)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", fuzzAuth)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// FuzzRequest sends any body to every operation but GetParametersForImport
// (which generates an RSA key). Whatever the body, the answer is 200 or a
// 400 in AWS's error form (the __type in the body and the header agree,
// the message is one line): bad input is never an internal error, and a
// body that is not JSON to encoding/json is never accepted.
func FuzzRequest(f *testing.F) {
	var ops []string
	for op := range handlers {
		if op != "GetParametersForImport" {
			ops = append(ops, op)
		}
	}
	slices.Sort(ops)
	s := New(Options{PoolSize: -1, Clock: func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }})
	f.Cleanup(func() { s.Close() })
	var md struct{ KeyMetadata struct{ KeyId string } }
	for _, origin := range []string{"AWS_KMS", "EXTERNAL"} {
		rec := fuzzCall(s, "CreateKey", []byte(`{"Origin":"`+origin+`"}`))
		if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil || md.KeyMetadata.KeyId == "" {
			f.Fatalf("CreateKey: %d %s", rec.Code, rec.Body)
		}
	}
	id := md.KeyMetadata.KeyId
	fuzzCall(s, "CreateAlias", []byte(`{"AliasName":"alias/fuzz","TargetKeyId":"`+id+`"}`))
	bodies := []string{``, `{}`, `{"KeyId":"` + id + `"}`, `{"KeyId":"alias/fuzz","Plaintext":"aGVsbG8="}`,
		`{"KeyId":"arn:aws:kms:eu-west-1:111122223333:key/` + id + `","KeySpec":"AES_256"}`, `{"CiphertextBlob":"!!"}`,
		`{"Origin":"EXTERNAL","MultiRegion":true}`, `{"KeyId":"` + id + `","ReplicaRegion":"us-east-1"}`,
		`{"KeyId":"` + id + `","ImportToken":"AAAA","EncryptedKeyMaterial":"AAAA","ExpirationModel":"KEY_MATERIAL_DOES_NOT_EXPIRE"}`,
		`{"KeyId":"` + id + `","PendingWindowInDays":7}`, `{"Limit":1,"Marker":"x"}`, `[]`, `{"KeyId":1e999}`}
	for i := range ops {
		for _, b := range bodies {
			f.Add(uint8(i), []byte(b))
		}
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		name := ops[int(op)%len(ops)]
		rec := fuzzCall(s, name, body)
		out := rec.Body.Bytes()
		if !json.Valid(out) || !bytes.HasPrefix(out, []byte("{")) {
			t.Fatalf("%s: status %d, body is not a JSON object: %q", name, rec.Code, out)
		}
		// A body encoding/json refuses is never acted on.
		if b := bytes.TrimSpace(body); len(b) > 0 && !json.Valid(b) && rec.Code == http.StatusOK {
			t.Fatalf("%s accepted a body that is not JSON: %q", name, body)
		}
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest:
			var e struct {
				Type    string `json:"__type"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(out, &e); err != nil || e.Type == "" || e.Type != rec.Header().Get("X-Amzn-Errortype") || strings.Contains(e.Message, "\n") {
				t.Fatalf("%s: error body %s, X-Amzn-Errortype %q", name, out, rec.Header().Get("X-Amzn-Errortype"))
			}
		default:
			t.Fatalf("%s %q: status %d: %s", name, body, rec.Code, out)
		}
	})
}

// FuzzParseState: the state file parser refuses or loads; what it loads
// saves to JSON that loads again and saves to the same bytes.
func FuzzParseState(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "state.json")
	s, err := Open(Options{StateFile: path, PoolSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	var md struct{ KeyMetadata struct{ KeyId string } }
	for _, origin := range []string{"AWS_KMS", "EXTERNAL"} {
		rec := fuzzCall(s, "CreateKey", []byte(`{"Origin":"`+origin+`"}`))
		if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil {
			f.Fatal(err)
		}
	}
	fuzzCall(s, "CreateAlias", []byte(`{"AliasName":"alias/fuzz","TargetKeyId":"`+md.KeyMetadata.KeyId+`"}`))
	if rec := fuzzCall(s, "GetParametersForImport", []byte(`{"KeyId":"`+md.KeyMetadata.KeyId+`","WrappingAlgorithm":"RSAES_OAEP_SHA_256","WrappingKeySpec":"RSA_2048"}`)); rec.Code != 200 {
		f.Fatalf("GetParametersForImport: %d %s", rec.Code, rec.Body)
	}
	s.Close()
	state, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(state)
	f.Add(bytes.Replace(state, []byte(`"keys"`), []byte(`"keyz"`), 1))
	f.Add([]byte(`{"format":"` + stateFormat + `"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState(data)
		if err != nil {
			return
		}
		save := func(st *store) []byte {
			b, err := st.marshal()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		first := save(st)
		st2, err := parseState(first)
		if err != nil {
			t.Fatalf("saved state does not load: %v", err)
		}
		if !bytes.Equal(save(st2), first) {
			t.Fatal("state changed on a save/load round trip")
		}
	})
}
