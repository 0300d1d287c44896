package kmslocal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/keyceremony/keyceremony/internal/kmslocal"
)

const testRegion = "eu-west-1"

// fakeClock is a settable Options.Clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	// Whole seconds, so ValidTo values computed from it survive the wire.
	return &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// startServer runs a kmslocal Server for opts behind httptest and returns
// a real SDK client for it.
func startServer(t testing.TB, opts kmslocal.Options) (*kmslocal.Server, *kms.Client) {
	t.Helper()
	s, err := kmslocal.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, newClient(hs.URL)
}

func newClient(url string) *kms.Client {
	cfg := aws.Config{
		Region:           testRegion,
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDKMSLOCALTEST", "not-a-secret", ""),
		RetryMaxAttempts: 1,
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(url) })
}

// shared is one server for the tests that need neither their own clock nor
// their own state, so they share its pool of RSA keys.
var shared struct {
	once   sync.Once
	client *kms.Client
}

func sharedClient(t testing.TB) *kms.Client {
	shared.once.Do(func() {
		s := kmslocal.New(kmslocal.Options{PoolSize: 2})
		hs := httptest.NewServer(s)
		// Left running for the life of the test binary.
		shared.client = newClient(hs.URL)
	})
	return shared.client
}

func newMaterial() []byte {
	m := make([]byte, 32)
	rand.Read(m)
	return m
}

func createKey(t testing.TB, c *kms.Client, origin types.OriginType) string {
	t.Helper()
	out, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{
		Origin:      origin,
		Description: aws.String("kmslocal test key"),
	})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}

func getParams(t testing.TB, c *kms.Client, keyID string, alg types.AlgorithmSpec, spec types.WrappingKeySpec) *kms.GetParametersForImportOutput {
	t.Helper()
	out, err := c.GetParametersForImport(context.Background(), &kms.GetParametersForImportInput{
		KeyId:             aws.String(keyID),
		WrappingAlgorithm: alg,
		WrappingKeySpec:   spec,
	})
	if err != nil {
		t.Fatalf("GetParametersForImport(%s, %s): %v", alg, spec, err)
	}
	return out
}

// wrap does what an importing client does offline: encrypt material under
// the public key from GetParametersForImport with the wrapping algorithm.
func wrap(t testing.TB, alg types.AlgorithmSpec, publicKey, material []byte) []byte {
	t.Helper()
	pk, err := x509.ParsePKIXPublicKey(publicKey)
	if err != nil {
		t.Fatalf("PublicKey is not DER SubjectPublicKeyInfo: %v", err)
	}
	pub, ok := pk.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("PublicKey is %T, want *rsa.PublicKey", pk)
	}
	var h hash.Hash
	switch alg {
	case types.AlgorithmSpecRsaesOaepSha1, types.AlgorithmSpecRsaAesKeyWrapSha1:
		h = sha1.New()
	default:
		h = sha256.New()
	}
	switch alg {
	case types.AlgorithmSpecRsaesOaepSha1, types.AlgorithmSpecRsaesOaepSha256:
		ct, err := rsa.EncryptOAEP(h, rand.Reader, pub, material, nil)
		if err != nil {
			t.Fatalf("EncryptOAEP: %v", err)
		}
		return ct
	default:
		aesKey := newMaterial()
		head, err := rsa.EncryptOAEP(h, rand.Reader, pub, aesKey, nil)
		if err != nil {
			t.Fatalf("EncryptOAEP: %v", err)
		}
		tail, err := kmslocal.KeyWrapPad(aesKey, material)
		if err != nil {
			t.Fatalf("KeyWrapPad: %v", err)
		}
		return append(head, tail...)
	}
}

type importOpts struct {
	model   types.ExpirationModelType
	validTo *time.Time
	typ     types.ImportType
}

func importMaterial(c *kms.Client, keyID string, p *kms.GetParametersForImportOutput, encrypted []byte, o importOpts) (*kms.ImportKeyMaterialOutput, error) {
	return c.ImportKeyMaterial(context.Background(), &kms.ImportKeyMaterialInput{
		KeyId:                aws.String(keyID),
		ImportToken:          p.ImportToken,
		EncryptedKeyMaterial: encrypted,
		ExpirationModel:      o.model,
		ValidTo:              o.validTo,
		ImportType:           o.typ,
	})
}

