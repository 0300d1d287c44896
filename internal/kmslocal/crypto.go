package kmslocal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
)

// Ciphertext blob layout of Encrypt and GenerateDataKey. Like an AWS
// ciphertext blob it names its key and key material, so Decrypt needs no
// KeyId and finds the material version; unlike one it is kmslocal's own
// format, meaningless to AWS. Encrypt writes version 2; version 1 (before
// rotation) is still read and means the key's first material.
//
//	version 2                         version 1
//	offset size                       offset size
//	0      1    version 2             0      1    version 1
//	1      1    0 UUID, 1 mrk- ID     1      16   key ID (UUID bytes)
//	2      16   key ID bytes          17     12   AES-GCM nonce
//	18     32   key material ID       29     n+16 ciphertext and tag
//	50     12   AES-GCM nonce
//	62     n+16 AES-256-GCM ciphertext and tag
//
// The GCM key is HKDF-SHA256 of the key material with the key ID in the
// info, and the additional data is the header (everything before the
// nonce) followed by the encryption context (see contextAAD), so a changed
// header, context or ciphertext fails to open.
const (
	blobV1HeaderLen = 17
	blobV2HeaderLen = 50
	blobOverhead    = 12 + 16
)

var errBlob = errors.New("ciphertext blob is malformed or was not made by kmslocal")

func blobAEAD(k *key, v *materialVersion) (cipher.AEAD, error) {
	dk, err := hkdf.Key(sha256.New, v.Material, nil, "kmslocal SYMMETRIC_DEFAULT v1 "+k.ID, 32)
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

// sealBlob encrypts plaintext under k's current material, which it must
// have.
func sealBlob(k *key, plaintext []byte, ec map[string]string) ([]byte, error) {
	aead, err := blobAEAD(k, &k.materialVersion)
	if err != nil {
		return nil, err
	}
	mid, err := hex.DecodeString(k.MaterialID)
	if err != nil || len(mid) != 32 {
		return nil, errors.New("key material ID is not 32 bytes in hex")
	}
	blob := make([]byte, blobV2HeaderLen+aead.NonceSize(), blobV2HeaderLen+blobOverhead+len(plaintext))
	blob[0] = 2
	if strings.HasPrefix(k.ID, "mrk-") {
		blob[1] = 1
	}
	copy(blob[2:], uuidBytes(k.ID))
	copy(blob[18:], mid)
	rand.Read(blob[blobV2HeaderLen:])
	return aead.Seal(blob, blob[blobV2HeaderLen:], plaintext, contextAAD(blob[:blobV2HeaderLen], ec)), nil
}

// blobKeyID returns the key ID a ciphertext blob names and its key
// material ID ("" for a version 1 blob).
func blobKeyID(blob []byte) (keyID, materialID string, err error) {
	switch {
	case len(blob) >= blobV1HeaderLen+blobOverhead && blob[0] == 1:
		return uuidString(blob[1:blobV1HeaderLen]), "", nil
	case len(blob) >= blobV2HeaderLen+blobOverhead && blob[0] == 2 && blob[1] == 0:
		return uuidString(blob[2:18]), hex.EncodeToString(blob[18:50]), nil
	case len(blob) >= blobV2HeaderLen+blobOverhead && blob[0] == 2 && blob[1] == 1:
		return "mrk-" + hex.EncodeToString(blob[2:18]), hex.EncodeToString(blob[18:50]), nil
	}
	return "", "", errBlob
}

// blobVersion returns the material version of k a blob was made with:
// the one its material ID names, or the first for a version 1 blob.
func blobVersion(k *key, materialID string) *materialVersion {
	if materialID != "" {
		return k.version(materialID)
	}
	if vs := k.versions(); len(vs) > 0 {
		return vs[0]
	}
	return nil
}

// openBlob decrypts a blob made by sealBlob for k under material version v
// with the same context.
func openBlob(k *key, v *materialVersion, blob []byte, ec map[string]string) ([]byte, error) {
	hl := blobV2HeaderLen
	if blob[0] == 1 {
		hl = blobV1HeaderLen
	}
	aead, err := blobAEAD(k, v)
	if err != nil {
		return nil, err
	}
	nonce := blob[hl : hl+aead.NonceSize()]
	pt, err := aead.Open(nil, nonce, blob[hl+aead.NonceSize():], contextAAD(blob[:hl], ec))
	if err != nil {
		return nil, errBlob
	}
	return pt, nil
}
