package ceremony

import (
	"bytes"
	"fmt"
	"math"
	"unicode"
	"unicode/utf8"
)

// MinPassphraseBits is the least estimated strength of a custodian's
// passphrase: about as strong as 9 random lower-case letters and digits, or
// four random words. An offline attacker with the share file tries
// passphrases against age's scrypt (2^18), so every bit counts.
const MinPassphraseBits = 50

// commonWords are taken out of a passphrase before it is measured: a
// passphrase built on them is weaker than its length says.
var commonWords = []string{"password", "passphrase", "passwort", "qwerty", "azerty", "asdf", "letmein", "welcome",
	"admin", "secret", "changeme", "iloveyou", "monkey", "dragon", "keyceremony", "ceremony", "escrow", "custodian"}

// passphraseBits estimates the strength of pass in bits, conservatively:
// the custodian's name, the ceremony id (avoid) and common words count as
// one character each, a character that repeats or continues a run of the
// one before it (aaaa, abcd, 4321) counts as none, a passphrase that repeats
// a shorter one counts as that one, and each remaining character counts
// log2 of the alphabet its character classes span.
func passphraseBits(pass []byte, avoid ...string) float64 {
	low := bytes.ToLower(pass)
	defer clear(low)
	if u := repeatUnit(low); u > 0 {
		low = low[:u]
	}
	for _, w := range append(avoid, commonWords...) {
		if len(w) >= 3 {
			low = bytes.ReplaceAll(low, bytes.ToLower([]byte(w)), []byte{0})
		}
	}
	n, prev := 0, rune(-10)
	for i := 0; i < len(low); {
		r, size := utf8.DecodeRune(low[i:])
		i += size
		if d := r - prev; r == 0 || d < -1 || d > 1 {
			n++
		}
		prev = r
	}
	pool := 0
	var lower, upper, digit, other, wide bool
	for _, r := range string(pass) {
		switch {
		case r > unicode.MaxASCII:
			wide = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		default:
			other = true
		}
	}
	for _, c := range []struct {
		in   bool
		size int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {other, 33}, {wide, 100}} {
		if c.in {
			pool += c.size
		}
	}
	if pool < 2 {
		return 0
	}
	return float64(n) * math.Log2(float64(pool))
}

// repeatUnit returns the length of the shortest unit that b repeats (at
// least twice), or 0.
func repeatUnit(b []byte) int {
	for u := 1; u <= len(b)/2; u++ {
		if len(b)%u == 0 && bytes.Equal(b[u:], b[:len(b)-u]) {
			return u
		}
	}
	return 0
}

// checkPassphrase refuses a passphrase shorter than MinPassphrase or
// estimated weaker than MinPassphraseBits. The error never holds it.
func checkPassphrase(pass []byte, name, ceremonyID string) error {
	if len(pass) < MinPassphrase {
		return fmt.Errorf("the passphrase of custodian %q is shorter than %d characters: choose a longer one", name, MinPassphrase)
	}
	if bits := passphraseBits(pass, name, ceremonyID); bits < MinPassphraseBits {
		return fmt.Errorf("the passphrase of custodian %q is too easy to guess (about %.0f bits, at least %d needed: it repeats or runs characters, or is built on common words, the custodian's name or the ceremony id): choose another, such as five random words", name, bits, MinPassphraseBits)
	}
	return nil
}
