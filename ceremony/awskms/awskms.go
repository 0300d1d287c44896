// Package awskms is keyceremony's only user of the AWS SDK. It speaks to AWS
// KMS (or anything that speaks its protocol, such as the loopback test server
// in cmd/kmslocal) through the real aws-sdk-go-v2 client, configured the
// standard way: AWS_ENDPOINT_URL_KMS or a profile's endpoint_url, AWS_REGION
// or the profile's region, and the usual credentials chain.
package awskms

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/keyceremony/keyceremony/wrap"
)

// Options choose the AWS configuration. Empty fields fall back to the
// standard AWS environment and shared config files.
type Options struct {
	Region  string
	Profile string
}

// MaxAttempts is how many times a KMS request is tried when KMS throttles
// it or fails transiently.
const MaxAttempts = 10

// Client calls KMS.
type Client struct {
	kms    *kms.Client
	region string
}

// New loads the AWS configuration and returns a client.
func New(ctx context.Context, o Options) (*Client, error) {
	var opts []func(*config.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.Profile))
	}
	// Batches run several requests at once against per-account request
	// quotas: a ThrottlingException is retried with backoff and jitter, up
	// to MaxAttempts, without the SDK's client-side retry budget (which a
	// long throttled batch would exhaust and then fail fast). An endpoint
	// that refuses connections is reported at once, not retried.
	opts = append(opts, config.WithRetryer(func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = MaxAttempts
			o.MaxBackoff = 20 * time.Second
			o.RateLimiter = ratelimit.None
			o.Retryables = slices.DeleteFunc(o.Retryables, func(r retry.IsErrorRetryable) bool {
				_, conn := r.(retry.RetryableConnectionError)
				return conn
			})
		})
	}))
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("failed to load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region configured: set kms.region in the config, AWS_REGION, or a profile's region")
	}
	return &Client{kms: kms.NewFromConfig(cfg), region: cfg.Region}, nil
}

// Region is the Region the client talks to.
func (c *Client) Region() string { return c.region }

// In returns a client like c for another Region (a multi-Region key's
// replica lives there): the same credentials, endpoint and retries.
func (c *Client) In(region string) *Client {
	if region == c.region {
		return c
	}
	return &Client{kms: kms.New(c.kms.Options(), func(o *kms.Options) { o.Region = region }), region: region}
}

// Endpoint is the URL the client sends its KMS calls to, resolved the way
// the SDK resolves it (AWS_ENDPOINT_URL_KMS, a profile's endpoint_url, or
// AWS's endpoint for the Region, FIPS and dual-stack as configured). It
// makes no call.
func (c *Client) Endpoint(ctx context.Context) (string, error) {
	o := c.kms.Options()
	ep, err := o.EndpointResolverV2.ResolveEndpoint(ctx, kms.EndpointParameters{
		Region:       aws.String(o.Region),
		Endpoint:     o.BaseEndpoint,
		UseFIPS:      aws.Bool(o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled),
		UseDualStack: aws.Bool(o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled),
	})
	if err != nil {
		return "", fmt.Errorf("failed to resolve the KMS endpoint for Region %s: %w", o.Region, err)
	}
	return ep.URI.String(), nil
}

// Key is what DescribeKey says about a key.
type Key struct {
	ARN             string
	State           string
	Origin          string
	ExpirationModel string
	ValidTo         *time.Time
	// CurrentMaterialID is the KeyMaterialId of the current material.
	CurrentMaterialID string
	MultiRegion       bool
	// MultiRegionType is PRIMARY or REPLICA for a multi-Region key.
	MultiRegionType string
	// KeySpec is the key's KeySpec (SYMMETRIC_DEFAULT for AES-256).
	KeySpec string
	// Replicas are the ARNs of a multi-Region key's replicas.
	Replicas []string
}

// CreateKey creates a symmetric KMS key with Origin EXTERNAL, waiting for
// imported material, and returns its ARN.
func (c *Client) CreateKey(ctx context.Context, description string, multiRegion bool) (string, error) {
	out, err := c.kms.CreateKey(ctx, &kms.CreateKeyInput{
		Origin:      types.OriginTypeExternal,
		KeySpec:     types.KeySpecSymmetricDefault,
		KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
		Description: aws.String(description),
		MultiRegion: aws.Bool(multiRegion),
	})
	if err != nil {
		return "", explain("create a KMS key", "", err)
	}
	return aws.ToString(out.KeyMetadata.Arn), nil
}