func inDays(now time.Time, days int) *time.Time {
	t := now.Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second)
	return &t
}

// importNew creates an EXTERNAL key and imports fresh material into it with
// RSA_AES_KEY_WRAP_SHA_256 / RSA_2048, expiring in 30 days of now.
func importNew(t testing.TB, c *kms.Client, now time.Time) (keyID string, material []byte) {
	t.Helper()
	keyID = createKey(t, c, types.OriginTypeExternal)
	material = newMaterial()
	p := getParams(t, c, keyID, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048)
	if _, err := importMaterial(c, keyID, p, wrap(t, types.AlgorithmSpecRsaAesKeyWrapSha256, p.PublicKey, material), importOpts{validTo: inDays(now, 30)}); err != nil {
		t.Fatalf("ImportKeyMaterial: %v", err)
	}
	return keyID, material
}

func describe(t testing.TB, c *kms.Client, keyID string) *types.KeyMetadata {
	t.Helper()
	out, err := c.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		t.Fatalf("DescribeKey: %v", err)
	}
	return out.KeyMetadata
}

func encrypt(c *kms.Client, keyID string, pt []byte, ec map[string]string) ([]byte, error) {
	out, err := c.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		return nil, err
	}
	return out.CiphertextBlob, nil
}

func decrypt(c *kms.Client, blob []byte, ec map[string]string) ([]byte, error) {
	out, err := c.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
	if err != nil {
		return nil, err
	}
	return out.Plaintext, nil
}

