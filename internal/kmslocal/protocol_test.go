package kmslocal_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyceremony/keyceremony/internal/kmslocal"
)

const sigv4 = "AWS4-HMAC-SHA256 Credential=AKID/20300101/ap-south-2/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"

// TestProtocol sends raw HTTP requests and checks the AWS JSON 1.1 error
// form: status, X-Amzn-ErrorType and the __type/message body.
func TestProtocol(t *testing.T) {
	s := kmslocal.New(kmslocal.Options{PoolSize: -1})
	defer s.Close()
	hs := httptest.NewServer(s)
	defer hs.Close()

	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		body       string
		wantStatus int
		wantType   string // "" for success
	}{
		{"no Authorization", "POST", "/", map[string]string{"Authorization": ""}, `{}`, 400, "MissingAuthenticationTokenException"},
		{"Basic Authorization", "POST", "/", map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}, `{}`, 400, "IncompleteSignatureException"},
		{"unknown operation", "POST", "/", map[string]string{"X-Amz-Target": "TrentService.CreateGrant"}, `{}`, 400, "UnknownOperationException"},
		{"other service", "POST", "/", map[string]string{"X-Amz-Target": "DynamoDB_20120810.ListTables"}, `{}`, 400, "UnknownOperationException"},
		{"no target", "POST", "/", map[string]string{"X-Amz-Target": ""}, `{}`, 400, "UnknownOperationException"},
		{"GET", "GET", "/", nil, ``, 405, "UnknownOperationException"},
		{"other path", "POST", "/v1", nil, `{}`, 404, "UnknownOperationException"},
		{"wrong content type", "POST", "/", map[string]string{"Content-Type": "application/json"}, `{}`, 400, "UnknownOperationException"},
		{"bad JSON", "POST", "/", nil, `{"KeyId":`, 400, "SerializationException"},
		{"bad base64 blob", "POST", "/", map[string]string{"X-Amz-Target": "TrentService.Decrypt"}, `{"CiphertextBlob":"!!"}`, 400, "SerializationException"},
		{"missing KeyId", "POST", "/", nil, `{}`, 400, "ValidationException"},
		{"malformed ARN", "POST", "/", nil, `{"KeyId":"arn:aws:kms:x"}`, 400, "InvalidArnException"},
		{"unknown key", "POST", "/", nil, `{"KeyId":"00000000-0000-4000-8000-000000000000"}`, 400, "NotFoundException"},
		{"CreateKey", "POST", "/", map[string]string{"X-Amz-Target": "TrentService.CreateKey"}, `{"Origin":"EXTERNAL"}`, 200, ""},
		{"CreateKey with charset", "POST", "/", map[string]string{"X-Amz-Target": "TrentService.CreateKey", "Content-Type": "application/x-amz-json-1.1; charset=utf-8"}, ``, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, hs.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", sigv4)
			req.Header.Set("X-Amz-Target", "TrentService.DescribeKey")
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
				t.Errorf("Content-Type %q", ct)
			}
			if resp.Header.Get("X-Amzn-Requestid") == "" {
				t.Error("no X-Amzn-RequestId header")
			}
			if got := resp.Header.Get("X-Amzn-ErrorType"); got != tt.wantType {
				t.Fatalf("X-Amzn-ErrorType %q, want %q", got, tt.wantType)
			}
			var e struct {
				Type    string `json:"__type"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body is not JSON: %s", body)
			}
			if e.Type != tt.wantType || (tt.wantType != "") != (e.Message != "") {
				t.Fatalf("body %s, want __type %q and a message", body, tt.wantType)
			}
		})
	}

	t.Run("region from the credential scope", func(t *testing.T) {
		req, _ := http.NewRequest("POST", hs.URL, strings.NewReader(`{"Description":"epoch check"}`))
		req.Header.Set("Authorization", sigv4)
		req.Header.Set("X-Amz-Target", "TrentService.CreateKey")
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			KeyMetadata struct {
				KeyId        string
				Arn          string
				CreationDate json.Number
			}
		}
		dec := json.NewDecoder(resp.Body)
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			t.Fatal(err)
		}
		if want := "arn:aws:kms:ap-south-2:111122223333:key/" + out.KeyMetadata.KeyId; out.KeyMetadata.Arn != want {
			t.Fatalf("Arn %s, want %s", out.KeyMetadata.Arn, want)
		}
		// Timestamps are epoch seconds as JSON numbers.
		f, err := out.KeyMetadata.CreationDate.Float64()
		if err != nil || time.Since(time.Unix(int64(f), 0)).Abs() > time.Minute {
			t.Fatalf("CreationDate %q is not epoch seconds of now", out.KeyMetadata.CreationDate)
		}
	})

	t.Run("fractional ValidTo", func(t *testing.T) {
		// The SDK sends whole or fractional epoch seconds; both parse.
		c := newClient(hs.URL)
		keyID := createKey(t, c, types.OriginTypeExternal)
		body := `{"KeyId":"` + keyID + `","ImportToken":"AAAA","EncryptedKeyMaterial":"AAAA","ValidTo":1e20}`
		req, _ := http.NewRequest("POST", hs.URL, strings.NewReader(body))
		req.Header.Set("Authorization", sigv4)
		req.Header.Set("X-Amz-Target", "TrentService.ImportKeyMaterial")
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Amzn-ErrorType"); got != "SerializationException" {
			t.Fatalf("ValidTo 1e20: error %q, want SerializationException", got)
		}
	})
}

// TestStateFile restarts the server from its state file: keys, material,
// aliases and outstanding import tokens survive.
func TestStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	ctx := context.Background()
	const alg, spec = types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa2048

	s1, c1 := startServer(t, kmslocal.Options{StateFile: path, PoolSize: -1})
	keyID, material := importNew(t, c1, time.Now())
	blob, err := encrypt(c1, keyID, []byte("persisted"), map[string]string{"a": "b"})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if _, err := c1.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/persisted"), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	// An import token issued before the restart, used after it.
	pending := createKey(t, c1, types.OriginTypeExternal)
	p := getParams(t, c1, pending, alg, spec)
	pendingMaterial := newMaterial()
	enc := wrap(t, alg, p.PublicKey, pendingMaterial)
	s1.Close()

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte("TEST AND DEMO")) {
		t.Error("state file carries no warning")
	}

	_, c2 := startServer(t, kmslocal.Options{StateFile: path, PoolSize: -1})
	if md := describe(t, c2, "alias/persisted"); md.KeyState != types.KeyStateEnabled || aws.ToString(md.KeyId) != keyID {
		t.Fatalf("after restart: %s is %s, want %s Enabled", "alias/persisted", md.KeyState, keyID)
	}
	pt, err := decrypt(c2, blob, map[string]string{"a": "b"})
	if err != nil || string(pt) != "persisted" {
		t.Fatalf("Decrypt after restart = %q, %v", pt, err)
	}
	if _, err := importMaterial(c2, pending, p, enc, importOpts{validTo: inDays(time.Now(), 1)}); err != nil {
		t.Fatalf("import with a token issued before the restart: %v", err)
	}
	// The first material is remembered across the restart too.
	p2 := getParams(t, c2, keyID, alg, spec)
	if _, err := importMaterial(c2, keyID, p2, wrap(t, alg, p2.PublicKey, newMaterial()), importOpts{validTo: inDays(time.Now(), 1)}); !is[*types.IncorrectKeyMaterialException](err) {
		t.Fatalf("different material after restart: got %T: %v, want IncorrectKeyMaterialException", err, err)
	}
	if _, err := importMaterial(c2, keyID, p2, wrap(t, alg, p2.PublicKey, material), importOpts{validTo: inDays(time.Now(), 1)}); err != nil {
		t.Fatalf("same material after restart: %v", err)
	}

	t.Run("without the state file tokens are unknown", func(t *testing.T) {
		_, c3 := startServer(t, kmslocal.Options{PoolSize: -1})
		k := createKey(t, c3, types.OriginTypeExternal)
		_, err := importMaterial(c3, k, p, enc, importOpts{validTo: inDays(time.Now(), 1)})
		if !is[*types.InvalidImportTokenException](err) {
			t.Fatalf("got %T: %v, want InvalidImportTokenException", err, err)
		}
	})
}

// TestOpenRejectsBadState feeds Open broken state files.
func TestOpenRejectsBadState(t *testing.T) {
	good := func() map[string]any {
		return map[string]any{
			"format":       "kmslocal/state/v1",
			"warning":      "",
			"tokenSecret":  base64.StdEncoding.EncodeToString(make([]byte, 32)),
			"keys":         []any{},
			"aliases":      map[string]any{},
			"importTokens": []any{},
		}
	}
	key := func(material []byte) map[string]any {
		return map[string]any{
			"id": "00000000-0000-4000-8000-000000000001", "region": "us-east-1", "created": "2030-01-01T00:00:00Z",
			"description": "", "origin": "EXTERNAL", "keySpec": "SYMMETRIC_DEFAULT", "keyUsage": "ENCRYPT_DECRYPT",
			"multiRegion": false, "enabled": true, "material": material,
			"materialId":      hex.EncodeToString(make([]byte, 32)),
			"expirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
		}
	}
	tests := []struct {
		name  string
		data  func() []byte
		valid bool
	}{
		{"empty state", func() []byte { return mustJSON(t, good()) }, true},
		{"not JSON", func() []byte { return []byte("{") }, false},
		{"trailing data", func() []byte { return append(mustJSON(t, good()), "{}"...) }, false},
		{"unknown field", func() []byte {
			g := good()
			g["extra"] = 1
			return mustJSON(t, g)
		}, false},
		{"other format", func() []byte {
			g := good()
			g["format"] = "kmslocal/state/v2"
			return mustJSON(t, g)
		}, false},
		{"short secret", func() []byte {
			g := good()
			g["tokenSecret"] = "AAAA"
			return mustJSON(t, g)
		}, false},
		{"material of 31 bytes", func() []byte {
			g := good()
			g["keys"] = []any{key(make([]byte, 31))}
			return mustJSON(t, g)
		}, false},
		{"material that does not match its ID", func() []byte {
			g := good()
			g["keys"] = []any{key(make([]byte, 32))}
			return mustJSON(t, g)
		}, false},
		{"alias to unknown key", func() []byte {
			g := good()
			g["aliases"] = map[string]any{"alias/x": "00000000-0000-4000-8000-000000000009"}
			return mustJSON(t, g)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, tt.data(), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := kmslocal.Open(kmslocal.Options{StateFile: path, PoolSize: -1})
			if tt.valid {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				s.Close()
				return
			}
			var se *kmslocal.StateError
			if !errors.As(err, &se) || se.Path != path {
				t.Fatalf("Open = %v, want a *StateError for %s", err, path)
			}
		})
	}
	t.Run("missing file is an empty state", func(t *testing.T) {
		s, err := kmslocal.Open(kmslocal.Options{StateFile: filepath.Join(t.TempDir(), "new.json"), PoolSize: -1})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		s.Close()
	})
	t.Run("New panics", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		os.WriteFile(path, []byte("{"), 0o600)
		defer func() {
			if recover() == nil {
				t.Fatal("New with a broken state file did not panic")
			}
		}()
		kmslocal.New(kmslocal.Options{StateFile: path, PoolSize: -1})
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLogNeverShowsSecrets runs an import with logging on and checks the
// log has one line per request with op, key and result, and none of the
// material, the wrapped material, the token or the plaintext.
func TestLogNeverShowsSecrets(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	_, c := startServer(t, kmslocal.Options{PoolSize: -1, Logger: logger})
	const alg, spec = types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048

	keyID := createKey(t, c, types.OriginTypeExternal)
	p := getParams(t, c, keyID, alg, spec)
	material := newMaterial()
	enc := wrap(t, alg, p.PublicKey, material)
	if _, err := importMaterial(c, keyID, p, enc, importOpts{validTo: inDays(time.Now(), 1)}); err != nil {
		t.Fatal(err)
	}
	blob, err := encrypt(c, keyID, []byte("plaintext-canary"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decrypt(c, blob, nil); err != nil {
		t.Fatal(err)
	}
	p.ImportToken[3] ^= 1
	importMaterial(c, keyID, p, enc, importOpts{validTo: inDays(time.Now(), 1)})

	log := buf.String()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d log lines for 6 requests:\n%s", len(lines), log)
	}
	for _, want := range []string{
		"op=ImportKeyMaterial key=" + keyID + " result=ok",
		"op=ImportKeyMaterial key=" + keyID + " result=InvalidImportTokenException status=400",
		"op=Decrypt key=" + keyID + " result=ok",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for name, secret := range map[string][]byte{"material": material, "wrapped material": enc, "token": p.ImportToken, "plaintext": []byte("plaintext-canary")} {
		for _, form := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret)} {
			if strings.Contains(log, form) {
				t.Errorf("log contains the %s", name)
			}
		}
	}
}

// TestCheckLoopback covers the listen address rule of Listen and the
// kmslocal command.
func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:4599", true},
		{"127.0.0.2:0", true},
		{"[::1]:4599", true},
		{"localhost:4599", true},
		{":4599", false},
		{"0.0.0.0:4599", false},
		{"[::]:4599", false},
		{"192.168.1.10:4599", false},
		{"example.com:4599", false},
		{"127.0.0.1", false}, // no port
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := kmslocal.CheckLoopback(tt.addr)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckLoopback(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
			}
			if !tt.ok && strings.Contains(tt.addr, ":4599") && !errors.Is(err, kmslocal.ErrNotLoopback) {
				t.Fatalf("CheckLoopback(%q) = %v, want ErrNotLoopback", tt.addr, err)
			}
			if l, err := kmslocal.Listen(tt.addr); err == nil {
				l.Close()
				if !tt.ok {
					t.Fatalf("Listen(%q) succeeded", tt.addr)
				}
			} else if tt.ok && !strings.Contains(tt.addr, "4599") {
				t.Fatalf("Listen(%q): %v", tt.addr, err)
			}
		})
	}
}

// TestServe runs Serve on a loopback listener and stops it by cancelling
// its context.
func TestServe(t *testing.T) {
	s := kmslocal.New(kmslocal.Options{PoolSize: -1})
	defer s.Close()
	l, err := kmslocal.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	c := newClient("http://" + l.Addr().String())
	createKey(t, c, types.OriginTypeAwsKms)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get("http://" + l.Addr().String()); err == nil {
		t.Fatal("server still answers after Serve returned")
	}
}
