package hsm

// SetTestOnlyForceRSAAES and SetTestOnlyForceHost flip the test seams of
// WrapForKMS for the external tests of this package.
func SetTestOnlyForceRSAAES(v bool) { testOnlyForceRSAAES = v }

// SetTestOnlyForceHost: see testOnlyForceHost.
func SetTestOnlyForceHost(v bool) { testOnlyForceHost = v }