// is reports whether err is (or wraps) the SDK's typed error T.
func is[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

// isCode reports whether err is an API error with the given code, for the
// AWS-wide errors that have no KMS type (ValidationException).
func isCode(code string) func(error) bool {
	return func(err error) bool {
		var ae smithy.APIError
		return errors.As(err, &ae) && ae.ErrorCode() == code
	}
}

var isValidation = isCode("ValidationException")

func TestImportAllAlgorithmsAndSpecs(t *testing.T) {
	c := sharedClient(t)
	algs := []types.AlgorithmSpec{
		types.AlgorithmSpecRsaesOaepSha1,
		types.AlgorithmSpecRsaesOaepSha256,
		types.AlgorithmSpecRsaAesKeyWrapSha1,
		types.AlgorithmSpecRsaAesKeyWrapSha256,
	}
	specs := map[types.WrappingKeySpec]int{
		types.WrappingKeySpecRsa2048: 2048,
		types.WrappingKeySpecRsa3072: 3072,
		types.WrappingKeySpecRsa4096: 4096,
	}
	for _, alg := range algs {
		for spec, bits := range specs {
			t.Run(fmt.Sprintf("%s/%s", alg, spec), func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				keyID := createKey(t, c, types.OriginTypeExternal)
				md := describe(t, c, keyID)
				if md.KeyState != types.KeyStatePendingImport || md.Enabled || md.Origin != types.OriginTypeExternal {
					t.Fatalf("new EXTERNAL key: state %s, enabled %v, origin %s; want PendingImport, false, EXTERNAL", md.KeyState, md.Enabled, md.Origin)
				}

				p := getParams(t, c, keyID, alg, spec)
				wantARN := "arn:aws:kms:" + testRegion + ":111122223333:key/" + keyID
				if aws.ToString(p.KeyId) != wantARN {
					t.Errorf("GetParametersForImport KeyId = %s, want %s", aws.ToString(p.KeyId), wantARN)
				}
				if d := time.Until(aws.ToTime(p.ParametersValidTo)); d < 23*time.Hour || d > 25*time.Hour {
					t.Errorf("ParametersValidTo is %v from now, want 24h", d)
				}
				pk, err := x509.ParsePKIXPublicKey(p.PublicKey)
				if err != nil {
					t.Fatalf("PublicKey: %v", err)
				}
				if got := pk.(*rsa.PublicKey).N.BitLen(); got != bits {
					t.Fatalf("PublicKey is RSA-%d, want RSA-%d", got, bits)
				}

				material := newMaterial()
				validTo := inDays(time.Now(), 30)
				out, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, material), importOpts{validTo: validTo})
				if err != nil {
					t.Fatalf("ImportKeyMaterial: %v", err)
				}
				if aws.ToString(out.KeyId) != wantARN || len(aws.ToString(out.KeyMaterialId)) != 64 {
					t.Errorf("ImportKeyMaterial = KeyId %s, KeyMaterialId %q", aws.ToString(out.KeyId), aws.ToString(out.KeyMaterialId))
				}

				md = describe(t, c, keyID)
				if md.KeyState != types.KeyStateEnabled || !md.Enabled {
					t.Fatalf("after import: state %s, enabled %v; want Enabled", md.KeyState, md.Enabled)
				}
				if md.ExpirationModel != types.ExpirationModelTypeKeyMaterialExpires || !aws.ToTime(md.ValidTo).Equal(*validTo) {
					t.Fatalf("after import: ExpirationModel %s, ValidTo %v; want KEY_MATERIAL_EXPIRES, %v", md.ExpirationModel, md.ValidTo, validTo)
				}
				if aws.ToString(md.Arn) != wantARN || aws.ToString(md.AWSAccountId) != "111122223333" ||
					md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt ||
					len(md.EncryptionAlgorithms) != 1 || md.EncryptionAlgorithms[0] != types.EncryptionAlgorithmSpecSymmetricDefault {
					t.Errorf("KeyMetadata = %+v", md)
				}

				ec := map[string]string{"purpose": "kmslocal test", "alg": string(alg)}
				blob, err := encrypt(c, keyID, []byte("hello, imported key"), ec)
				if err != nil {
					t.Fatalf("Encrypt: %v", err)
				}
				dec, err := c.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
				if err != nil {
					t.Fatalf("Decrypt: %v", err)
				}
				if string(dec.Plaintext) != "hello, imported key" || aws.ToString(dec.KeyId) != wantARN ||
					aws.ToString(dec.KeyMaterialId) != aws.ToString(out.KeyMaterialId) {
					t.Fatalf("Decrypt = %q under %s (material %s)", dec.Plaintext, aws.ToString(dec.KeyId), aws.ToString(dec.KeyMaterialId))
				}
				t.Logf("%s/%s: %v", alg, spec, time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// TestImportErrors checks every ImportKeyMaterial / GetParametersForImport
// refusal by the SDK's typed error. Each case builds its own keys on the
// shared server, so the cases are independent.
func TestImportErrors(t *testing.T) {
	c := sharedClient(t)
	ctx := context.Background()
	const alg, spec = types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048
	now := time.Now()
	valid := importOpts{validTo: inDays(now, 30)}

	tests := []struct {
		name string
		run  func(t *testing.T) error
		want func(error) bool
	}{
		{
			name: "garbled token",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				enc := wrap(t, alg, p.PublicKey, newMaterial())
				p.ImportToken = make([]byte, len(p.ImportToken))
				rand.Read(p.ImportToken)
				_, err := importMaterial(c, keyID, p, enc, valid)
				return err
			},
			want: is[*types.InvalidImportTokenException],
		},
		{
			name: "token with one byte changed",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				enc := wrap(t, alg, p.PublicKey, newMaterial())
				p.ImportToken[len(p.ImportToken)/2] ^= 1
				_, err := importMaterial(c, keyID, p, enc, valid)
				return err
			},
			want: is[*types.InvalidImportTokenException],
		},
		{
			name: "token of another key",
			run: func(t *testing.T) error {
				keyA := createKey(t, c, types.OriginTypeExternal)
				keyB := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyA, alg, spec)
				_, err := importMaterial(c, keyB, p, wrap(t, alg, p.PublicKey, newMaterial()), valid)
				if err != nil && !strings.Contains(err.Error(), "issued for a different KMS key") {
					t.Errorf("error %q does not say the token is for another key", err)
				}
				return err
			},
			want: is[*types.InvalidImportTokenException],
		},
		{
			name: "different material",
			run: func(t *testing.T) error {
				keyID, _ := importNew(t, c, now)
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, newMaterial()), valid)
				return err
			},
			want: is[*types.IncorrectKeyMaterialException],
		},
		{
			name: "different material after the first was deleted",
			run: func(t *testing.T) error {
				keyID, _ := importNew(t, c, now)
				if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(keyID)}); err != nil {
					t.Fatalf("DeleteImportedKeyMaterial: %v", err)
				}
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, newMaterial()), valid)
				return err
			},
			want: is[*types.IncorrectKeyMaterialException],
		},
		{
			name: "key pending deletion",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(keyID), PendingWindowInDays: aws.Int32(7)}); err != nil {
					t.Fatalf("ScheduleKeyDeletion: %v", err)
				}
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, newMaterial()), valid)
				return err
			},
			want: is[*types.KMSInvalidStateException],
		},
		{
			name: "GetParametersForImport for a key pending deletion",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(keyID)}); err != nil {
					t.Fatalf("ScheduleKeyDeletion: %v", err)
				}
				_, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(keyID), WrappingAlgorithm: alg, WrappingKeySpec: spec})
				return err
			},
			want: is[*types.KMSInvalidStateException],
		},
		{
			name: "AWS_KMS key",
			run: func(t *testing.T) error {
				external := createKey(t, c, types.OriginTypeExternal)
				internal := createKey(t, c, types.OriginTypeAwsKms)
				p := getParams(t, c, external, alg, spec)
				_, err := importMaterial(c, internal, p, wrap(t, alg, p.PublicKey, newMaterial()), valid)
				return err
			},
			want: is[*types.UnsupportedOperationException],
		},
		{
			name: "GetParametersForImport for an AWS_KMS key",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeAwsKms)
				_, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(keyID), WrappingAlgorithm: alg, WrappingKeySpec: spec})
				return err
			},
			want: is[*types.UnsupportedOperationException],
		},
		{
			name: "ValidTo more than 365 days ahead",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, newMaterial()), importOpts{validTo: inDays(time.Now(), 366)})
				return err
			},
			want: isValidation,
		},
		{
			name: "ValidTo in the past",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, newMaterial()), importOpts{validTo: inDays(time.Now(), -1)})
				return err
			},
			want: isValidation,
		},
		{
			name: "KEY_MATERIAL_EXPIRES without ValidTo",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, newMaterial()), importOpts{model: types.ExpirationModelTypeKeyMaterialExpires})
				return err
			},
			want: isValidation,
		},
		{
			name: "KEY_MATERIAL_DOES_NOT_EXPIRE with ValidTo",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, newMaterial()),
					importOpts{model: types.ExpirationModelTypeKeyMaterialDoesNotExpire, validTo: inDays(time.Now(), 30)})
				return err
			},
			want: isValidation,
		},
		{
			name: "RSAES_PKCS1_V1_5 refused",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				_, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
					KeyId: aws.String(keyID), WrappingAlgorithm: types.AlgorithmSpecRsaesPkcs1V15, WrappingKeySpec: spec,
				})
				if err != nil && !strings.Contains(err.Error(), "no longer accepted") {
					t.Errorf("error %q does not say RSAES_PKCS1_V1_5 is no longer accepted", err)
				}
				return err
			},
			want: isValidation,
		},
		{
			name: "unknown wrapping key spec",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				_, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
					KeyId: aws.String(keyID), WrappingAlgorithm: alg, WrappingKeySpec: "RSA_1024",
				})
				return err
			},
			want: isValidation,
		},
		{
			name: "material of 16 bytes",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, newMaterial()[:16]), valid)
				return err
			},
			want: is[*types.InvalidCiphertextException],
		},
		{
			name: "encrypted material is garbage",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				garbage := make([]byte, 256)
				rand.Read(garbage)
				_, err := importMaterial(c, keyID, p, garbage, valid)
				return err
			},
			want: is[*types.InvalidCiphertextException],
		},
		{
			name: "material wrapped with SHA-1 for a SHA-256 token",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, types.AlgorithmSpecRsaAesKeyWrapSha256, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, types.AlgorithmSpecRsaAesKeyWrapSha1, p.PublicKey, newMaterial()), valid)
				return err
			},
			want: is[*types.InvalidCiphertextException],
		},
		{
			name: "RSA_AES wrap with a corrupted AES key wrap",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, types.AlgorithmSpecRsaAesKeyWrapSha256, spec)
				enc := wrap(t, types.AlgorithmSpecRsaAesKeyWrapSha256, p.PublicKey, newMaterial())
				enc[len(enc)-1] ^= 1
				_, err := importMaterial(c, keyID, p, enc, valid)
				return err
			},
			want: is[*types.InvalidCiphertextException],
		},
		{
			name: "unknown key",
			run: func(t *testing.T) error {
				keyID := createKey(t, c, types.OriginTypeExternal)
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, "00000000-0000-4000-8000-000000000000", p, wrap(t, alg, p.PublicKey, newMaterial()), valid)
				return err
			},
			want: is[*types.NotFoundException],
		},
		{
			name: "NEW_KEY_MATERIAL equal to the current material",
			run: func(t *testing.T) error {
				keyID, material := importNew(t, c, now)
				p := getParams(t, c, keyID, alg, spec)
				_, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, material), importOpts{validTo: inDays(now, 30), typ: types.ImportTypeNewKeyMaterial})
				return err
			},
			want: is[*types.IncorrectKeyMaterialException],
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.run(t)
			if err == nil {
				t.Fatal("call succeeded, want an error")
			}
			if !tt.want(err) {
				t.Fatalf("got %T: %v", err, err)
			}
		})
	}
}

