package kmslocal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyceremony/keyceremony/internal/kmslocal"
)

func tagList(kv ...string) []types.Tag {
	var out []types.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, types.Tag{TagKey: aws.String(kv[i]), TagValue: aws.String(kv[i+1])})
	}
	return out
}

// allTags reads every tag of a key through ListResourceTags, limit at a
// time, following NextMarker.
func allTags(t *testing.T, c *kms.Client, keyID string, limit int32) (map[string]string, int) {
	t.Helper()
	out, pages := map[string]string{}, 0
	in := &kms.ListResourceTagsInput{KeyId: aws.String(keyID), Limit: aws.Int32(limit)}
	for {
		page, err := c.ListResourceTags(context.Background(), in)
		if err != nil {
			t.Fatalf("ListResourceTags: %v", err)
		}
		pages++
		for _, tg := range page.Tags {
			if _, dup := out[aws.ToString(tg.TagKey)]; dup {
				t.Fatalf("tag %s listed twice", aws.ToString(tg.TagKey))
			}
			out[aws.ToString(tg.TagKey)] = aws.ToString(tg.TagValue)
		}
		if !page.Truncated {
			return out, pages
		}
		in.Marker = page.NextMarker
	}
}

// TestTags: tags given to CreateKey, added and replaced by TagResource,
// removed by UntagResource, listed by ListResourceTags page by page, kept in
// the state file; and the errors AWS documents, changing nothing.
func TestTags(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state.json")
	_, c := startServer(t, kmslocal.Options{StateFile: state, PoolSize: -1})
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal,
		Tags: tagList("keyceremony:ceremony", "c-1", "keyceremony:label", "payments", "empty", "")})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.KeyMetadata.KeyId)
	got, _ := allTags(t, c, id, 50)
	if fmt.Sprint(got) != "map[empty: keyceremony:ceremony:c-1 keyceremony:label:payments]" {
		t.Errorf("tags after CreateKey: %v", got)
	}
	if _, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: out.KeyMetadata.Arn, Tags: tagList("keyceremony:label", "archive", "team", "crypto")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UntagResource(ctx, &kms.UntagResourceInput{KeyId: aws.String(id), TagKeys: []string{"empty", "not-there"}}); err != nil {
		t.Fatal(err)
	}
	got, _ = allTags(t, c, id, 50)
	if fmt.Sprint(got) != "map[keyceremony:ceremony:c-1 keyceremony:label:archive team:crypto]" {
		t.Errorf("tags after TagResource and UntagResource: %v", got)
	}

	// 50 tags in all, listed 7 at a time: 8 pages, each tag once.
	var many []string
	for i := len(got); i < 50; i++ {
		many = append(many, fmt.Sprintf("t%02d", i), "v")
	}
	if _, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: tagList(many...)}); err != nil {
		t.Fatal(err)
	}
	got, pages := allTags(t, c, id, 7)
	if len(got) != 50 || pages != 8 {
		t.Errorf("listed %d tags in %d pages, want 50 in 8", len(got), pages)
	}

	// A server started again from the state file has them.
	_, c2 := startServer(t, kmslocal.Options{StateFile: state, PoolSize: -1})
	if again, _ := allTags(t, c2, id, 50); len(again) != 50 || again["keyceremony:label"] != "archive" {
		t.Errorf("after a restart: %d tags, label %q", len(again), again["keyceremony:label"])
	}

	before, _ := allTags(t, c, id, 50)
	for _, tt := range []struct {
		name string
		call func() error
		want string
	}{
		{"51st tag", func() error {
			_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: tagList("one-too-many", "x")})
			return err
		}, "LimitExceededException"},
		{"aws: prefix", func() error {
			_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: tagList("AWS:x", "y")})
			return err
		}, "TagException"},
		{"long key", func() error {
			_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: tagList(strings.Repeat("k", 129), "y")})
			return err
		}, "TagException"},
		{"long value", func() error {
			_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: tagList("t00", strings.Repeat("v", 257))})
			return err
		}, "TagException"},
		{"bad character", func() error {
			_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: tagList("t00", "a;b")})
			return err
		}, "TagException"},
		{"duplicate key", func() error {
			_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: tagList("t00", "a", "t00", "b")})
			return err
		}, "TagException"},
		{"alias", func() error {
			_, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String("alias/x"), Tags: tagList("t00", "a")})
			return err
		}, "ValidationException"},
		{"no such key", func() error {
			_, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String("00000000-0000-4000-8000-000000000000")})
			return err
		}, "NotFoundException"},
		{"limit 0", func() error {
			_, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(id), Limit: aws.Int32(0)})
			return err
		}, "ValidationException"},
		{"limit 51", func() error {
			_, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(id), Limit: aws.Int32(51)})
			return err
		}, "ValidationException"},
		{"bad marker", func() error {
			_, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(id), Marker: aws.String("%%%")})
			return err
		}, "InvalidMarkerException"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || !isCode(tt.want)(err) {
				t.Errorf("got %v, want %s", err, tt.want)
			}
		})
	}
	if after, _ := allTags(t, c, id, 50); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("a refused call changed the tags")
	}
	// Bad tags on CreateKey create no key.
	keys, _ := c.ListKeys(ctx, &kms.ListKeysInput{})
	if _, err := c.CreateKey(ctx, &kms.CreateKeyInput{Tags: tagList("aws:x", "y")}); !isCode("TagException")(err) {
		t.Errorf("CreateKey with an aws: tag: %v", err)
	}
	if again, _ := c.ListKeys(ctx, &kms.ListKeysInput{}); len(again.Keys) != len(keys.Keys) {
		t.Error("CreateKey with bad tags created a key")
	}
	// A key pending deletion cannot be tagged.
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(id), Tags: tagList("t00", "a")}); !is[*types.KMSInvalidStateException](err) {
		t.Errorf("tagging a key pending deletion: %v", err)
	}
}
