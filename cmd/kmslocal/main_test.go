package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// syncBuffer is a bytes.Buffer safe to write from the server goroutine
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help exited %d: %s", code, stderr.String())
	}
	for _, want := range []string{"TEST AND DEMO", "NOT AWS KMS", "NO SECURITY GUARANTEES", "-addr", "-state", "-ready-file", "-pool-size", "127.0.0.1:4599"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--help output lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"all interfaces", []string{"--addr", ":4599"}, "not a loopback address"},
		{"0.0.0.0", []string{"--addr", "0.0.0.0:4599"}, "not a loopback address"},
		{"LAN address", []string{"--addr", "10.1.2.3:4599"}, "not a loopback address"},
		{"host name", []string{"--addr", "kms.example.com:4599"}, "not a loopback address"},
		{"no port", []string{"--addr", "127.0.0.1"}, "invalid listen address"},
		{"unknown flag", []string{"--verbose"}, "flag provided but not defined"},
		{"stray argument", []string{"serve"}, "unexpected argument"},
		{"negative latency", []string{"--latency", "-1ms"}, "--latency -1ms must be between 0 and 1m"},
		{"negative quota", []string{"--quota", "-5"}, "--quota -5 must be a number"},
		{"no rotations", []string{"--rotation-limit", "0"}, "--rotation-limit 0 must be at least 1"},
		{"fill without pool", []string{"--pool-fill", "--pool-size", "-1"}, "--pool-fill needs a positive --pool-size"},
		{"no refill without pool", []string{"--pool-no-refill", "--pool-size", "0"}, "--pool-no-refill needs a positive --pool-size"},
		{"unknown pool spec", []string{"--addr", "127.0.0.1:0", "--pool-specs", "RSA_1024"}, `pool wrapping key spec "RSA_1024"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), "kmslocal: error: ") || !strings.Contains(stderr.String(), tt.want) ||
				!strings.Contains(stderr.String(), "kmslocal: hint: ") {
				t.Fatalf("stderr %q, want an error with %q and a hint", stderr.String(), tt.want)
			}
		})
	}
}

func TestBrokenStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	os.WriteFile(path, []byte("not json"), 0o600)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--state", path}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), path) {
		t.Fatalf("stderr %q does not name the state file", stderr.String())
	}
}

// waitFile waits for path to exist and returns its content.
func waitFile(t *testing.T, path string, done <-chan int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
		select {
		case code := <-done:
			t.Fatalf("kmslocal exited %d before writing the ready file", code)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no ready file %s after 30s", path)
	return ""
}

// sdkFromEnv configures the SDK the way a user of the binary would: through
// config.LoadDefaultConfig and AWS_ENDPOINT_URL_KMS, with no shared config.
func sdkFromEnv(t *testing.T, addr string) *kms.Client {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_ENDPOINT_URL_KMS", "http://"+addr)
	t.Setenv("AWS_REGION", "us-west-2")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	return kms.NewFromConfig(cfg)
}

// startRun runs the command in a goroutine until the returned cancel is
// called, and returns the address from its ready file.
func startRun(t *testing.T, args []string, readyFile string) (addr string, stop func() int, stderr *syncBuffer) {
	t.Helper()
	stderr = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &bytes.Buffer{}, stderr) }()
	addr = waitFile(t, readyFile, done)
	stop = func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(15 * time.Second):
			t.Fatal("kmslocal did not stop within 15s of cancel")
			return -1
		}
	}
	t.Cleanup(func() { cancel() })
	return addr, stop, stderr
}

// TestServeAndRestart runs the command on a free port, drives an import
// through the SDK configured from the environment, stops it, and starts it
// again from the same state file.
func TestServeAndRestart(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	ready := filepath.Join(dir, "ready")
	args := []string{"--addr", "127.0.0.1:0", "--state", state, "--ready-file", ready, "--pool-size", "-1"}
	ctx := context.Background()

	addr, stop, stderr := startRun(t, args, ready)
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("ready file holds %q, want 127.0.0.1 and the bound port", addr)
	}
	c := sdkFromEnv(t, addr)
	ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	keyID := aws.ToString(ck.KeyMetadata.KeyId)
	if arn := aws.ToString(ck.KeyMetadata.Arn); !strings.HasPrefix(arn, "arn:aws:kms:us-west-2:111122223333:key/") {
		t.Fatalf("Arn %s does not carry the SDK's region", arn)
	}
	p, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId: aws.String(keyID), WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048,
	})
	if err != nil {
		t.Fatalf("GetParametersForImport: %v", err)
	}
	pk, err := x509.ParsePKIXPublicKey(p.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	material := make([]byte, 32)
	rand.Read(material)
	enc, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pk.(*rsa.PublicKey), material, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{
		KeyId: aws.String(keyID), ImportToken: p.ImportToken, EncryptedKeyMaterial: enc,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire,
	}); err != nil {
		t.Fatalf("ImportKeyMaterial: %v", err)
	}
	enc1, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("across restarts")})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d after cancel, want 0; stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file still there after a clean shutdown: %v", err)
	}
	log := stderr.String()
	for _, want := range []string{"TEST AND DEMO", "op=ImportKeyMaterial key=" + keyID + " result=ok", "kmslocal: stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr lacks %q:\n%s", want, log)
		}
	}

	addr, stop, stderr = startRun(t, args, ready)
	c = sdkFromEnv(t, addr)
	md, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err != nil || md.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Fatalf("DescribeKey after restart: %v, %v", md, err)
	}
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc1.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "across restarts" {
		t.Fatalf("Decrypt after restart = %v, %v", dec, err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("second run exited %d; stderr:\n%s", code, stderr)
	}
}

// TestFilledPoolLatencyQuota starts the command with a filled pool of one
// spec, an injected latency and a quota: the ready file appears with the
// pool full, every call takes the latency, and the SDK's standard retryer
// gets a burst through the quota.
func TestFilledPoolLatencyQuota(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	args := []string{"--addr", "127.0.0.1:0", "--ready-file", ready, "--pool-size", "3", "--pool-specs", "RSA_2048", "--pool-fill", "--latency", "25ms", "--quota", "10"}
	addr, stop, stderr := startRun(t, args, ready)
	c := sdkFromEnv(t, addr)
	ctx := context.Background()
	ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		start := time.Now()
		if _, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
			KeyId: ck.KeyMetadata.KeyId, WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048,
		}); err != nil {
			t.Fatalf("GetParametersForImport: %v", err)
		}
		if d := time.Since(start); d < 25*time.Millisecond {
			t.Fatalf("call took %v with --latency 25ms", d)
		}
	}
	// A burst of three times the quota: the SDK's default 3 attempts are
	// not always enough on a loaded machine, so retry as keyceremony's own
	// client does (ceremony/awskms: 10 attempts, no client retry budget).
	patient := kms.New(c.Options(), func(o *kms.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts, so.RateLimiter = 10, ratelimit.None
		})
	})
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := patient.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: ck.KeyMetadata.KeyId})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("DescribeKey through the retryer: %v", err)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	log := stderr.String()
	for _, want := range []string{"filling the wrapping key pool (3 per spec)", "result=ThrottlingException"} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr lacks %q:\n%s", want, log)
		}
	}
}

// TestSignals builds the binary and stops it with SIGTERM and SIGINT.
func TestSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "kmslocal")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			ready := filepath.Join(t.TempDir(), "ready")
			cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--ready-file", ready, "--pool-size", "-1")
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan int, 1)
			go func() {
				cmd.Wait()
				exited <- cmd.ProcessState.ExitCode()
			}()
			waitFile(t, ready, exited)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case code := <-exited:
				if code != 0 {
					t.Fatalf("exit %d after %v, want 0; stderr:\n%s", code, sig, stderr.String())
				}
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("still running 15s after %v", sig)
			}
			if !strings.Contains(stderr.String(), "kmslocal: stopped") {
				t.Fatalf("stderr lacks the shutdown line:\n%s", stderr.String())
			}
		})
	}
}
