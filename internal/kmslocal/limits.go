package kmslocal

import (
	"sync"
	"time"
)

// bucket is a token bucket that emulates a KMS request quota: rate
// requests per second, with a burst of one second's worth. A nil bucket
// admits everything.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64) *bucket {
	if rate <= 0 {
		return nil
	}
	return &bucket{rate: rate, tokens: max(rate, 1), last: time.Now()}
}

// take uses one token, or returns a ThrottlingException when none is left.
func (b *bucket) take() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*b.rate, max(b.rate, 1))
	b.last = now
	if b.tokens < 1 {
		return newError(excThrottling, "Rate exceeded: kmslocal emulates a quota of %g requests per second", b.rate)
	}
	b.tokens--
	return nil
}