// TestImportTokenExpiry moves the server clock: a token is good for exactly
// 24 hours, and a re-import with the same token works within them.
func TestImportTokenExpiry(t *testing.T) {
	clock := newFakeClock()
	_, c := startServer(t, kmslocal.Options{Clock: clock.Now, PoolSize: -1})
	const alg, spec = types.AlgorithmSpecRsaAesKeyWrapSha1, types.WrappingKeySpecRsa2048

	keyID := createKey(t, c, types.OriginTypeExternal)
	p := getParams(t, c, keyID, alg, spec)
	if !aws.ToTime(p.ParametersValidTo).Equal(clock.Now().Add(24 * time.Hour)) {
		t.Fatalf("ParametersValidTo = %v, want server clock + 24h = %v", p.ParametersValidTo, clock.Now().Add(24*time.Hour))
	}
	material := newMaterial()
	enc := wrap(t, alg, p.PublicKey, material)

	clock.Advance(24 * time.Hour) // exactly 24 hours: still valid
	if _, err := importMaterial(c, keyID, p, enc, importOpts{validTo: inDays(clock.Now(), 10)}); err != nil {
		t.Fatalf("import at 24h: %v", err)
	}
	clock.Advance(time.Second) // 24h+1s: expired, even for a re-import of the same material
	_, err := importMaterial(c, keyID, p, enc, importOpts{validTo: inDays(clock.Now(), 10)})
	if !is[*types.ExpiredImportTokenException](err) {
		t.Fatalf("import at 24h+1s: got %T: %v, want ExpiredImportTokenException", err, err)
	}
	// A token of an unrelated expired issue is still reported as expired,
	// not unknown, after GetParametersForImport has pruned it.
	getParams(t, c, keyID, alg, spec)
	_, err = importMaterial(c, keyID, p, enc, importOpts{validTo: inDays(clock.Now(), 10)})
	if !is[*types.ExpiredImportTokenException](err) {
		t.Fatalf("import after pruning: got %T: %v, want ExpiredImportTokenException", err, err)
	}
}

