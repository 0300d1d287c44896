package kmslocal_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyceremony/keyceremony/internal/kmslocal"
)

// rawCall sends one AWS JSON 1.1 request for op with body and returns the
// exception name and message ("" and "" on success).
func rawCall(t *testing.T, url, op, body string) (code, message string) {
	t.Helper()
	return rawCallIn(t, url, "ap-south-2", op, body)
}

// rawCallIn is rawCall signed for region.
func rawCallIn(t *testing.T, url, region, op, body string) (code, message string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", strings.Replace(sigv4, "/ap-south-2/", "/"+region+"/", 1))
	req.Header.Set("X-Amz-Target", "TrentService."+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return "", ""
	}
	var e struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: error body is not JSON: %s", op, b)
	}
	return e.Type, e.Message
}

// TestKeyInputErrors checks, for every operation that names a key, the
// exact error for a missing, malformed, unknown or aliased key, and which
// check comes first when a request has two faults (AWS reports some
// malformed members before an unknown key, and others after it), for the
// operations whose error paths the SDK tests do not reach.
func TestKeyInputErrors(t *testing.T) {
	s := kmslocal.New(kmslocal.Options{PoolSize: -1})
	defer s.Close()
	hs := httptest.NewServer(s)
	defer hs.Close()

	const (
		unknown    = "00000000-0000-4000-8000-000000000000"
		unknownARN = "arn:aws:kms:ap-south-2:111122223333:key/" + unknown
		otherARN   = "arn:aws:kms:eu-west-1:111122223333:key/" + unknown
		notFound   = "Key '" + unknown + "' does not exist"
		noAlias    = "keyId: an alias is not allowed here, use a key ID or key ARN"
		aliasGone  = "Alias arn:aws:kms:ap-south-2:111122223333:alias/none is not found."
	)
	required := func(member string) string {
		return "1 validation error detected: Value null at '" + member + "' failed to satisfy constraint: Member must not be null"
	}
	// Each operation with the other members it needs to reach the key.
	ops := []struct {
		op, extra string
		alias     bool // the operation takes an alias
	}{
		{"DescribeKey", ``, true},
		{"EnableKey", ``, false},
		{"DisableKey", ``, false},
		{"CancelKeyDeletion", ``, false},
		{"ScheduleKeyDeletion", `"PendingWindowInDays":7`, false},
		{"Encrypt", `"Plaintext":"AA=="`, true},
		{"GenerateDataKey", `"KeySpec":"AES_256"`, true},
		{"GetParametersForImport", `"WrappingAlgorithm":"RSAES_OAEP_SHA_1","WrappingKeySpec":"RSA_2048"`, false},
		{"ImportKeyMaterial", `"ImportToken":"AAAA","EncryptedKeyMaterial":"AAAA","ExpirationModel":"KEY_MATERIAL_DOES_NOT_EXPIRE"`, false},
		{"DeleteImportedKeyMaterial", ``, false},
		{"RotateKeyOnDemand", ``, false},
		{"GetKeyRotationStatus", ``, false},
		{"ListKeyRotations", ``, false},
		{"ReplicateKey", `"ReplicaRegion":"eu-west-1"`, false},
		{"TagResource", `"Tags":[]`, false},
		{"UntagResource", `"TagKeys":[]`, false},
		{"ListResourceTags", ``, false},
	}
	body := func(extra, keyID string) string {
		var parts []string
		if extra != "" {
			parts = append(parts, extra)
		}
		if keyID != "" {
			parts = append(parts, `"KeyId":"`+keyID+`"`)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	type want struct{ code, message string }
	for _, o := range ops {
		cases := []struct {
			name, keyID string
			want        want
		}{
			{"missing", "", want{"ValidationException", required("keyId")}},
			{"unknown id", unknown, want{"NotFoundException", notFound}},
			{"unknown ARN", unknownARN, want{"NotFoundException", "Key '" + unknownARN + "' does not exist"}},
			{"ARN of another Region", otherARN, want{"NotFoundException", "Key '" + otherARN + "' does not exist"}},
			{"malformed ARN", "arn:aws:kms:x", want{"InvalidArnException", "arn:aws:kms:x is not a valid KMS ARN"}},
			{"not an id", "payments", want{"NotFoundException", "Invalid keyId 'payments'"}},
			{"alias", "alias/none", want{"ValidationException", noAlias}},
		}
		if o.alias {
			cases[len(cases)-1].want = want{"NotFoundException", aliasGone}
		}
		for _, tc := range cases {
			t.Run(o.op+"/"+tc.name, func(t *testing.T) {
				code, msg := rawCall(t, hs.URL, o.op, body(o.extra, tc.keyID))
				if code != tc.want.code || msg != tc.want.message {
					t.Errorf("got %s %q\nwant %s %q", code, msg, tc.want.code, tc.want.message)
				}
			})
		}
	}

	// The other operations that name a key, and the order of checks.
	for _, tc := range []struct {
		name, op, body string
		want           want
	}{
		{"CreateAlias missing target", "CreateAlias", `{"AliasName":"alias/a"}`, want{"ValidationException", required("targetKeyId")}},
		{"CreateAlias unknown target", "CreateAlias", `{"AliasName":"alias/a","TargetKeyId":"` + unknown + `"}`, want{"NotFoundException", notFound}},
		{"CreateAlias aliased target", "CreateAlias", `{"AliasName":"alias/a","TargetKeyId":"alias/b"}`, want{"ValidationException", "targetKeyId: an alias is not allowed here, use a key ID or key ARN"}},
		{"CreateAlias bad name first", "CreateAlias", `{"AliasName":"x","TargetKeyId":"` + unknown + `"}`, want{"InvalidAliasNameException", "x is not a valid alias name: use alias/ followed by [a-zA-Z0-9/_-], not alias/aws/"}},
		{"ListAliases unknown key", "ListAliases", `{"KeyId":"` + unknown + `"}`, want{"NotFoundException", notFound}},
		{"ListAliases aliased key", "ListAliases", `{"KeyId":"alias/a"}`, want{"ValidationException", noAlias}},
		{"Encrypt plaintext first", "Encrypt", `{"KeyId":"` + unknown + `"}`, want{"ValidationException", required("plaintext")}},
		{"GenerateDataKey spec first", "GenerateDataKey", `{"KeyId":"` + unknown + `"}`, want{"ValidationException", "1 validation error detected: KeySpec or NumberOfBytes is required"}},
		{"ScheduleKeyDeletion window first", "ScheduleKeyDeletion", `{"KeyId":"` + unknown + `","PendingWindowInDays":6}`, want{"ValidationException", "1 validation error detected: Value '6' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30"}},
		{"GetParametersForImport algorithm first", "GetParametersForImport", `{"KeyId":"` + unknown + `"}`, want{"ValidationException", required("wrappingAlgorithm")}},
		{"ImportKeyMaterial token first", "ImportKeyMaterial", `{"KeyId":"` + unknown + `"}`, want{"ValidationException", required("importToken")}},
		{"ListKeyRotations limit first", "ListKeyRotations", `{"KeyId":"` + unknown + `","Limit":0}`, want{"ValidationException", "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"}},
		{"ListKeyRotations bad include first", "ListKeyRotations", `{"KeyId":"` + unknown + `","IncludeKeyMaterial":"x"}`, want{"ValidationException", "1 validation error detected: Value 'x' at 'includeKeyMaterial' failed to satisfy constraint: Member must satisfy enum value set: [ALL_KEY_MATERIAL ROTATIONS_ONLY]"}},
		{"ListResourceTags key first", "ListResourceTags", `{"KeyId":"` + unknown + `","Limit":0}`, want{"NotFoundException", notFound}},
		{"ReplicateKey region first", "ReplicateKey", `{"KeyId":"` + unknown + `"}`, want{"ValidationException", required("replicaRegion")}},
		{"TagResource key first", "TagResource", `{"KeyId":"` + unknown + `"}`, want{"NotFoundException", notFound}},
		{"UntagResource key first", "UntagResource", `{"KeyId":"` + unknown + `","TagKeys":["aws:x"]}`, want{"NotFoundException", notFound}},
		{"TagResource tags after the key", "TagResource", `{"KeyId":"` + unknown + `"}`, want{"NotFoundException", notFound}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := rawCall(t, hs.URL, tc.op, tc.body)
			if code != tc.want.code || msg != tc.want.message {
				t.Errorf("got %s %q\nwant %s %q", code, msg, tc.want.code, tc.want.message)
			}
		})
	}
}

// TestListPaging checks the paging of every List operation through the
// SDK's paginators: Limit bounds, a bad marker, every entry listed once and
// in order, Truncated only when something is left, keys of other Regions
// never counted, and a page boundary that holds when an entry before it is
// removed between two pages.
func TestListPaging(t *testing.T) {
	ctx := context.Background()
	s := kmslocal.New(kmslocal.Options{PoolSize: -1})
	defer s.Close()
	hs := httptest.NewServer(s)
	defer hs.Close()
	east, west := regionClient(hs.URL, "us-east-1", 1), regionClient(hs.URL, "eu-west-1", 1)

	limitMsg := func(v, max string) string {
		return "1 validation error detected: Value '" + v + "' at 'limit' failed to satisfy constraint: Member must have value between 1 and " + max
	}
	const badMarker = "The marker is not valid."
	for _, tc := range []struct {
		op, body      string
		code, message string
	}{
		{"ListKeys", `{"Limit":0}`, "ValidationException", limitMsg("0", "1000")},
		{"ListKeys", `{"Limit":1001}`, "ValidationException", limitMsg("1001", "1000")},
		{"ListKeys", `{"Marker":"x"}`, "InvalidMarkerException", badMarker},
		{"ListKeys", `{"Marker":"%%%"}`, "InvalidMarkerException", badMarker},
		{"ListAliases", `{"Limit":0}`, "ValidationException", limitMsg("0", "1000")},
		{"ListAliases", `{"Limit":1001}`, "ValidationException", limitMsg("1001", "1000")},
		{"ListAliases", `{"Marker":"x"}`, "InvalidMarkerException", badMarker},
	} {
		t.Run(tc.op+tc.body, func(t *testing.T) {
			code, msg := rawCall(t, hs.URL, tc.op, tc.body)
			if code != tc.code || msg != tc.message {
				t.Errorf("got %s %q\nwant %s %q", code, msg, tc.code, tc.message)
			}
		})
	}

	// Keys in two Regions, interleaved: each Region lists its own.
	var ids []string
	for i := range 5 {
		ids = append(ids, createKey(t, west, types.OriginTypeAwsKms))
		if i < 3 {
			createKey(t, east, types.OriginTypeAwsKms)
		}
	}
	var listed []string
	pages := 0
	for p := kms.NewListKeysPaginator(west, &kms.ListKeysInput{Limit: aws.Int32(1)}); p.HasMorePages(); pages++ {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		for _, k := range out.Keys {
			listed = append(listed, aws.ToString(k.KeyId))
		}
	}
	if strings.Join(listed, ",") != strings.Join(ids, ",") || pages != 5 {
		t.Fatalf("ListKeys in %d pages = %v, want %v in 5", pages, listed, ids)
	}
	for _, tc := range []struct {
		op, body, code, message string
	}{
		{"ListKeyRotations", `{"KeyId":"` + ids[0] + `","Limit":0}`, "ValidationException", limitMsg("0", "1000")},
		{"ListKeyRotations", `{"KeyId":"` + ids[0] + `","Limit":1001}`, "ValidationException", limitMsg("1001", "1000")},
		{"ListKeyRotations", `{"KeyId":"` + ids[0] + `","Marker":"x"}`, "InvalidMarkerException", badMarker},
		{"ListResourceTags", `{"KeyId":"` + ids[0] + `","Limit":0}`, "ValidationException", limitMsg("0", "50")},
		{"ListResourceTags", `{"KeyId":"` + ids[0] + `","Limit":51}`, "ValidationException", limitMsg("51", "50")},
		{"ListResourceTags", `{"KeyId":"` + ids[0] + `","Marker":"x"}`, "InvalidMarkerException", badMarker},
	} {
		code, msg := rawCallIn(t, hs.URL, "eu-west-1", tc.op, tc.body)
		if code != tc.code || msg != tc.message {
			t.Errorf("%s %s: got %s %q\nwant %s %q", tc.op, tc.body, code, msg, tc.code, tc.message)
		}
	}

	// Rotations of an AWS_KMS key, two a page.
	var rotations []string
	for range 5 {
		if _, err := west.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(ids[0])}); err != nil {
			t.Fatal(err)
		}
	}
	pages = 0
	for p := kms.NewListKeyRotationsPaginator(west, &kms.ListKeyRotationsInput{KeyId: aws.String(ids[0]), Limit: aws.Int32(2)}); p.HasMorePages(); pages++ {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListKeyRotations: %v", err)
		}
		for _, r := range out.Rotations {
			rotations = append(rotations, aws.ToString(r.KeyMaterialId))
		}
	}
	if len(rotations) != 5 || pages != 3 || len(slices.Compact(slices.Sorted(slices.Values(rotations)))) != 5 {
		t.Fatalf("ListKeyRotations in %d pages = %v, want 5 distinct in 3", pages, rotations)
	}

	// Aliases, sorted by name; one before the page boundary goes away
	// between two pages, and the next page starts where it should.
	var names []string
	for i := range 5 {
		name := "alias/a" + strconv.Itoa(i)
		names = append(names, name)
		if _, err := west.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(name), TargetKeyId: aws.String(ids[i])}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := west.ListAliases(ctx, &kms.ListAliasesInput{Limit: aws.Int32(2)})
	if err != nil || len(first.Aliases) != 2 || !first.Truncated {
		t.Fatalf("ListAliases first page = %+v, %v", first, err)
	}
	if _, err := west.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String(names[0])}); err != nil {
		t.Fatal(err)
	}
	rest, err := west.ListAliases(ctx, &kms.ListAliasesInput{Marker: first.NextMarker})
	if err != nil || rest.Truncated {
		t.Fatalf("ListAliases after a deletion = %+v, %v", rest, err)
	}
	var got []string
	for _, a := range append(first.Aliases, rest.Aliases...) {
		got = append(got, aws.ToString(a.AliasName))
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("ListAliases across a deletion = %v, want %v", got, names)
	}
}
