package awskms

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyceremony/keyceremony/wrap"
)

// Material is one key material of a key, as ListKeyRotations reports it.
type Material struct {
	ID          string
	Description string
	// State is CURRENT, NON_CURRENT, PENDING_ROTATION or
	// PENDING_MULTI_REGION_IMPORT_AND_ROTATION.
	State string
	// ImportState is IMPORTED or PENDING_IMPORT (EXTERNAL keys only).
	ImportState     string
	ExpirationModel string
	ValidTo         *time.Time
	RotationDate    *time.Time
}

// Materials lists every key material of keyID, oldest first (ListKeyRotations
// with ALL_KEY_MATERIAL, all pages).
func (c *Client) Materials(ctx context.Context, keyID string) ([]Material, error) {
	var out []Material
	p := kms.NewListKeyRotationsPaginator(c.kms, &kms.ListKeyRotationsInput{
		KeyId:              aws.String(keyID),
		IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, explain("list the key materials of", keyID, err)
		}
		for _, r := range page.Rotations {
			out = append(out, Material{
				ID:              aws.ToString(r.KeyMaterialId),
				Description:     aws.ToString(r.KeyMaterialDescription),
				State:           string(r.KeyMaterialState),
				ImportState:     string(r.ImportState),
				ExpirationModel: string(r.ExpirationModel),
				ValidTo:         r.ValidTo,
				RotationDate:    r.RotationDate,
			})
		}
	}
	return out, nil
}

// ImportType says whether an import brings a key's existing material
// again or new material for a rotation.
type ImportType string

// Import types of ImportKeyMaterial.
const (
	ImportExisting ImportType = "EXISTING_KEY_MATERIAL"
	ImportNew      ImportType = "NEW_KEY_MATERIAL"
)

// ImportRequest is one ImportKeyMaterial call.
type ImportRequest struct {
	Bundle *wrap.Bundle
	// ValidTo nil imports with KEY_MATERIAL_DOES_NOT_EXPIRE; otherwise it is
	// sent in whole seconds.
	ValidTo *time.Time
	// Description goes into KeyMaterialDescription when not empty.
	Description string
	// Type is empty for KMS's default.
	Type ImportType
	// MaterialID names the existing material being imported again.
	MaterialID string
}

// ImportMaterial imports a wrapped bundle as r says and returns the
// KeyMaterialId KMS derived for it.
func (c *Client) ImportMaterial(ctx context.Context, r ImportRequest) (string, error) {
	in := &kms.ImportKeyMaterialInput{
		KeyId:                aws.String(r.Bundle.KeyARN),
		ImportToken:          r.Bundle.ImportToken,
		EncryptedKeyMaterial: r.Bundle.EncryptedKeyMaterial,
		ExpirationModel:      types.ExpirationModelTypeKeyMaterialDoesNotExpire,
		ImportType:           types.ImportType(r.Type),
	}
	if r.ValidTo != nil {
		in.ExpirationModel = types.ExpirationModelTypeKeyMaterialExpires
		in.ValidTo = aws.Time(r.ValidTo.UTC().Truncate(time.Second))
	}
	if r.Description != "" {
		in.KeyMaterialDescription = aws.String(r.Description)
	}
	if r.MaterialID != "" {
		in.KeyMaterialId = aws.String(r.MaterialID)
	}
	out, err := c.kms.ImportKeyMaterial(ctx, in)
	if err != nil {
		return "", explain("import key material into", r.Bundle.KeyARN, err)
	}
	return aws.ToString(out.KeyMaterialId), nil
}

// RotateOnDemand makes the key's material in PENDING_ROTATION current.
func (c *Client) RotateOnDemand(ctx context.Context, keyID string) error {
	if _, err := c.kms.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); err != nil {
		return explain("rotate", keyID, err)
	}
	return nil
}

// Replicate makes a replica of a multi-Region primary key in region and
// returns the replica's ARN.
func (c *Client) Replicate(ctx context.Context, keyID, region, description string) (string, error) {
	out, err := c.kms.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(keyID), ReplicaRegion: aws.String(region), Description: aws.String(description)})
	if err != nil {
		return "", explain("replicate "+keyID+" into", region, err)
	}
	return aws.ToString(out.ReplicaKeyMetadata.Arn), nil
}

// DeleteMaterial deletes one key material of keyID, named by its
// KeyMaterialId (empty: the current one). The key needs all its CURRENT and
// NON_CURRENT materials to be usable.
func (c *Client) DeleteMaterial(ctx context.Context, keyID, materialID string) error {
	in := &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(keyID)}
	if materialID != "" {
		in.KeyMaterialId = aws.String(materialID)
	}
	if _, err := c.kms.DeleteImportedKeyMaterial(ctx, in); err != nil {
		return explain("delete key material of", keyID, err)
	}
	return nil
}