// TestValidToExpiry: when ValidTo passes the key returns to PendingImport
// and refuses Encrypt and Decrypt; re-importing the same material brings old
// ciphertexts back.
func TestValidToExpiry(t *testing.T) {
	clock := newFakeClock()
	_, c := startServer(t, kmslocal.Options{Clock: clock.Now, PoolSize: -1})
	const alg, spec = types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048

	keyID := createKey(t, c, types.OriginTypeExternal)
	p := getParams(t, c, keyID, alg, spec)
	material := newMaterial()
	enc := wrap(t, alg, p.PublicKey, material)
	validTo := clock.Now().Add(time.Hour)
	if _, err := importMaterial(c, keyID, p, enc, importOpts{validTo: &validTo}); err != nil {
		t.Fatalf("ImportKeyMaterial: %v", err)
	}
	blob, err := encrypt(c, keyID, []byte("survives expiry"), nil)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}

	clock.Advance(time.Hour - time.Second)
	if md := describe(t, c, keyID); md.KeyState != types.KeyStateEnabled {
		t.Fatalf("1s before ValidTo: state %s, want Enabled", md.KeyState)
	}
	clock.Advance(time.Second)
	md := describe(t, c, keyID)
	if md.KeyState != types.KeyStatePendingImport || md.Enabled || md.ValidTo != nil {
		t.Fatalf("at ValidTo: state %s, enabled %v, ValidTo %v; want PendingImport, false, none", md.KeyState, md.Enabled, md.ValidTo)
	}
	if _, err := encrypt(c, keyID, []byte("x"), nil); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("Encrypt after expiry: got %T: %v, want KMSInvalidStateException", err, err)
	}
	if _, err := decrypt(c, blob, nil); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("Decrypt after expiry: got %T: %v, want KMSInvalidStateException", err, err)
	}

	// The same token is still within its 24 hours: re-import with it.
	validTo = clock.Now().Add(48 * time.Hour)
	if _, err := importMaterial(c, keyID, p, enc, importOpts{validTo: &validTo}); err != nil {
		t.Fatalf("re-import: %v", err)
	}
	pt, err := decrypt(c, blob, nil)
	if err != nil || string(pt) != "survives expiry" {
		t.Fatalf("Decrypt after re-import = %q, %v", pt, err)
	}
	if md := describe(t, c, keyID); md.KeyState != types.KeyStateEnabled || !aws.ToTime(md.ValidTo).Equal(validTo) {
		t.Fatalf("after re-import: state %s, ValidTo %v; want Enabled, %v", md.KeyState, md.ValidTo, validTo)
	}
}

