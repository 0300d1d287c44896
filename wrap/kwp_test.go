package wrap

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// TestKeyWrapRFC3394 checks the six published vectors of RFC 3394 section 4.
func TestKeyWrapRFC3394(t *testing.T) {
	const (
		kek128 = "000102030405060708090A0B0C0D0E0F"
		kek192 = "000102030405060708090A0B0C0D0E0F1011121314151617"
		kek256 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
		data16 = "00112233445566778899AABBCCDDEEFF"
		data24 = "00112233445566778899AABBCCDDEEFF0001020304050607"
		data32 = "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"
	)
	tests := []struct{ name, kek, data, wrapped string }{
		{"4.1", kek128, data16, "1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5"},
		{"4.2", kek192, data16, "96778B25AE6CA435 F92B5B97C050AED2 468AB8A17AD84E5D"},
		{"4.3", kek256, data16, "64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7"},
		{"4.4", kek192, data24, "031D33264E15D332 68F24EC260743EDC E1C6C7DDEE725A93 6BA814915C6762D2"},
		{"4.5", kek256, data24, "A8F9BC1612C68B3F F6E6F4FBE30E71E4 769C8B80A32CB895 8CD5D17D6B254DA1"},
		{"4.6", kek256, data32, "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kek, data, want := unhex(t, tt.kek), unhex(t, tt.data), unhex(t, tt.wrapped)
			got, err := KeyWrap(kek, data)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("KeyWrap = %X, %v; want %X", got, err, want)
			}
			back, err := KeyUnwrap(kek, want)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("KeyUnwrap = %X, %v; want %X", back, err, data)
			}
			for i := range want {
				bad := bytes.Clone(want)
				bad[i] ^= 1
				if _, err := KeyUnwrap(kek, bad); !errors.Is(err, ErrKeyUnwrap) {
					t.Fatalf("byte %d flipped: err = %v, want ErrKeyUnwrap", i, err)
				}
			}
		})
	}
}

// TestKeyWrapPadRFC5649 checks the two published vectors of RFC 5649
// section 6.
func TestKeyWrapPadRFC5649(t *testing.T) {
	const kek = "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"
	tests := []struct{ name, data, wrapped string }{
		{"20 octets", "c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"7 octets", "466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, data, want := unhex(t, kek), unhex(t, tt.data), unhex(t, tt.wrapped)
			got, err := KeyWrapPad(k, data)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("KeyWrapPad = %x, %v; want %x", got, err, want)
			}
			back, err := KeyUnwrapPad(k, want)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("KeyUnwrapPad = %x, %v; want %x", back, err, data)
			}
			for i := range want {
				bad := bytes.Clone(want)
				bad[i] ^= 0x80
				if _, err := KeyUnwrapPad(k, bad); !errors.Is(err, ErrKeyUnwrap) {
					t.Fatalf("byte %d flipped: err = %v, want ErrKeyUnwrap", i, err)
				}
			}
		})
	}
}

