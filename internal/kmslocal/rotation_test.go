package kmslocal_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyceremony/keyceremony/internal/kmslocal"
)

const alg, spec = types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048

// importInto wraps material for keyID with fresh parameters and imports it.
func importInto(t *testing.T, c *kms.Client, keyID string, material []byte, o importOpts, materialID, desc string) (*kms.ImportKeyMaterialOutput, error) {
	t.Helper()
	p := getParams(t, c, keyID, alg, spec)
	in := &kms.ImportKeyMaterialInput{
		KeyId:                aws.String(keyID),
		ImportToken:          p.ImportToken,
		EncryptedKeyMaterial: wrap(t, alg, p.PublicKey, material),
		ExpirationModel:      o.model,
		ValidTo:              o.validTo,
		ImportType:           o.typ,
	}
	if materialID != "" {
		in.KeyMaterialId = aws.String(materialID)
	}
	if desc != "" {
		in.KeyMaterialDescription = aws.String(desc)
	}
	return c.ImportKeyMaterial(context.Background(), in)
}

func rotations(t *testing.T, c *kms.Client, keyID string) []types.RotationsListEntry {
	t.Helper()
	out, err := c.ListKeyRotations(context.Background(), &kms.ListKeyRotationsInput{KeyId: aws.String(keyID), IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
	if err != nil {
		t.Fatalf("ListKeyRotations: %v", err)
	}
	return out.Rotations
}

func states(rs []types.RotationsListEntry) string {
	var b []string
	for _, r := range rs {
		b = append(b, string(r.KeyMaterialState)+"/"+string(r.ImportState))
	}
	return strings.Join(b, " ")
}

// TestRotation rotates imported material as AWS documents it: NEW material
// waits in PENDING_ROTATION, RotateKeyOnDemand makes it CURRENT, old
// ciphertexts still decrypt, an older version is re-imported with
// EXISTING_KEY_MATERIAL and its KeyMaterialId, and the key needs all its
// materials to be usable.
func TestRotation(t *testing.T) {
	clock := newFakeClock()
	_, c := startServer(t, kmslocal.Options{Clock: clock.Now, PoolSize: 4, RotationLimit: 2})
	ctx := context.Background()
	now := clock.Now()
	keyID := createKey(t, c, types.OriginTypeExternal)
	m1, m2 := newMaterial(), newMaterial()

	out1, err := importInto(t, c, keyID, m1, importOpts{validTo: inDays(now, 30)}, "", "v1 hash:abc")
	if err != nil {
		t.Fatalf("first import: %v", err)
	}
	id1 := aws.ToString(out1.KeyMaterialId)
	if got := aws.ToString(describe(t, c, keyID).CurrentKeyMaterialId); got != id1 {
		t.Fatalf("CurrentKeyMaterialId = %q, want %q", got, id1)
	}
	old, err := encrypt(c, keyID, []byte("under v1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("RotateKeyOnDemand without pending material: %v, want KMSInvalidStateException", err)
	}

	out2, err := importInto(t, c, keyID, m2, importOpts{validTo: inDays(now, 60), typ: types.ImportTypeNewKeyMaterial}, "", "v2")
	if err != nil {
		t.Fatalf("NEW_KEY_MATERIAL: %v", err)
	}
	id2 := aws.ToString(out2.KeyMaterialId)
	if id2 == id1 || len(id2) != 64 {
		t.Fatalf("new KeyMaterialId %q (first %q)", id2, id1)
	}
	if got := states(rotations(t, c, keyID)); got != "CURRENT/IMPORTED PENDING_ROTATION/IMPORTED" {
		t.Fatalf("before rotation: %s", got)
	}
	if _, err := importInto(t, c, keyID, newMaterial(), importOpts{validTo: inDays(now, 60), typ: types.ImportTypeNewKeyMaterial}, "", ""); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("second NEW while one is pending: %v, want KMSInvalidStateException", err)
	}
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("RotateKeyOnDemand: %v", err)
	}
	rs := rotations(t, c, keyID)
	if got := states(rs); got != "NON_CURRENT/IMPORTED CURRENT/IMPORTED" {
		t.Fatalf("after rotation: %s", got)
	}
	if aws.ToString(rs[0].KeyMaterialDescription) != "v1 hash:abc" || aws.ToString(rs[1].KeyMaterialId) != id2 || rs[1].RotationType != types.RotationTypeOnDemand || rs[1].RotationDate == nil {
		t.Fatalf("entries: %+v", rs)
	}
	only, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: aws.String(keyID)})
	if err != nil || len(only.Rotations) != 1 || aws.ToString(only.Rotations[0].KeyMaterialId) != id2 {
		t.Fatalf("ROTATIONS_ONLY = %+v, %v", only, err)
	}
	if got := aws.ToString(describe(t, c, keyID).CurrentKeyMaterialId); got != id2 {
		t.Fatalf("CurrentKeyMaterialId after rotation = %q, want %q", got, id2)
	}
	// DescribeKey's ValidTo is the earliest expiry of the key's materials
	// (v1's 30 days), not the current one's (60), as AWS documents it.
	if got := describe(t, c, keyID).ValidTo; got == nil || !got.Equal(*inDays(now, 30)) {
		t.Fatalf("ValidTo after rotation = %v, want v1's %v", got, inDays(now, 30))
	}
	newer, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("under v2")})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{old, newer.CiphertextBlob} {
		if _, err := decrypt(c, b, nil); err != nil {
			t.Fatalf("Decrypt after rotation: %v", err)
		}
	}

	// Deleting the old material makes the whole key unusable.
	if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(keyID), KeyMaterialId: aws.String(id1)}); err != nil {
		t.Fatalf("DeleteImportedKeyMaterial(id1): %v", err)
	}
	if st := describe(t, c, keyID).KeyState; st != types.KeyStatePendingImport {
		t.Fatalf("state after deleting NON_CURRENT material = %s", st)
	}
	if _, err := decrypt(c, newer.CiphertextBlob, nil); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("Decrypt while PendingImport: %v", err)
	}
	// Re-import: the wrong material is refused, with or without an ID.
	if _, err := importInto(t, c, keyID, m2, importOpts{validTo: inDays(now, 30)}, id1, ""); !is[*types.IncorrectKeyMaterialException](err) {
		t.Fatalf("v2 material as %s: %v", id1, err)
	}
	if _, err := importInto(t, c, keyID, m1, importOpts{validTo: inDays(now, 30)}, "", ""); !is[*types.IncorrectKeyMaterialException](err) {
		t.Fatalf("v1 material without KeyMaterialId (current is v2): %v", err)
	}
	if _, err := importInto(t, c, keyID, m1, importOpts{validTo: inDays(now, 30)}, strings.Repeat("0", 64), ""); !is[*types.IncorrectKeyMaterialException](err) {
		t.Fatalf("unknown KeyMaterialId: %v", err)
	}
	back, err := importInto(t, c, keyID, m1, importOpts{validTo: inDays(now, 90), typ: types.ImportTypeExistingKeyMaterial}, id1, "")
	if err != nil || aws.ToString(back.KeyMaterialId) != id1 {
		t.Fatalf("re-import of v1 = %v, %v", back, err)
	}
	for _, b := range [][]byte{old, newer.CiphertextBlob} {
		if _, err := decrypt(c, b, nil); err != nil {
			t.Fatalf("Decrypt after re-import: %v", err)
		}
	}

	// Expiry of the current material, then the rotation limit.
	clock.Advance(61 * 24 * time.Hour)
	if st := describe(t, c, keyID).KeyState; st != types.KeyStatePendingImport {
		t.Fatalf("state after v2 expired = %s", st)
	}
	if got := states(rotations(t, c, keyID)); got != "NON_CURRENT/IMPORTED CURRENT/PENDING_IMPORT" {
		t.Fatalf("after expiry: %s", got)
	}
	if _, err := importInto(t, c, keyID, m2, importOpts{model: types.ExpirationModelTypeKeyMaterialDoesNotExpire}, "", ""); err != nil {
		t.Fatalf("re-import of v2: %v", err)
	}
	if _, err := importInto(t, c, keyID, newMaterial(), importOpts{model: types.ExpirationModelTypeKeyMaterialDoesNotExpire, typ: types.ImportTypeNewKeyMaterial}, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("second rotation: %v", err)
	}
	m4 := newMaterial()
	out4, err := importInto(t, c, keyID, m4, importOpts{model: types.ExpirationModelTypeKeyMaterialDoesNotExpire, typ: types.ImportTypeNewKeyMaterial}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); !is[*types.LimitExceededException](err) {
		t.Fatalf("third rotation with limit 2: %v, want LimitExceededException", err)
	}
	// Pending material can be deleted entirely and replaced.
	if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: aws.String(keyID), KeyMaterialId: out4.KeyMaterialId}); err != nil {
		t.Fatal(err)
	}
	if n := len(rotations(t, c, keyID)); n != 3 {
		t.Fatalf("%d materials after deleting the pending one, want 3", n)
	}
	if _, err := decrypt(c, old, nil); err != nil {
		t.Fatalf("oldest ciphertext after everything: %v", err)
	}
	st, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(keyID)})
	if err != nil || st.KeyRotationEnabled {
		t.Fatalf("GetKeyRotationStatus = %+v, %v", st, err)
	}
}

