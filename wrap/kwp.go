package wrap

// AES key wrap (RFC 3394) and AES key wrap with padding (RFC 5649, the KWP
// of NIST SP 800-38F), built on crypto/aes. No kept Go library implements
// them, so this one is tested against the published vectors of both RFCs and
// against `openssl enc -id-aes256-wrap[-pad]` (kwp_test.go).

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrKeyUnwrap is returned for every unwrap failure that depends on the
// ciphertext or the key-encryption key; it does not say which check failed.
var ErrKeyUnwrap = errors.New("aes key unwrap failed: integrity check did not pass")

// kwDefaultIV is the RFC 3394 section 2.2.3.1 default initial value.
var kwDefaultIV = [8]byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// kwpICV is the constant half of the RFC 5649 section 3 initial value.
const kwpICV uint32 = 0xA65959A6

// kwMaxBlocks bounds inputs so the 64-bit step counter never wraps; keys
// are far smaller.
const kwMaxBlocks = 1 << 28

// wrapBlocks is the RFC 3394 section 2.2.1 wrapping process (index form)
// over the 64-bit blocks of p (a multiple of 8, at least 16 bytes).
func wrapBlocks(b cipher.Block, iv [8]byte, p []byte) []byte {
	n := len(p) / 8
	out := make([]byte, 8+len(p))
	copy(out[8:], p)
	a := binary.BigEndian.Uint64(iv[:])
	var buf [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			binary.BigEndian.PutUint64(buf[:8], a)
			copy(buf[8:], r)
			b.Encrypt(buf[:], buf[:])
			a = binary.BigEndian.Uint64(buf[:8]) ^ uint64(n*j+i)
			copy(r, buf[8:])
		}
	}
	clear(buf[:])
	binary.BigEndian.PutUint64(out[:8], a)
	return out
}

// unwrapBlocks is the RFC 3394 section 2.2.2 unwrapping process; checking
// the returned initial value is the caller's job.
func unwrapBlocks(b cipher.Block, c []byte) (iv [8]byte, p []byte) {
	n := len(c)/8 - 1
	p = make([]byte, 8*n)
	copy(p, c[8:])
	a := binary.BigEndian.Uint64(c[:8])
	var buf [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			r := p[8*(i-1) : 8*i]
			binary.BigEndian.PutUint64(buf[:8], a^uint64(n*j+i))
			copy(buf[8:], r)
			b.Decrypt(buf[:], buf[:])
			a = binary.BigEndian.Uint64(buf[:8])
			copy(r, buf[8:])
		}
	}
	clear(buf[:])
	binary.BigEndian.PutUint64(iv[:], a)
	return iv, p
}

func newKEK(kek []byte) (cipher.Block, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("invalid key-encryption key: %w", err)
	}
	return b, nil
}

// KeyWrap wraps p under kek (16, 24 or 32 bytes) with RFC 3394 AES key wrap
// and the default initial value. p must be a multiple of 8 bytes, at least 16.
func KeyWrap(kek, p []byte) ([]byte, error) {
	b, err := newKEK(kek)
	if err != nil {
		return nil, err
	}
	if len(p) < 16 || len(p)%8 != 0 || len(p)/8 > kwMaxBlocks {
		return nil, fmt.Errorf("aes key wrap needs a multiple of 8 bytes, at least 16, got %d", len(p))
	}
	return wrapBlocks(b, kwDefaultIV, p), nil
}

// KeyUnwrap reverses [KeyWrap]. It returns [ErrKeyUnwrap] when the
// integrity check fails.
func KeyUnwrap(kek, c []byte) ([]byte, error) {
	b, err := newKEK(kek)
	if err != nil {
		return nil, err
	}
	if len(c) < 24 || len(c)%8 != 0 || len(c)/8 > kwMaxBlocks+1 {
		return nil, fmt.Errorf("aes key unwrap needs a multiple of 8 bytes, at least 24, got %d", len(c))
	}
	iv, p := unwrapBlocks(b, c)
	if subtle.ConstantTimeCompare(iv[:], kwDefaultIV[:]) != 1 {
		clear(p)
		return nil, ErrKeyUnwrap
	}
	return p, nil
}

// KeyWrapPad wraps p (at least 1 byte) under kek with RFC 5649 AES key wrap
// with padding: what `openssl enc -id-aes256-wrap-pad`, PKCS#11
// CKM_AES_KEY_WRAP_PAD and the AES half of KMS's RSA_AES_KEY_WRAP_* compute.
func KeyWrapPad(kek, p []byte) ([]byte, error) {
	b, err := newKEK(kek)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 || len(p) > 8*kwMaxBlocks {
		return nil, fmt.Errorf("aes key wrap with padding needs 1 to %d bytes, got %d", 8*kwMaxBlocks, len(p))
	}
	var iv [8]byte
	binary.BigEndian.PutUint32(iv[:4], kwpICV)
	binary.BigEndian.PutUint32(iv[4:], uint32(len(p)))
	padded := make([]byte, (len(p)+7)/8*8)
	defer clear(padded)
	copy(padded, p)
	if len(padded) == 8 {
		// RFC 5649 section 4.1: a single block is encrypted in ECB mode.
		out := make([]byte, 16)
		copy(out, iv[:])
		copy(out[8:], padded)
		b.Encrypt(out, out)
		return out, nil
	}
	return wrapBlocks(b, iv, padded), nil
}

// KeyUnwrapPad reverses [KeyWrapPad]. It returns [ErrKeyUnwrap] when the
// initial value, the message length indicator or the padding is wrong.
// The caller zeroes the result when done.
func KeyUnwrapPad(kek, c []byte) ([]byte, error) {
	b, err := newKEK(kek)
	if err != nil {
		return nil, err
	}
	if len(c) < 16 || len(c)%8 != 0 || len(c)/8 > kwMaxBlocks+1 {
		return nil, fmt.Errorf("aes key unwrap with padding needs a multiple of 8 bytes, at least 16, got %d", len(c))
	}
	var iv [8]byte
	var p []byte
	if len(c) == 16 {
		var buf [16]byte
		b.Decrypt(buf[:], c)
		copy(iv[:], buf[:8])
		p = append([]byte(nil), buf[8:]...)
		clear(buf[:])
	} else {
		iv, p = unwrapBlocks(b, c)
	}
	// RFC 5649 section 3: A65959A6 || MLI with 8*(n-1) < MLI <= 8*n, zero
	// padding. Every check runs before the one failure branch.
	mli := uint64(binary.BigEndian.Uint32(iv[4:]))
	ok := subtle.ConstantTimeEq(int32(binary.BigEndian.Uint32(iv[:4])^kwpICV), 0)
	if mli <= uint64(len(p)-8) || mli > uint64(len(p)) {
		ok = 0
		mli = uint64(len(p))
	}
	var pad byte
	for _, x := range p[mli:] {
		pad |= x
	}
	ok &= subtle.ConstantTimeByteEq(pad, 0)
	if ok != 1 {
		clear(p)
		return nil, ErrKeyUnwrap
	}
	return p[:mli:mli], nil
}