// TestDeleteImportedKeyMaterial: deletion makes the key PendingImport; the
// same material brings old ciphertexts back.
func TestDeleteImportedKeyMaterial(t *testing.T) {
	c := sharedClient(t)
	ctx := context.Background()
	const alg, spec = types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa3072

	keyID := createKey(t, c, types.OriginTypeExternal)
	material := newMaterial()
	p := getParams(t, c, keyID, alg, spec)
	if _, err := importMaterial(c, keyID, p, wrap(t, alg, p.PublicKey, material), importOpts{model: types.ExpirationModelTypeKeyMaterialDoesNotExpire}); err != nil {
		t.Fatalf("ImportKeyMaterial: %v", err)
	}
	if md := describe(t, c, keyID); md.ExpirationModel != types.ExpirationModelTypeKeyMaterialDoesNotExpire || md.ValidTo != nil {
		t.Fatalf("ExpirationModel %s, ValidTo %v; want DOES_NOT_EXPIRE and none", md.ExpirationModel, md.ValidTo)
	}
	blob, err := encrypt(c, keyID, []byte("before deletion"), map[string]string{"k": "v"})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("DeleteImportedKeyMaterial: %v", err)
	}
	if md := describe(t, c, keyID); md.KeyState != types.KeyStatePendingImport {
		t.Fatalf("after deletion: state %s, want PendingImport", md.KeyState)
	}
	if _, err := decrypt(c, blob, map[string]string{"k": "v"}); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("Decrypt after deletion: got %T: %v, want KMSInvalidStateException", err, err)
	}
	p = getParams(t, c, keyID, types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa2048)
	if _, err := importMaterial(c, keyID, p, wrap(t, types.AlgorithmSpecRsaesOaepSha1, p.PublicKey, material), importOpts{validTo: inDays(time.Now(), 1)}); err != nil {
		t.Fatalf("re-import: %v", err)
	}
	pt, err := decrypt(c, blob, map[string]string{"k": "v"})
	if err != nil || string(pt) != "before deletion" {
		t.Fatalf("Decrypt after re-import = %q, %v", pt, err)
	}

	awsKey := createKey(t, c, types.OriginTypeAwsKms)
	_, err = c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(awsKey)})
	if !is[*types.UnsupportedOperationException](err) {
		t.Fatalf("DeleteImportedKeyMaterial on AWS_KMS key: got %T: %v, want UnsupportedOperationException", err, err)
	}
}

