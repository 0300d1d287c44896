package kmslocal

import (
	"slices"
	"strings"
)

// offersWrapping refuses a wrapping algorithm Options.WrappingAlgorithms
// leaves out.
func (s *Server) offersWrapping(alg string) error {
	if s.opts.WrappingAlgorithms == nil || slices.Contains(s.opts.WrappingAlgorithms, alg) {
		return nil
	}
	return newError(excUnsupportedOperation, "This endpoint does not offer wrapping algorithm %s; it offers %s.", alg, strings.Join(s.opts.WrappingAlgorithms, ", "))
}
