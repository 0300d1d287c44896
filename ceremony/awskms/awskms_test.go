package awskms_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/internal/kmslocal"
	"github.com/keyceremony/keyceremony/wrap"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func setup(t *testing.T) (*awskms.Client, *clock) {
	t.Helper()
	clk := &clock{now: time.Now()}
	srv := kmslocal.New(kmslocal.Options{Clock: clk.Now})
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_KMS": hs.URL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	c, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

func bundle(t *testing.T, p *wrap.Params, material []byte) *wrap.Bundle {
	t.Helper()
	pub, err := p.RSAPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := rsa.EncryptOAEP(p.Algorithm.Hash().New(), rand.Reader, pub, material, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &wrap.Bundle{KeyARN: p.KeyARN, Algorithm: p.Algorithm, KeySpec: p.KeySpec, ImportToken: p.ImportToken, ParamsValidTo: p.ValidTo, EncryptedKeyMaterial: enc}
}

// TestErrorsExplained checks that KMS refusals reach the operator as one
// line with the AWS error code and what to do.
func TestErrorsExplained(t *testing.T) {
	ctx := context.Background()
	c, clk := setup(t)
	arn, err := c.CreateKey(ctx, "test", false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Region() != "eu-west-1" || !strings.Contains(arn, ":eu-west-1:") {
		t.Fatalf("region %s, arn %s", c.Region(), arn)
	}
	p, err := c.GetParameters(ctx, arn, wrap.RSAESOAEPSHA256, "RSA_2048")
	if err != nil {
		t.Fatal(err)
	}
	if p.KeyARN != arn || time.Until(p.ValidTo) < 23*time.Hour {
		t.Fatalf("params %s valid to %v", p.KeyARN, p.ValidTo)
	}
	material := make([]byte, 32)
	rand.Read(material)
	other := make([]byte, 32)
	rand.Read(other)
	vt := time.Now().Add(48 * time.Hour)

	check := func(name string, err error, code, hint string) {
		t.Helper()
		var ke *awskms.Error
		if !errors.As(err, &ke) || ke.Code != code {
			t.Fatalf("%s: error %v, want code %s", name, err, code)
		}
		if !strings.Contains(err.Error(), hint) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q lacks hint %q or is not one line", name, err, hint)
		}
	}
	_, err = c.Describe(ctx, "arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000")
	check("unknown key", err, "NotFoundException", "check the key ARN")

	if err := importBundle(ctx, c, bundle(t, p, material), &vt, "keyceremony test"); err != nil {
		t.Fatal(err)
	}
	d, err := c.Describe(ctx, arn)
	if err != nil || d.State != "Enabled" || d.ValidTo == nil || !d.ValidTo.Equal(vt.Truncate(time.Second)) {
		t.Fatalf("after import: %+v %v", d, err)
	}
	check("different material", importBundle(ctx, c, bundle(t, p, other), &vt, ""), "IncorrectKeyMaterialException", "KMS accepts only the same material")

	ct, err := c.Encrypt(ctx, arn, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteMaterial(ctx, arn, ""); err != nil {
		t.Fatal(err)
	}
	_, err = c.Decrypt(ctx, arn, ct)
	check("decrypt without material", err, "KMSInvalidStateException", "wrong state")

	clk.Add(24*time.Hour + time.Second)
	check("expired token", importBundle(ctx, c, bundle(t, p, material), &vt, ""), "ExpiredImportTokenException", "fetch new parameters")

	// New parameters, the same material: the old ciphertext decrypts again.
	p2, err := c.GetParameters(ctx, arn, wrap.RSAESOAEPSHA1, "RSA_2048")
	if err != nil {
		t.Fatal(err)
	}
	if err := importBundle(ctx, c, bundle(t, p2, material), nil, ""); err != nil {
		t.Fatal(err)
	}
	pt, err := c.Decrypt(ctx, arn, ct)
	if err != nil || string(pt) != "hello" {
		t.Fatalf("decrypt after re-import: %q %v", pt, err)
	}
	d, _ = c.Describe(ctx, arn)
	if d.ExpirationModel != "KEY_MATERIAL_DOES_NOT_EXPIRE" || d.ValidTo != nil {
		t.Errorf("after re-import without expiry: %+v", d)
	}

	arn2, _ := c.CreateKey(ctx, "other", false)
	p3, _ := c.GetParameters(ctx, arn2, wrap.RSAESOAEPSHA1, "RSA_2048")
	b := bundle(t, p3, material)
	b.KeyARN = arn
	check("token of another key", importBundle(ctx, c, b, nil, ""), "InvalidImportTokenException", "does not belong to this key")
}

// importBundle imports b as ImportMaterial does for a key's first
// material (validTo nil: does not expire).
func importBundle(ctx context.Context, c *awskms.Client, b *wrap.Bundle, validTo *time.Time, description string) error {
	_, err := c.ImportMaterial(ctx, awskms.ImportRequest{Bundle: b, ValidTo: validTo, Description: description})
	return err
}