// regionClient is a client of url signing for region.
func regionClient(url, region string, attempts int) *kms.Client {
	cfg := aws.Config{
		Region:           region,
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDKMSLOCALTEST", "not-a-secret", ""),
		RetryMaxAttempts: attempts,
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(url) })
}

// TestMultiRegion imports one material into a primary and its replica,
// each with its own parameters, then rotates: NEW on the primary, EXISTING
// with the KeyMaterialId on the replica, rotate the primary. Ciphertexts
// decrypt in both Regions.
func TestMultiRegion(t *testing.T) {
	s := kmslocal.New(kmslocal.Options{PoolSize: 4})
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	east, west := regionClient(hs.URL, "us-east-1", 1), regionClient(hs.URL, "eu-west-1", 1)
	ctx := context.Background()
	now := time.Now()

	ck, err := east.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	keyID := aws.ToString(ck.KeyMetadata.KeyId)
	if !strings.HasPrefix(keyID, "mrk-") || len(keyID) != 36 || !aws.ToBool(ck.KeyMetadata.MultiRegion) {
		t.Fatalf("multi-Region key ID %q", keyID)
	}
	if _, err := west.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)}); !is[*types.NotFoundException](err) {
		t.Fatalf("primary seen from eu-west-1 before ReplicateKey: %v", err)
	}
	rep, err := east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(keyID), ReplicaRegion: aws.String("eu-west-1")})
	if err != nil {
		t.Fatalf("ReplicateKey: %v", err)
	}
	if rep.ReplicaKeyMetadata.KeyState != types.KeyStatePendingImport || !strings.Contains(aws.ToString(rep.ReplicaKeyMetadata.Arn), ":eu-west-1:") {
		t.Fatalf("replica metadata %+v", rep.ReplicaKeyMetadata)
	}
	if _, err := east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(keyID), ReplicaRegion: aws.String("eu-west-1")}); !is[*types.AlreadyExistsException](err) {
		t.Fatalf("second ReplicateKey: %v", err)
	}
	mr := describe(t, west, keyID).MultiRegionConfiguration
	if mr == nil || mr.MultiRegionKeyType != types.MultiRegionKeyTypeReplica || aws.ToString(mr.PrimaryKey.Region) != "us-east-1" || len(mr.ReplicaKeys) != 1 {
		t.Fatalf("replica MultiRegionConfiguration %+v", mr)
	}

	m1 := newMaterial()
	if _, err := importInto(t, west, keyID, m1, importOpts{validTo: inDays(now, 30)}, "", ""); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("import into the replica before the primary: %v", err)
	}
	// The primary's token is no good in the replica's Region.
	p := getParams(t, east, keyID, alg, spec)
	if _, err := importMaterial(west, keyID, p, wrap(t, alg, p.PublicKey, m1), importOpts{validTo: inDays(now, 30)}); err == nil {
		t.Fatal("replica accepted the primary's import token")
	}
	if _, err := importMaterial(east, keyID, p, wrap(t, alg, p.PublicKey, m1), importOpts{validTo: inDays(now, 30)}); err != nil {
		t.Fatalf("primary import: %v", err)
	}
	if _, err := importInto(t, west, keyID, newMaterial(), importOpts{validTo: inDays(now, 30)}, "", ""); !is[*types.IncorrectKeyMaterialException](err) {
		t.Fatalf("other material into the replica: %v", err)
	}
	if _, err := importInto(t, west, keyID, m1, importOpts{validTo: inDays(now, 20)}, "", ""); err != nil {
		t.Fatalf("replica import: %v", err)
	}
	blob, err := encrypt(east, keyID, []byte("both regions"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := decrypt(west, blob, nil); err != nil || string(pt) != "both regions" {
		t.Fatalf("decrypt in eu-west-1 = %q, %v", pt, err)
	}

	// Rotation across Regions.
	m2 := newMaterial()
	out2, err := importInto(t, east, keyID, m2, importOpts{validTo: inDays(now, 30), typ: types.ImportTypeNewKeyMaterial}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := importInto(t, west, keyID, m2, importOpts{validTo: inDays(now, 30), typ: types.ImportTypeNewKeyMaterial}, "", ""); !is[*types.UnsupportedOperationException](err) {
		t.Fatalf("NEW into a replica: %v", err)
	}
	if got := states(rotations(t, east, keyID)); got != "CURRENT/IMPORTED PENDING_MULTI_REGION_IMPORT_AND_ROTATION/IMPORTED" {
		t.Fatalf("primary before the replica has the new material: %s", got)
	}
	if _, err := east.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); !is[*types.KMSInvalidStateException](err) {
		t.Fatalf("rotate before the replica has the material: %v", err)
	}
	if _, err := importInto(t, west, keyID, m2, importOpts{validTo: inDays(now, 30), typ: types.ImportTypeExistingKeyMaterial}, aws.ToString(out2.KeyMaterialId), ""); err != nil {
		t.Fatalf("replica EXISTING import of the new material: %v", err)
	}
	if _, err := west.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); !is[*types.UnsupportedOperationException](err) {
		t.Fatalf("rotate the replica: %v", err)
	}
	if _, err := east.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("rotate the primary: %v", err)
	}
	for _, c := range []*kms.Client{east, west} {
		if got := aws.ToString(describe(t, c, keyID).CurrentKeyMaterialId); got != aws.ToString(out2.KeyMaterialId) {
			t.Fatalf("CurrentKeyMaterialId %s after rotation", got)
		}
	}
	blob2, err := encrypt(west, keyID, []byte("v2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*kms.Client{east, west} {
		for _, b := range [][]byte{blob, blob2} {
			if _, err := decrypt(c, b, nil); err != nil {
				t.Fatalf("decrypt after rotation: %v", err)
			}
		}
	}

	// Aliases belong to a Region.
	for _, c := range []*kms.Client{east, west} {
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/mrk"), TargetKeyId: aws.String(keyID)}); err != nil {
			t.Fatalf("CreateAlias: %v", err)
		}
	}
	la, err := west.ListAliases(ctx, &kms.ListAliasesInput{KeyId: aws.String(keyID)})
	if err != nil || len(la.Aliases) != 1 || aws.ToString(la.Aliases[0].AliasArn) != "arn:aws:kms:eu-west-1:111122223333:alias/mrk" || aws.ToString(la.Aliases[0].TargetKeyId) != keyID {
		t.Fatalf("ListAliases = %+v, %v", la, err)
	}
	lk, err := west.ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil || len(lk.Keys) != 1 {
		t.Fatalf("ListKeys in eu-west-1 = %+v, %v", lk, err)
	}
}

