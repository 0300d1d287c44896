package kmslocal

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Tags, as the KMS API reference describes them (CreateKey Tags,
// TagResource, UntagResource, ListResourceTags): a key has at most 50 tags,
// each a TagKey of 1 to 128 characters that does not begin with "aws:" (in
// any case) and a TagValue of 0 to 256 characters; tagging an existing tag
// key replaces its value. Invalid tags are a TagException, too many a
// LimitExceededException. A key pending deletion cannot be tagged or
// untagged.

const excTag = "TagException"

// maxTags is the most tags a key may have.
const maxTags = 50

// tag is a Tag on the wire.
type tag struct {
	TagKey   *string
	TagValue *string
}

// tagRE is the characters AWS allows in tag keys and values: Unicode
// letters, digits, white space and _ . : / = + - @.
var tagRE = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

// parseTags checks the Tags member of a request and returns them as a map;
// a tag key given twice is a TagException.
func parseTags(in []tag) (map[string]string, error) {
	out := map[string]string{}
	for i, t := range in {
		if t.TagKey == nil {
			return nil, requiredError("tags." + strconv.Itoa(i+1) + ".member.tagKey")
		}
		if t.TagValue == nil {
			return nil, requiredError("tags." + strconv.Itoa(i+1) + ".member.tagValue")
		}
		k, v := *t.TagKey, *t.TagValue
		if err := checkTagKey(k); err != nil {
			return nil, err
		}
		if n := utf8.RuneCountInString(v); n > 256 || !tagRE.MatchString(v) {
			return nil, newError(excTag, "Tag value for tag key %q is not valid: it must be 0 to 256 letters, digits, spaces or _ . : / = + - @", k)
		}
		if _, dup := out[k]; dup {
			return nil, newError(excTag, "Duplicate tag keys: %q", k)
		}
		out[k] = v
	}
	return out, nil
}

func checkTagKey(k string) error {
	if n := utf8.RuneCountInString(k); n < 1 || n > 128 || !tagRE.MatchString(k) {
		return newError(excTag, "Tag key %q is not valid: it must be 1 to 128 letters, digits, spaces or _ . : / = + - @", k)
	}
	if strings.HasPrefix(strings.ToLower(k), "aws:") {
		return newError(excTag, "Tag key %q uses the reserved prefix aws:", k)
	}
	return nil
}

// addTags merges tags into k's, refusing to go over maxTags.
func addTags(k *key, tags map[string]string) error {
	n := len(k.Tags)
	for t := range tags {
		if _, ok := k.Tags[t]; !ok {
			n++
		}
	}
	if n > maxTags {
		return newError(excLimitExceeded, "%s would have %d tags, more than the limit of %d.", k.arn(), n, maxTags)
	}
	if len(tags) > 0 && k.Tags == nil {
		k.Tags = map[string]string{}
	}
	for t, v := range tags {
		k.Tags[t] = v
	}
	return nil
}

// createKeyTags checks the Tags member of a CreateKey request (a JSON body)
// before the key is made, so that bad tags create nothing.
func createKeyTags(body []byte) (map[string]string, error) {
	var in struct{ Tags []tag }
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	tags, err := parseTags(in.Tags)
	if err == nil && len(tags) > maxTags {
		err = newError(excLimitExceeded, "A key can have at most %d tags; the request has %d.", maxTags, len(tags))
	}
	return tags, err
}

type tagResourceInput struct {
	keyIDMember
	Tags []tag
}

// tagResource implements TagResource.
func (s *Server) tagResource(c *call) (any, error) {
	var in tagResourceInput
	k, err := s.keyInput(c, &in, nil)
	if err != nil {
		return nil, err
	}
	if in.Tags == nil {
		return nil, requiredError("tags")
	}
	tags, err := parseTags(in.Tags)
	if err != nil {
		return nil, err
	}
	if k.state() == statePendingDeletion {
		return nil, newError(excInvalidState, "%s is pending deletion.", k.arn())
	}
	if err := addTags(k, tags); err != nil {
		return nil, err
	}
	s.dirty = true
	return struct{}{}, nil
}

type untagResourceInput struct {
	keyIDMember
	TagKeys []string
}

// untagResource implements UntagResource.
func (s *Server) untagResource(c *call) (any, error) {
	var in untagResourceInput
	k, err := s.keyInput(c, &in, nil)
	if err != nil {
		return nil, err
	}
	if in.TagKeys == nil {
		return nil, requiredError("tagKeys")
	}
	for _, t := range in.TagKeys {
		if err := checkTagKey(t); err != nil {
			return nil, err
		}
	}
	if k.state() == statePendingDeletion {
		return nil, newError(excInvalidState, "%s is pending deletion.", k.arn())
	}
	for _, t := range in.TagKeys {
		delete(k.Tags, t)
	}
	if len(k.Tags) == 0 {
		k.Tags = nil
	}
	s.dirty = true
	return struct{}{}, nil
}

type listResourceTagsInput struct {
	keyIDMember
	Limit  *int
	Marker string
}

type tagOut struct {
	TagKey   string
	TagValue string
}

type listResourceTagsOutput struct {
	Tags       []tagOut
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

// listResourceTags implements ListResourceTags: tags in tag key order,
// Limit (1 to 50, default 50) at a time.
func (s *Server) listResourceTags(c *call) (any, error) {
	var in listResourceTagsInput
	k, err := s.keyInput(c, &in, nil)
	if err != nil {
		return nil, err
	}
	limit, err := checkLimit(in.Limit, maxTags, maxTags)
	if err != nil {
		return nil, err
	}
	var entries []tagOut
	for t, v := range k.Tags {
		entries = append(entries, tagOut{t, v})
	}
	slices.SortFunc(entries, func(a, b tagOut) int { return strings.Compare(a.TagKey, b.TagKey) })
	tags, next, err := page(entries, func(e tagOut) string { return e.TagKey }, in.Marker, limit)
	if err != nil {
		return nil, err
	}
	return &listResourceTagsOutput{Tags: tags, NextMarker: next, Truncated: next != ""}, nil
}
