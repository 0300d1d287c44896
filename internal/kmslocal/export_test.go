package kmslocal

import "github.com/keyceremony/keyceremony/wrap"

// Test-only access for the black-box tests in package kmslocal_test.

// KeyWrapPad wraps material client-side in tests (RFC 5649).
var KeyWrapPad = wrap.KeyWrapPad

// PoolReady returns how many wrapping key pairs of the given size are ready.
func (s *Server) PoolReady(bits int) int { return s.pool.readyCount(bits) }