// TestLatencyAndThrottling: responses take at least Options.Latency, and
// a quota turns excess requests into ThrottlingException, which the SDK's
// standard retryer absorbs.
func TestLatencyAndThrottling(t *testing.T) {
	s := kmslocal.New(kmslocal.Options{PoolSize: -1, Latency: 30 * time.Millisecond, RequestsPerSecond: 5})
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	ctx := context.Background()

	start := time.Now()
	if _, err := regionClient(hs.URL, testRegion, 1).ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("ListKeys took %v with 30ms latency", d)
	}

	noRetry := regionClient(hs.URL, testRegion, 1)
	var throttled atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := noRetry.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
				if !isCode("ThrottlingException")(err) {
					t.Errorf("ListKeys: %v", err)
				}
				throttled.Add(1)
			}
		}()
	}
	wg.Wait()
	if throttled.Load() == 0 {
		t.Fatal("20 concurrent requests against a quota of 5/s: none throttled")
	}

	retrying := kms.NewFromConfig(aws.Config{
		Region:      testRegion,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDKMSLOCALTEST", "not-a-secret", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 20
				o.MaxBackoff = 300 * time.Millisecond
				o.RateLimiter = noRateLimit{}
			})
		},
	}, func(o *kms.Options) { o.BaseEndpoint = aws.String(hs.URL) })
	var failed atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := retrying.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
				t.Errorf("ListKeys with retries: %v", err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed despite retries", failed.Load())
	}
}

type noRateLimit struct{}

func (noRateLimit) GetToken(context.Context, uint) (func() error, error) {
	return func() error { return nil }, nil
}
func (noRateLimit) AddTokens(uint) error { return nil }
