package kmslocal

import (
	"time"

	"github.com/keyceremony/keyceremony/wrap"
)

// Test-only access for the black-box tests in package kmslocal_test.

// KeyWrapPad wraps material client-side in tests (RFC 5649).
var KeyWrapPad = wrap.KeyWrapPad

// PoolReady returns how many wrapping key pairs of the given size are ready.
func (s *Server) PoolReady(bits int) int { return s.pool.readyCount(bits) }

// PoolFillDone reports whether the pool's fill goroutines have all ended
// (only a pool without refill ends them before Close).
func (s *Server) PoolFillDone() bool {
	done := make(chan struct{})
	go func() { s.pool.filling.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(100 * time.Millisecond):
		return false
	}
}