func TestKeyWrapLengthErrors(t *testing.T) {
	kek := make([]byte, 32)
	for _, tt := range []struct {
		name string
		f    func() ([]byte, error)
		want string
	}{
		{"wrap 8 bytes", func() ([]byte, error) { return KeyWrap(kek, make([]byte, 8)) }, "at least 16"},
		{"unwrap 17 bytes", func() ([]byte, error) { return KeyUnwrap(kek, make([]byte, 17)) }, "multiple of 8"},
		{"wrap-pad empty", func() ([]byte, error) { return KeyWrapPad(kek, nil) }, "needs 1 to"},
		{"unwrap-pad 8 bytes", func() ([]byte, error) { return KeyUnwrapPad(kek, make([]byte, 8)) }, "at least 16"},
		{"bad kek", func() ([]byte, error) { return KeyWrapPad(make([]byte, 7), []byte{1}) }, "invalid key-encryption key"},
	} {
		if _, err := tt.f(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestKeyWrapPadOpenSSL cross-checks against `openssl enc -id-aes256-wrap-pad`
// both ways, for lengths that take every branch.
func TestKeyWrapPadOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		msg := "openssl not found; install it with: apt-get install -y openssl"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, n := range []int{1, 7, 8, 9, 20, 32, 33} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			kek, p := make([]byte, 32), make([]byte, n)
			rand.Read(kek)
			rand.Read(p)
			theirs := runOpenSSL(t, p, "enc", "-id-aes256-wrap-pad", "-iv", "A65959A6", "-K", hex.EncodeToString(kek))
			ours, err := KeyWrapPad(kek, p)
			if err != nil || !bytes.Equal(ours, theirs) {
				t.Fatalf("KeyWrapPad = %x, %v; openssl %x", ours, err, theirs)
			}
			if back := runOpenSSL(t, ours, "enc", "-d", "-id-aes256-wrap-pad", "-iv", "A65959A6", "-K", hex.EncodeToString(kek)); !bytes.Equal(back, p) {
				t.Fatalf("openssl unwrap of ours = %x, want %x", back, p)
			}
		})
	}
	t.Run("3394", func(t *testing.T) {
		kek, p := make([]byte, 32), make([]byte, 32)
		rand.Read(kek)
		rand.Read(p)
		theirs := runOpenSSL(t, p, "enc", "-id-aes256-wrap", "-iv", "A6A6A6A6A6A6A6A6", "-K", hex.EncodeToString(kek))
		ours, err := KeyWrap(kek, p)
		if err != nil || !bytes.Equal(ours, theirs) {
			t.Fatalf("KeyWrap = %x, %v; openssl %x", ours, err, theirs)
		}
	})
}