// Describe returns the state of a key.
func (c *Client) Describe(ctx context.Context, keyID string) (*Key, error) {
	out, err := c.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		return nil, explain("describe", keyID, err)
	}
	m := out.KeyMetadata
	return &Key{ARN: aws.ToString(m.Arn), State: string(m.KeyState), Origin: string(m.Origin), ExpirationModel: string(m.ExpirationModel), ValidTo: m.ValidTo,
		CurrentMaterialID: aws.ToString(m.CurrentKeyMaterialId), MultiRegion: aws.ToBool(m.MultiRegion), MultiRegionType: multiRegionType(m),
		KeySpec: string(m.KeySpec), Replicas: replicaARNs(m)}, nil
}

func replicaARNs(m *types.KeyMetadata) []string {
	if m.MultiRegionConfiguration == nil {
		return nil
	}
	var out []string
	for _, r := range m.MultiRegionConfiguration.ReplicaKeys {
		out = append(out, aws.ToString(r.Arn))
	}
	return out
}

func multiRegionType(m *types.KeyMetadata) string {
	if m.MultiRegionConfiguration == nil {
		return ""
	}
	return string(m.MultiRegionConfiguration.MultiRegionKeyType)
}

// GetParameters fetches import parameters for keyID.
func (c *Client) GetParameters(ctx context.Context, keyID string, alg wrap.Algorithm, spec string) (*wrap.Params, error) {
	out, err := c.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId:             aws.String(keyID),
		WrappingAlgorithm: types.AlgorithmSpec(alg),
		WrappingKeySpec:   types.WrappingKeySpec(spec),
	})
	if err != nil {
		return nil, explain("get import parameters for", keyID, err)
	}
	p := &wrap.Params{
		Format:      wrap.ParamsFormat,
		KeyARN:      aws.ToString(out.KeyId),
		Region:      c.region,
		Algorithm:   alg,
		KeySpec:     spec,
		PublicKey:   out.PublicKey,
		ImportToken: out.ImportToken,
		ValidTo:     aws.ToTime(out.ParametersValidTo).UTC(),
	}
	if _, err := p.RSAPublicKey(); err != nil {
		return nil, err
	}
	return p, nil
}

// Encrypt encrypts plaintext under keyID.
func (c *Client) Encrypt(ctx context.Context, keyID string, plaintext []byte) ([]byte, error) {
	out, err := c.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: plaintext})
	if err != nil {
		return nil, explain("encrypt with", keyID, err)
	}
	return out.CiphertextBlob, nil
}

// Decrypt decrypts a ciphertext made by Encrypt under keyID.
func (c *Client) Decrypt(ctx context.Context, keyID string, ciphertext []byte) ([]byte, error) {
	out, err := c.kms.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(keyID), CiphertextBlob: ciphertext})
	if err != nil {
		return nil, explain("decrypt with", keyID, err)
	}
	return out.Plaintext, nil
}

// Error is a KMS error with keyceremony's hint on what to do.
type Error struct {
	Op   string
	Key  string
	Code string // the AWS error code, e.g. "ExpiredImportTokenException"
	Msg  string
	Hint string
	Err  error
}

func (e *Error) Error() string {
	s := "failed to " + e.Op
	if e.Key != "" {
		s += " " + e.Key
	}
	if e.Code != "" {
		s += ": " + e.Code
		if e.Msg != "" {
			s += ": " + oneLine(e.Msg)
		}
	} else {
		s += ": " + oneLine(e.Err.Error())
	}
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

var hints = map[string]string{
	"ExpiredImportTokenException":   "the import token is older than 24 hours: fetch new parameters and wrap again",
	"InvalidImportTokenException":   "the import token does not belong to this key or was damaged: fetch new parameters for this key and wrap again",
	"IncorrectKeyMaterialException": "this key already had other material: KMS accepts only the same material again; check you recovered the right escrow",
	"KMSInvalidStateException":      "the key is in the wrong state for this call: check it with DescribeKey",
	"NotFoundException":             "no such key in this account and Region: check the key ARN and the Region",
	"InvalidCiphertextException":    "KMS could not unwrap the material: the wrapping public key or algorithm does not match the import token",
	"UnsupportedOperationException": "the key must have Origin EXTERNAL to take imported material",
	"AccessDeniedException":         "the credentials in use lack permission: check the IAM policy",
	"UnrecognizedClientException":   "the credentials are not valid for this endpoint",
}

func explain(op, key string, err error) error {
	e := &Error{Op: op, Key: key, Err: err}
	var api smithy.APIError
	if errors.As(err, &api) {
		e.Code, e.Msg = api.ErrorCode(), api.ErrorMessage()
		e.Hint = hints[e.Code]
	} else if strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") {
		e.Hint = "KMS is not reachable: check AWS_ENDPOINT_URL_KMS, the network, or use the offline commands"
	}
	return e
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
