package kmslocal

import (
	"fmt"
	"net/http"
)

// Exception names the server sends in "__type" and X-Amzn-ErrorType. The SDK
// maps each KMS one to its typed error (types.NotFoundException, ...);
// ValidationException, SerializationException, UnknownOperationException,
// MissingAuthenticationTokenException and IncompleteSignatureException are
// AWS-wide errors that the KMS SDK returns as *smithy.GenericAPIError.
const (
	excAlreadyExists        = "AlreadyExistsException"
	excDisabled             = "DisabledException"
	excDryRun               = "DryRunOperationException"
	excExpiredImportToken   = "ExpiredImportTokenException"
	excIncompleteSignature  = "IncompleteSignatureException"
	excIncorrectKey         = "IncorrectKeyException"
	excIncorrectKeyMaterial = "IncorrectKeyMaterialException"
	excInternal             = "KMSInternalException"
	excInvalidAliasName     = "InvalidAliasNameException"
	excInvalidArn           = "InvalidArnException"
	excInvalidCiphertext    = "InvalidCiphertextException"
	excInvalidImportToken   = "InvalidImportTokenException"
	excInvalidKeyUsage      = "InvalidKeyUsageException"
	excInvalidMarker        = "InvalidMarkerException"
	excInvalidState         = "KMSInvalidStateException"
	excLimitExceeded        = "LimitExceededException"
	excThrottling           = "ThrottlingException"
	excMissingAuthToken     = "MissingAuthenticationTokenException"
	excNotFound             = "NotFoundException"
	excSerialization        = "SerializationException"
	excUnknownOperation     = "UnknownOperationException"
	excUnsupportedOperation = "UnsupportedOperationException"
	excValidation           = "ValidationException"
)

// apiError is an error reported to the client as an AWS JSON 1.1 error
// response: HTTP status, exception name and message. Messages never contain
// key material or other secrets.
type apiError struct {
	status  int
	code    string
	message string
	cause   error // logged, never sent
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// newError returns an HTTP 400 apiError with the exception name code.
func newError(code, format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, a...)}
}

// internalError returns an HTTP 500 KMSInternalException. The cause is for
// the log only; the client sees a fixed message.
func internalError(cause error) *apiError {
	return &apiError{
		status:  http.StatusInternalServerError,
		code:    excInternal,
		message: "kmslocal hit an internal error; see its log",
		cause:   cause,
	}
}

func validationError(format string, a ...any) *apiError {
	return newError(excValidation, "1 validation error detected: "+format, a...)
}

// requiredError is the ValidationException AWS sends for a missing member.
func requiredError(member string) *apiError {
	return validationError("Value null at '%s' failed to satisfy constraint: Member must not be null", member)
}

// enumError is the ValidationException AWS sends for a value outside an enum.
func enumError(member, value string, allowed []string) *apiError {
	return validationError("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: %v", value, member, allowed)
}
