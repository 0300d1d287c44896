package kmslocal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
)

// Ciphertext blob layout of Encrypt and GenerateDataKey. Like an AWS
// ciphertext blob it names its key, so Decrypt needs no KeyId; unlike one it
// is kmslocal's own format, meaningless to AWS.
//
//	offset size
//	0      1    version 1
//	1      16   key ID (UUID bytes)
//	17     12   AES-GCM nonce
//	29     n+16 AES-256-GCM ciphertext and tag
//
// The GCM key is HKDF-SHA256 of the key material with the key ID in the
// info, and the additional data is the 17-byte header followed by the
// encryption context (see contextAAD), so a changed header, context or
// ciphertext fails to open.
const (
	blobVersion   = 1
	blobHeaderLen = 17
	blobMinLen    = blobHeaderLen + 12 + 16
)

var errBlob = errors.New("ciphertext blob is malformed or was not made by kmslocal")

func blobAEAD(k *key) (cipher.AEAD, error) {
	dk, err := hkdf.Key(sha256.New, k.Material, nil, "kmslocal SYMMETRIC_DEFAULT v1 "+k.ID, 32)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	b, err := aes.NewCipher(dk)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// contextAAD encodes an encryption context canonically: pairs sorted by
// key, each as 4-byte big-endian lengths followed by the bytes.
func contextAAD(header []byte, ec map[string]string) []byte {
	aad := slices.Clone(header)
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		aad = binary.BigEndian.AppendUint32(aad, uint32(len(k)))
		aad = append(aad, k...)
		aad = binary.BigEndian.AppendUint32(aad, uint32(len(ec[k])))
		aad = append(aad, ec[k]...)
	}
	return aad
}

// sealBlob encrypts plaintext under k's material. k must have material.
func sealBlob(k *key, plaintext []byte, ec map[string]string) ([]byte, error) {
	aead, err := blobAEAD(k)
	if err != nil {
		return nil, err
	}
	blob := make([]byte, blobHeaderLen+aead.NonceSize(), blobMinLen+len(plaintext))
	blob[0] = blobVersion
	copy(blob[1:], uuidBytes(k.ID))
	rand.Read(blob[blobHeaderLen:])
	return aead.Seal(blob, blob[blobHeaderLen:], plaintext, contextAAD(blob[:blobHeaderLen], ec)), nil
}

// blobKeyID returns the key ID a ciphertext blob names.
func blobKeyID(blob []byte) (string, error) {
	if len(blob) < blobMinLen || blob[0] != blobVersion {
		return "", errBlob
	}
	return uuidString(blob[1:blobHeaderLen]), nil
}

// openBlob decrypts a blob made by sealBlob for k with the same context.
func openBlob(k *key, blob []byte, ec map[string]string) ([]byte, error) {
	if _, err := blobKeyID(blob); err != nil {
		return nil, err
	}
	aead, err := blobAEAD(k)
	if err != nil {
		return nil, err
	}
	nonce := blob[blobHeaderLen : blobHeaderLen+aead.NonceSize()]
	pt, err := aead.Open(nil, nonce, blob[blobHeaderLen+aead.NonceSize():], contextAAD(blob[:blobHeaderLen], ec))
	if err != nil {
		return nil, errBlob
	}
	return pt, nil
}
