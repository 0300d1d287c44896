package awskms

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// Tagged keys let a ceremony find again a KMS key it created even when the
// process died before recording it: CreateTaggedKey tags the key in the
// same call that creates it, and FindTagged finds it by those tags.

// CreateTaggedKey is CreateKey with tags set in the same call, so that no
// key of the ceremony ever exists untagged.
func (c *Client) CreateTaggedKey(ctx context.Context, description string, multiRegion bool, tags map[string]string) (string, error) {
	out, err := c.kms.CreateKey(ctx, &kms.CreateKeyInput{
		Origin:      types.OriginTypeExternal,
		KeySpec:     types.KeySpecSymmetricDefault,
		KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
		Description: aws.String(description),
		MultiRegion: aws.Bool(multiRegion),
		Tags:        tagList(tags),
	})
	if err != nil {
		return "", explain("create a KMS key", "", err)
	}
	return aws.ToString(out.KeyMetadata.Arn), nil
}

// TagKey adds tags to a key, replacing the values of tag keys it has.
func (c *Client) TagKey(ctx context.Context, keyID string, tags map[string]string) error {
	if _, err := c.kms.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(keyID), Tags: tagList(tags)}); err != nil {
		return explain("tag", keyID, err)
	}
	return nil
}

// TaggedKey is a key FindTagged found, with all its tags.
type TaggedKey struct {
	ARN  string
	Tags map[string]string
}

// FindTagged lists every key of the account in the client's Region
// (ListKeys, page by page) and returns those whose tags (ListResourceTags,
// page by page) include every tag of match, in ListKeys order.
func (c *Client) FindTagged(ctx context.Context, match map[string]string) ([]TaggedKey, error) {
	var out []TaggedKey
	keys := kms.NewListKeysPaginator(c.kms, &kms.ListKeysInput{Limit: aws.Int32(1000)})
	for keys.HasMorePages() {
		page, err := keys.NextPage(ctx)
		if err != nil {
			return nil, explain("list the KMS keys", "", err)
		}
		for _, k := range page.Keys {
			tags, err := c.tags(ctx, aws.ToString(k.KeyArn))
			if err != nil {
				return nil, err
			}
			if hasAll(tags, match) {
				out = append(out, TaggedKey{ARN: aws.ToString(k.KeyArn), Tags: tags})
			}
		}
	}
	return out, nil
}

// tags returns all tags of a key.
func (c *Client) tags(ctx context.Context, keyID string) (map[string]string, error) {
	out := map[string]string{}
	pages := kms.NewListResourceTagsPaginator(c.kms, &kms.ListResourceTagsInput{KeyId: aws.String(keyID), Limit: aws.Int32(50)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, explain("list the tags of", keyID, err)
		}
		for _, t := range page.Tags {
			out[aws.ToString(t.TagKey)] = aws.ToString(t.TagValue)
		}
	}
	return out, nil
}

func hasAll(tags, match map[string]string) bool {
	for k, v := range match {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func tagList(tags map[string]string) []types.Tag {
	var out []types.Tag
	for k, v := range tags {
		out = append(out, types.Tag{TagKey: aws.String(k), TagValue: aws.String(v)})
	}
	return out
}
