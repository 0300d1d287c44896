// Package kmslocal is a TEST AND DEMO server that speaks the AWS KMS wire
// protocol (AWS JSON 1.1, "TrentService") on loopback, so the real
// aws-sdk-go-v2 KMS client can run the import-key-material flow without
// AWS. It is not AWS KMS and gives no security guarantees: it keeps key
// material in process memory and, with a state file, on disk in the clear;
// it accepts any credentials without checking the signature.
//
// # Protocol
//
// Requests are POST / with X-Amz-Target "TrentService.<Operation>",
// Content-Type application/x-amz-json-1.1 and a JSON body using the KMS API
// member names; blobs are base64 and timestamps epoch seconds. An
// Authorization header of the SigV4 form is required (its signature is not
// verified); the region of its credential scope goes into the ARNs of keys
// created by that request (us-east-1 if it names none), and the account is
// always [Account]. Errors carry the KMS exception name in "__type" and
// X-Amzn-ErrorType, so the SDK returns its typed errors
// (*types.NotFoundException, *types.IncorrectKeyMaterialException, ...).
// AWS-wide errors such as ValidationException arrive as
// *smithy.GenericAPIError with that ErrorCode.
//
// # Operations
//
// CreateKey (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT; Origin EXTERNAL or
// AWS_KMS; MultiRegion), DescribeKey, ListKeys, EnableKey, DisableKey,
// ScheduleKeyDeletion, CancelKeyDeletion, CreateAlias, DeleteAlias,
// ListAliases, GetParametersForImport, ImportKeyMaterial,
// DeleteImportedKeyMaterial, ListKeyRotations, RotateKeyOnDemand,
// GetKeyRotationStatus, ReplicateKey, Encrypt, Decrypt and GenerateDataKey.
// KeyId members take a key ID, a key ARN and, where AWS allows, an alias
// name or alias ARN. Anything else is an UnknownOperationException.
//
// # Regions
//
// Every request acts in the Region of its SigV4 credential scope: keys and
// aliases belong to a Region, and a key ID or ARN of another Region is not
// found. CreateKey with MultiRegion=true makes a primary key with an
// "mrk-" ID and a MultiRegionConfiguration; ReplicateKey makes a replica
// with the same ID in another Region. KMS never copies imported material:
// the replica of an EXTERNAL key starts PendingImport and takes only the
// primary's materials (same KeyMaterialId), each imported with import
// parameters from its own Region. A ciphertext decrypts in every Region of
// its key.
//
// # Rotation of imported material
//
// ImportKeyMaterial takes ImportType and KeyMaterialId as AWS documents
// them. The first import (any ImportType) binds the key's first material;
// NEW_KEY_MATERIAL then adds a version in PENDING_ROTATION (on a
// multi-Region primary PENDING_MULTI_REGION_IMPORT_AND_ROTATION until every
// replica has imported it with EXISTING_KEY_MATERIAL and its KeyMaterialId),
// which RotateKeyOnDemand makes CURRENT, the former one NON_CURRENT.
// EXISTING_KEY_MATERIAL (the default) re-imports the version KeyMaterialId
// names, or the current one. A KeyMaterialId is SHA-256 over the key ID and
// the material, so a replica's equals its primary's. A key is usable only
// while all its CURRENT and NON_CURRENT materials are imported; ciphertexts
// name their material, so old ones decrypt after a rotation.
// ListKeyRotations lists the versions, DeleteImportedKeyMaterial deletes
// one (a pending one entirely), Options.RotationLimit bounds the on-demand
// rotations per key (LimitExceededException).
//
// # Emulating a network
//
// Options.Latency delays every response; Options.RequestsPerSecond answers
// ThrottlingException beyond a request quota, which the SDKs retry.
//
// # Importing key material
//
// GetParametersForImport accepts RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256,
// RSA_AES_KEY_WRAP_SHA_1 and RSA_AES_KEY_WRAP_SHA_256 with RSA_2048,
// RSA_3072 or RSA_4096 wrapping keys, and refuses RSAES_PKCS1_V1_5 as AWS
// does. Each call hands out a fresh RSA key pair, taken from a pool that
// background goroutines keep filled (Options.PoolSize). The import token is
// opaque, binds the key ID, wrapping algorithm, key pair and issue time, is
// authenticated with HMAC-SHA256 under a server secret, and is valid for 24
// hours by Options.Clock.
//
// ImportKeyMaterial really unwraps the material with the token's private
// key and enforces the KMS rules, each with its KMS exception: token
// malformed, forged or for another key (InvalidImportTokenException) or
// expired (ExpiredImportTokenException); key not EXTERNAL
// (UnsupportedOperationException) or pending deletion
// (KMSInvalidStateException); ExpirationModel and ValidTo
// (ValidationException; at most 365 days ahead); unwrap failure or material
// that is not 32 bytes (InvalidCiphertextException); material other than
// the first ever imported into the key, even after it expired or was
// deleted (IncorrectKeyMaterialException). When ValidTo passes, the next
// request that looks the key up drops the material and returns the key to
// PendingImport, as AWS does; importing the same material again restores
// it, and old ciphertexts decrypt again.
//
// Encrypt, Decrypt and GenerateDataKey use AES-256-GCM under a key derived
// from the material, with the encryption context as additional data. The
// ciphertext blob names its key, so Decrypt needs no KeyId, but its format
// is kmslocal's own.
//
// # State
//
// With Options.StateFile the server loads its state at start and rewrites
// the file after every call that changes it: keys with their material,
// aliases, the token secret and the private wrapping keys of outstanding
// import tokens, all in the clear (acceptable for a test server only), so
// tokens stay usable across a restart.
//
// # Serving
//
// A Server is an [http.Handler]; use it with httptest.NewServer in tests,
// or with [Listen] and [Server.Serve], which refuse any address that is not
// loopback. The kmslocal command (cmd/kmslocal) wraps this.
package kmslocal