// TestEncryptDecrypt covers the cryptographic operations' refusals.
func TestEncryptDecrypt(t *testing.T) {
	c := sharedClient(t)
	ctx := context.Background()
	keyID, _ := importNew(t, c, time.Now())
	otherID, _ := importNew(t, c, time.Now())
	ec := map[string]string{"tenant": "a", "purpose": "test"}
	blob, err := encrypt(c, keyID, []byte("secret"), ec)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if bytes.Contains(blob, []byte("secret")) {
		t.Fatal("ciphertext contains the plaintext")
	}
	pendingID := createKey(t, c, types.OriginTypeExternal)
	awsKeyID := createKey(t, c, types.OriginTypeAwsKms)

	tests := []struct {
		name string
		run  func() error
		want func(error) bool
	}{
		{"other encryption context", func() error {
			_, err := decrypt(c, blob, map[string]string{"tenant": "b", "purpose": "test"})
			return err
		}, is[*types.InvalidCiphertextException]},
		{"missing encryption context", func() error {
			_, err := decrypt(c, blob, nil)
			return err
		}, is[*types.InvalidCiphertextException]},
		{"tampered ciphertext", func() error {
			bad := bytes.Clone(blob)
			bad[len(bad)-5] ^= 1
			_, err := decrypt(c, bad, ec)
			return err
		}, is[*types.InvalidCiphertextException]},
		{"not a kmslocal blob", func() error {
			_, err := decrypt(c, []byte("garbage"), ec)
			return err
		}, is[*types.InvalidCiphertextException]},
		{"blob header names the other key", func() error {
			other, err := encrypt(c, otherID, []byte("x"), nil)
			if err != nil {
				return err
			}
			bad := bytes.Clone(blob)
			copy(bad[1:50], other[1:50]) // key ID and key material ID
			_, err = decrypt(c, bad, ec)
			return err
		}, is[*types.InvalidCiphertextException]},
		{"KeyId of another key", func() error {
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec, KeyId: aws.String(otherID)})
			return err
		}, is[*types.IncorrectKeyException]},
		{"Encrypt with a PendingImport key", func() error {
			_, err := encrypt(c, pendingID, []byte("x"), nil)
			return err
		}, is[*types.KMSInvalidStateException]},
		{"Encrypt with an unknown key", func() error {
			_, err := encrypt(c, "alias/no-such-alias", []byte("x"), nil)
			return err
		}, is[*types.NotFoundException]},
		{"Encrypt with an RSA algorithm", func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("x"), EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
			return err
		}, is[*types.InvalidKeyUsageException]},
		{"Encrypt more than 4096 bytes", func() error {
			_, err := encrypt(c, keyID, make([]byte, 4097), nil)
			return err
		}, isValidation},
		{"CreateKey with an RSA key spec", func() error {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
			return err
		}, is[*types.UnsupportedOperationException]},
		{"CreateKey with origin AWS_CLOUDHSM", func() error {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeAwsCloudhsm})
			return err
		}, is[*types.UnsupportedOperationException]},
		{"DryRun", func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("x"), DryRun: aws.Bool(true)})
			return err
		}, is[*types.DryRunOperationException]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil {
				t.Fatal("call succeeded, want an error")
			}
			if !tt.want(err) {
				t.Fatalf("got %T: %v", err, err)
			}
		})
	}

	t.Run("AWS_KMS key round trip", func(t *testing.T) {
		b, err := encrypt(c, awsKeyID, []byte("aws_kms"), nil)
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		if pt, err := decrypt(c, b, nil); err != nil || string(pt) != "aws_kms" {
			t.Fatalf("Decrypt = %q, %v", pt, err)
		}
	})
	t.Run("disabled key", func(t *testing.T) {
		id, material := importNew(t, c, time.Now())
		b, err := encrypt(c, id, []byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(id)}); err != nil {
			t.Fatalf("DisableKey: %v", err)
		}
		if _, err := decrypt(c, b, nil); !is[*types.DisabledException](err) {
			t.Fatalf("Decrypt with disabled key: got %T: %v, want DisabledException", err, err)
		}
		// Per the KMS key state table a Disabled EXTERNAL key takes a
		// re-import of its material, and stays Disabled.
		p := getParams(t, c, id, types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa2048)
		validTo := inDays(time.Now(), 60)
		if _, err := importMaterial(c, id, p, wrap(t, types.AlgorithmSpecRsaesOaepSha1, p.PublicKey, material), importOpts{validTo: validTo}); err != nil {
			t.Fatalf("re-import into a Disabled key: %v", err)
		}
		if md := describe(t, c, id); md.KeyState != types.KeyStateDisabled || !aws.ToTime(md.ValidTo).Equal(*validTo) {
			t.Fatalf("after re-import into a Disabled key: %s, ValidTo %v; want Disabled with the new ValidTo", md.KeyState, md.ValidTo)
		}
		if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(id)}); err != nil {
			t.Fatalf("EnableKey: %v", err)
		}
		if _, err := decrypt(c, b, nil); err != nil {
			t.Fatalf("Decrypt after EnableKey: %v", err)
		}
	})
	t.Run("alias and GenerateDataKey", func(t *testing.T) {
		alias := "alias/kmslocal-test-" + keyID[:8]
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(keyID)}); err != nil {
			t.Fatalf("CreateAlias: %v", err)
		}
		_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(otherID)})
		if !is[*types.AlreadyExistsException](err) {
			t.Fatalf("duplicate CreateAlias: got %T: %v, want AlreadyExistsException", err, err)
		}
		if md := describe(t, c, alias); aws.ToString(md.KeyId) != keyID {
			t.Fatalf("DescribeKey(%s) = %s, want %s", alias, aws.ToString(md.KeyId), keyID)
		}
		dk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(alias), KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		if len(dk.Plaintext) != 32 {
			t.Fatalf("data key is %d bytes, want 32", len(dk.Plaintext))
		}
		pt, err := decrypt(c, dk.CiphertextBlob, ec)
		if err != nil || !bytes.Equal(pt, dk.Plaintext) {
			t.Fatalf("Decrypt(data key) = %x, %v; want %x", pt, err, dk.Plaintext)
		}
		if _, err := c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String(alias)}); err != nil {
			t.Fatalf("DeleteAlias: %v", err)
		}
		if _, err := encrypt(c, alias, []byte("x"), nil); !is[*types.NotFoundException](err) {
			t.Fatalf("Encrypt via deleted alias: got %T: %v, want NotFoundException", err, err)
		}
	})
}

