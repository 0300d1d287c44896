package kmslocal_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyceremony/keyceremony/internal/kmslocal"
)

// waitReady waits until the pool holds n key pairs of the given size.
func waitReady(t testing.TB, s *kmslocal.Server, bits, n int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for s.PoolReady(bits) < n {
		if time.Since(start) > timeout {
			t.Fatalf("pool has %d RSA-%d keys after %v, want %d", s.PoolReady(bits), bits, timeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestPool checks the background pool fills and refills, and that every
// GetParametersForImport hands out a key pair of its own.
func TestPool(t *testing.T) {
	s, c := startServer(t, kmslocal.Options{PoolSize: 2})
	filled := waitReady(t, s, 2048, 2, 30*time.Second)
	t.Logf("RSA-2048 pool of 2 filled in %v", filled.Round(time.Millisecond))

	keyID := createKey(t, c, types.OriginTypeExternal)
	seen := map[string]bool{}
	for range 4 { // more than the pool holds: the rest come on demand
		p := getParams(t, c, keyID, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048)
		pk, err := x509.ParsePKIXPublicKey(p.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		n := pk.(*rsa.PublicKey).N.String()
		if seen[n] {
			t.Fatal("two GetParametersForImport calls returned the same wrapping key")
		}
		seen[n] = true
	}
	refilled := waitReady(t, s, 2048, 2, 30*time.Second)
	t.Logf("RSA-2048 pool of 2 refilled in %v", refilled.Round(time.Millisecond))

	// A refused request does not use up a pool key.
	waitReady(t, s, 3072, 2, 60*time.Second)
	_, err := c.GetParametersForImport(context.Background(), &kms.GetParametersForImportInput{
		KeyId: aws.String("00000000-0000-4000-8000-000000000000"), WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa3072,
	})
	if !is[*types.NotFoundException](err) {
		t.Fatalf("got %T: %v, want NotFoundException", err, err)
	}
	if got := s.PoolReady(3072); got != 2 {
		t.Fatalf("after a refused request the RSA-3072 pool holds %d, want 2", got)
	}
}

// TestPoolNoRefill checks that a pool without refill makes its PoolSize
// key pairs, then ends its goroutines: once they are handed out, the next
// GetParametersForImport generates its own and nothing refills the pool
// behind the clients' backs.
func TestPoolNoRefill(t *testing.T) {
	s, c := startServer(t, kmslocal.Options{PoolSize: 2, PoolSpecs: []string{"RSA_2048"}, PoolNoRefill: true})
	waitReady(t, s, 2048, 2, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for !s.PoolFillDone() {
		if time.Now().After(deadline) {
			t.Fatal("the fill goroutines of a pool without refill are still running once it is full")
		}
	}
	keyID := createKey(t, c, types.OriginTypeExternal)
	seen := map[string]bool{}
	for range 3 { // the third comes on demand
		p := getParams(t, c, keyID, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048)
		seen[string(p.PublicKey)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("3 GetParametersForImport calls returned %d different wrapping keys", len(seen))
	}
	if got := s.PoolReady(2048); got != 0 || !s.PoolFillDone() {
		t.Fatalf("after 3 calls the pool holds %d key pairs (fill ended: %v), want 0 and nothing refilling", got, s.PoolFillDone())
	}
}

// BenchmarkGetParametersForImport measures GetParametersForImport through
// the SDK with an RSA-2048 wrapping key taken from a full pool, and
// generated on demand with the pool off.
func BenchmarkGetParametersForImport(b *testing.B) {
	for _, tc := range []struct {
		name string
		size int
	}{{"pool", 1}, {"on-demand", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			s := kmslocal.New(kmslocal.Options{PoolSize: tc.size})
			defer s.Close()
			hs := httptest.NewServer(s)
			defer hs.Close()
			c := newClient(hs.URL)
			keyID := createKey(b, c, types.OriginTypeExternal)
			if tc.size > 0 {
				// Let the background goroutines finish all sizes so they do
				// not compete for the CPU.
				for _, bits := range []int{2048, 3072, 4096} {
					waitReady(b, s, bits, tc.size, time.Minute)
				}
			}
			in := &kms.GetParametersForImportInput{KeyId: aws.String(keyID), WrappingAlgorithm: types.AlgorithmSpecRsaAesKeyWrapSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048}
			b.ResetTimer()
			for range b.N {
				if tc.size > 0 {
					b.StopTimer()
					waitReady(b, s, 2048, 1, time.Minute)
					b.StartTimer()
				}
				if _, err := c.GetParametersForImport(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