func runOpenSSL(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// FuzzKeyUnwrapPad: unwrapping never panics, failures are ErrKeyUnwrap or a
// length error, and what unwraps wraps back to the same bytes.
func FuzzKeyUnwrapPad(f *testing.F) {
	kek := bytes.Repeat([]byte{7}, 32)
	for _, n := range []int{1, 8, 32} {
		c, _ := KeyWrapPad(kek, bytes.Repeat([]byte{1}, n))
		f.Add(c)
	}
	f.Add(make([]byte, 24))
	f.Fuzz(func(t *testing.T, c []byte) {
		p, err := KeyUnwrapPad(kek, c)
		if err != nil {
			if !errors.Is(err, ErrKeyUnwrap) && !strings.Contains(err.Error(), "multiple of 8") {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		again, err := KeyWrapPad(kek, p)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("round trip: %x, %v; want %x", again, err, c)
		}
	})
}

// The tests below came with kmslocal, which now unwraps with this package.

func TestKeyUnwrapPadRejects(t *testing.T) {
	kek := unhex(t, kek256)
	kw3394, err := KeyWrap(kek, unhex(t, data32))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		kek     []byte
		c       []byte
		wantErr error // nil means any error
	}{
		{"RFC 3394 ciphertext (wrong initial value)", kek, kw3394, ErrKeyUnwrap},
		{"wrong KEK", unhex(t, kek128), mustWrapPad(t, kek, unhex(t, data32)), nil},
		{"wrong KEK same size", unhex(t, strings.Repeat("11", 32)), mustWrapPad(t, kek, unhex(t, data32)), ErrKeyUnwrap},
		{"empty", kek, nil, nil},
		{"8 bytes", kek, make([]byte, 8), nil},
		{"not a multiple of 8", kek, make([]byte, 41), nil},
		{"bad KEK length", make([]byte, 15), make([]byte, 40), nil},
		{"truncated", kek, mustWrapPad(t, kek, unhex(t, data32))[:32], ErrKeyUnwrap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := KeyUnwrapPad(tt.kek, tt.c)
			if err == nil {
				t.Fatalf("KeyUnwrapPad succeeded with %x, want an error", p)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestKeyUnwrapPadLengthField forges ciphertexts whose message length
// indicator is out of range or whose padding is not zero, by wrapping with
// the raw RFC 3394 core and a chosen initial value.
func TestKeyUnwrapPadLengthField(t *testing.T) {
	kek := unhex(t, kek256)
	b, err := newKEK(kek)
	if err != nil {
		t.Fatal(err)
	}
	iv := func(mli uint32) [8]byte {
		return [8]byte{0xA6, 0x59, 0x59, 0xA6, byte(mli >> 24), byte(mli >> 16), byte(mli >> 8), byte(mli)}
	}
	block24 := make([]byte, 24)
	padded := append(bytes.Repeat([]byte{0x42}, 20), 0, 0, 0, 1) // 20 bytes of data, bad padding
	tests := []struct {
		name string
		c    []byte
		want int // -1: must fail; else expected plaintext length
	}{
		{"MLI = 24 (full)", wrapBlocks(b, iv(24), block24), 24},
		{"MLI = 17 (smallest)", wrapBlocks(b, iv(17), block24), 17},
		{"MLI = 16 (too small)", wrapBlocks(b, iv(16), block24), -1},
		{"MLI = 25 (too large)", wrapBlocks(b, iv(25), block24), -1},
		{"MLI = 0", wrapBlocks(b, iv(0), block24), -1},
		{"MLI = 2^32-1", wrapBlocks(b, iv(0xFFFFFFFF), block24), -1},
		{"non-zero padding", wrapBlocks(b, iv(20), append(padded, 0)[:24]), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := KeyUnwrapPad(kek, tt.c)
			switch {
			case tt.want < 0 && err == nil:
				t.Fatalf("KeyUnwrapPad succeeded with %x, want ErrKeyUnwrap", p)
			case tt.want < 0 && !errors.Is(err, ErrKeyUnwrap):
				t.Fatalf("err = %v, want ErrKeyUnwrap", err)
			case tt.want >= 0 && err != nil:
				t.Fatalf("KeyUnwrapPad: %v", err)
			case tt.want >= 0 && len(p) != tt.want:
				t.Fatalf("len = %d, want %d", len(p), tt.want)
			}
		})
	}
}

func mustWrapPad(t testing.TB, kek, p []byte) []byte {
	t.Helper()
	c, err := KeyWrapPad(kek, p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKeyWrapPadRoundTrip covers every length from 1 to 72 bytes (the ECB
// path, exact multiples of 8 and every padding length) with all KEK sizes.
func TestKeyWrapPadRoundTrip(t *testing.T) {
	for _, kekLen := range []int{16, 24, 32} {
		kek := make([]byte, kekLen)
		rand.Read(kek)
		for n := 1; n <= 72; n++ {
			p := make([]byte, n)
			rand.Read(p)
			c := mustWrapPad(t, kek, p)
			if want := (n+7)/8*8 + 8; len(c) != want {
				t.Fatalf("kek %d, len %d: ciphertext is %d bytes, want %d", kekLen, n, len(c), want)
			}
			back, err := KeyUnwrapPad(kek, c)
			if err != nil {
				t.Fatalf("kek %d, len %d: KeyUnwrapPad: %v", kekLen, n, err)
			}
			if !bytes.Equal(back, p) {
				t.Fatalf("kek %d, len %d: round trip gave %x, want %x", kekLen, n, back, p)
			}
		}
	}
	if _, err := KeyWrapPad(make([]byte, 32), nil); err == nil {
		t.Fatal("KeyWrapPad of empty input succeeded, want an error")
	}
}

// TestKeyWrapPadOpenSSL cross-checks against the openssl command line in
// both directions, for the 32-byte keys kmslocal imports and a few odd sizes.

const (
	kek128 = "000102030405060708090A0B0C0D0E0F"
	kek256 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
	data32 = "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"
)