// TestKeyLifecycle covers ListKeys paging, deletion scheduling and its
// cancellation, and deletion when the date passes.
func TestKeyLifecycle(t *testing.T) {
	clock := newFakeClock()
	_, c := startServer(t, kmslocal.Options{Clock: clock.Now, PoolSize: -1})
	ctx := context.Background()

	var ids []string
	for range 5 {
		ids = append(ids, createKey(t, c, types.OriginTypeAwsKms))
	}
	var listed []string
	var marker *string
	for pages := 0; ; pages++ {
		out, err := c.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(2), Marker: marker})
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		for _, k := range out.Keys {
			listed = append(listed, aws.ToString(k.KeyId))
		}
		if !out.Truncated {
			if pages != 2 {
				t.Fatalf("ListKeys took %d pages, want 3", pages+1)
			}
			break
		}
		marker = out.NextMarker
	}
	if strings.Join(listed, ",") != strings.Join(ids, ",") {
		t.Fatalf("ListKeys = %v, want %v", listed, ids)
	}

	out, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(ids[0]), PendingWindowInDays: aws.Int32(7)})
	if err != nil {
		t.Fatalf("ScheduleKeyDeletion: %v", err)
	}
	if out.KeyState != types.KeyStatePendingDeletion || !aws.ToTime(out.DeletionDate).Equal(clock.Now().Add(7*24*time.Hour)) {
		t.Fatalf("ScheduleKeyDeletion = %s, %v", out.KeyState, out.DeletionDate)
	}
	if _, err := encrypt(c, ids[0], []byte("x"), nil); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("Encrypt with key pending deletion: got %T: %v", err, err)
	}
	if _, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(ids[0])}); err != nil {
		t.Fatalf("CancelKeyDeletion: %v", err)
	}
	if md := describe(t, c, ids[0]); md.KeyState != types.KeyStateDisabled {
		t.Fatalf("after CancelKeyDeletion: %s, want Disabled", md.KeyState)
	}
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(ids[1]), PendingWindowInDays: aws.Int32(6)}); !isValidation(err) {
		t.Fatalf("PendingWindowInDays 6: got %T: %v, want ValidationException", err, err)
	}
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(ids[1]), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(7 * 24 * time.Hour)
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ids[1])})
	if !is[*types.NotFoundException](err) {
		t.Fatalf("DescribeKey after the deletion date: got %T: %v, want NotFoundException", err, err)
	}
}
