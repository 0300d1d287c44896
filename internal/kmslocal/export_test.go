package kmslocal

// Test-only access for the black-box tests in package kmslocal_test.

// KeyWrapPad is keyWrapPad, for wrapping material client-side in tests.
var KeyWrapPad = keyWrapPad

// PoolReady returns how many wrapping key pairs of the given size are ready.
func (s *Server) PoolReady(bits int) int { return s.pool.readyCount(bits) }
