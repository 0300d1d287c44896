package wrap

import (
	"github.com/keyceremony/keyceremony/internal/strictjson"

	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// AWS's own documented import flow (the AWS CLI) carries the parameters as
// the JSON output of `aws kms get-parameters-for-import`, or as the
// PublicKey.bin and ImportToken.bin files of the KMS Developer Guide, and
// takes the result as EncryptedKeyMaterial.bin for `aws kms
// import-key-material --encrypted-key-material fileb://...`. The functions
// here turn those into [Params]; the encrypted material of a [Bundle] is
// already exactly what EncryptedKeyMaterial.bin holds.

// awsCLIParams is the JSON the AWS CLI prints for get-parameters-for-import.
type awsCLIParams struct {
	KeyID             string          `json:"KeyId"`
	ImportToken       string          `json:"ImportToken"`
	PublicKey         string          `json:"PublicKey"`
	ParametersValidTo json.RawMessage `json:"ParametersValidTo"`
}

// ParseAWSCLIParams reads the JSON output of `aws kms
// get-parameters-for-import` (KeyId, ImportToken, PublicKey,
// ParametersValidTo; unknown fields are errors). That output does not say
// which wrapping algorithm was asked for, so the caller passes alg; the key
// spec follows from the public key's size and the Region from the key ARN.
func ParseAWSCLIParams(data []byte, alg Algorithm) (*Params, error) {
	var a awsCLIParams
	if err := strictjson.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("invalid aws kms get-parameters-for-import output: %w", err)
	}
	pub, err := base64.StdEncoding.DecodeString(a.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("invalid aws kms get-parameters-for-import output: PublicKey is not base64: %w", err)
	}
	tok, err := base64.StdEncoding.DecodeString(a.ImportToken)
	if err != nil {
		return nil, fmt.Errorf("invalid aws kms get-parameters-for-import output: ImportToken is not base64: %w", err)
	}
	vt, err := parseAWSTime(a.ParametersValidTo)
	if err != nil {
		return nil, fmt.Errorf("invalid aws kms get-parameters-for-import output: ParametersValidTo: %w", err)
	}
	p, err := ParamsFromFiles(a.KeyID, pub, tok, alg, vt)
	if err != nil {
		return nil, fmt.Errorf("invalid aws kms get-parameters-for-import output: %w", err)
	}
	return p, nil
}

// parseAWSTime accepts the CLI's two timestamp formats: ISO 8601 (the
// default, cli_timestamp_format = iso8601) and epoch seconds (= none).
func parseAWSTime(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, errors.New("missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not an ISO 8601 time", s)
		}
		return t.UTC(), nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f <= 0 || math.IsInf(f, 0) || f > 1e11 {
		return time.Time{}, fmt.Errorf("%s is neither an ISO 8601 time nor epoch seconds", raw)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC(), nil
}

// ParamsFromFiles builds [Params] from the pieces of AWS's documented flow:
// the key ARN, the DER public key (PublicKey.bin), the import token
// (ImportToken.bin), the wrapping algorithm that was asked for and the
// ParametersValidTo that get-parameters-for-import returned. The key spec
// follows from the public key's size and the Region from the ARN.
func ParamsFromFiles(keyARN string, publicKey, importToken []byte, alg Algorithm, validTo time.Time) (*Params, error) {
	p := &Params{
		Format:      ParamsFormat,
		KeyARN:      keyARN,
		Region:      RegionOf(keyARN),
		Algorithm:   alg,
		PublicKey:   publicKey,
		ImportToken: importToken,
		ValidTo:     validTo.UTC(),
	}
	p.KeySpec = keySpecOf(publicKey)
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// keySpecOf names the RSA_* spec of a DER public key, or "" when it is none.
func keySpecOf(der []byte) string {
	for _, spec := range KeySpecs {
		p := Params{KeyARN: "?", PublicKey: der, KeySpec: spec}
		if _, err := p.RSAPublicKey(); err == nil {
			return spec
		}
	}
	return "unknown"
}

// RegionOf returns the Region of a KMS key ARN
// (arn:PARTITION:kms:REGION:ACCOUNT:key/ID), or "" for a bare key id.
func RegionOf(arn string) string {
	f := strings.SplitN(arn, ":", 6)
	if len(f) == 6 && f[0] == "arn" && f[2] == "kms" {
		return f[3]
	}
	return ""
}
