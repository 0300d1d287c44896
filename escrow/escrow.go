// Package escrow splits an escrow key-encryption key (KEK) among custodians
// and puts it back together, with files that outlive the ceremony.
//
// # Scheme
//
// The KEK's seed is a random Ristretto255 scalar, split with Feldman
// verifiable secret sharing (github.com/cloudflare/circl/secretsharing): any
// M of the N shares recover it, fewer reveal nothing, and every share can be
// checked alone against the public commitments (g^a_0, …, g^a_{M-1}) of the
// polynomial. The KEK is HKDF-SHA256 of the scalar with a context naming the
// ceremony ([DeriveKEK]). The token wraps each key under the KEK with AES key
// wrap with padding (RFC 5649, [WrapScheme]), named by its standard and not
// by a vendor's mechanism number, so that any vendor's token recovers it;
// this package never sees key material.
//
// # Files
//
// A share ([Share], format keyceremony/share/v1) is JSON sealed with age to
// one custodian: an X25519 recipient, an SSH public key, or a passphrase
// (scrypt). A custodian can open their share with the age command line alone.
// The escrow blob ([Blob], keyceremony/escrow/v1) holds the wrapped keys,
// their key check values and the commitments; it is public and holds no
// secret. Both are decoded strictly: unknown fields are errors.
//
// This package does no terminal I/O and imports no PKCS#11 code.
package escrow

import (
	"crypto/aes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// Format identifiers and scheme names written in the files.
const (
	ShareFormat = "keyceremony/share/v2"
	// ShareFormatV1 is a share that does not carry the escrow blob: made
	// before v2, it recovers with the escrow.json of its ceremony.
	ShareFormatV1 = "keyceremony/share/v1"
	BlobFormat    = "keyceremony/escrow/v1"
	Group         = "ristretto255"
	KDF           = "HKDF-SHA256"
	// WrapScheme names, by its standard, how the token wraps each key under
	// the KEK: AES key wrap with padding (RFC 5649). Any token whose probe
	// proved a mechanism computes it makes or recovers the escrow, whatever
	// its vendor calls that mechanism.
	WrapScheme = "RFC 5649"
	// LegacyMechanism is what blobs written before WrapScheme named
	// instead ("wrap_mechanism"); they were made on SoftHSM2, where that
	// mechanism computes RFC 5649, and are read as WrapScheme.
	LegacyMechanism = "CKM_AES_KEY_WRAP_PAD"
	// WrappedKeyLen is the length of an RFC 5649 wrap of an AES-256 key.
	WrappedKeyLen = 40
	// MaxShares bounds N: every M-subset is checked at the table.
	MaxShares = 16
)

var g = group.Ristretto255

// Errors callers act on; test with errors.Is.
var (
	// ErrTooFewShares: fewer valid, distinct shares than the threshold.
	ErrTooFewShares = errors.New("too few shares")
	// ErrWrongIdentity: the identity or passphrase does not open a share.
	ErrWrongIdentity = errors.New("the identity or passphrase does not open this share")
)

// Sharing is a freshly split KEK seed: the secret and its N shares. It lives
// only in the ceremony's memory; call [Sharing.Destroy] when done.
type Sharing struct {
	// Threshold is M, Shares is N.
	Threshold, Shares int
	// Commitments are the Feldman commitments, hex of compressed
	// Ristretto255 elements; Commitments[0] commits to the secret itself.
	Commitments []string
	secret      group.Scalar
	shares      []secretsharing.Share
}

// Split draws a random seed from rnd and splits it into n shares, any m of
// which recover it. 1 ≤ m ≤ n ≤ [MaxShares].
func Split(rnd io.Reader, m, n int) (*Sharing, error) {
	if m < 1 || n < m || n > MaxShares {
		return nil, fmt.Errorf("escrow threshold %d of %d custodians is impossible: need 1 ≤ threshold ≤ custodians ≤ %d", m, n, MaxShares)
	}
	secret := g.RandomNonZeroScalar(rnd)
	// circl's threshold argument is the polynomial's degree: M shares
	// recover a polynomial of degree M-1.
	ss := secretsharing.New(rnd, uint(m-1), secret)
	com, err := encodeCommitments(ss.CommitSecret())
	if err != nil {
		return nil, err
	}
	return &Sharing{Threshold: m, Shares: n, Commitments: com, secret: secret, shares: ss.Share(uint(n))}, nil
}

// KEK derives the 32-byte key-encryption key for ceremonyID. The caller
// zeroes it after use (hsm.Token.ImportKEK does).
func (s *Sharing) KEK(ceremonyID string) ([]byte, error) {
	return DeriveKEK(s.secret, ceremonyID)
}

// Share returns share i (1-based) for custodian, naming the escrow blob by
// its canonical SHA-256 but not carrying it (as format v1); [Share.Carry]
// adds the blob.
func (s *Sharing) Share(i int, ceremonyID, custodian, escrowSHA256 string) (*Share, error) {
	if i < 1 || i > len(s.shares) {
		return nil, fmt.Errorf("share index %d is out of range 1..%d", i, len(s.shares))
	}
	v, err := s.shares[i-1].Value.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &Share{
		Format: ShareFormatV1, CeremonyID: ceremonyID, Custodian: custodian, Index: i,
		Threshold: s.Threshold, Shares: s.Shares, Group: Group,
		Commitments: append([]string(nil), s.Commitments...), EscrowSHA256: escrowSHA256,
		Value: hex.EncodeToString(v),
	}, nil
}

// Destroy overwrites the secret and the shares held in memory.
func (s *Sharing) Destroy() {
	if s.secret != nil {
		s.secret.SetUint64(0)
	}
	for i := range s.shares {
		s.shares[i].Value.SetUint64(0)
	}
}

// DeriveKEK is HKDF-SHA256 (RFC 5869) of the seed's 32-byte encoding, with
// no salt and the info string "keyceremony/escrow/v1 KEK " + ceremonyID.
func DeriveKEK(seed group.Scalar, ceremonyID string) ([]byte, error) {
	ikm, err := seed.MarshalBinary()
	if err != nil {
		return nil, err
	}
	defer clear(ikm)
	kek, err := hkdf.Key(sha256.New, ikm, nil, "keyceremony/escrow/v1 KEK "+ceremonyID, 32)
	if err != nil {
		return nil, fmt.Errorf("failed to derive the escrow KEK: %w", err)
	}
	return kek, nil
}

// CheckValue is the key check value of an AES key: the first 3 bytes of
// AES-ECB of a zero block, hex, as PKCS#11's CKA_CHECK_VALUE.
func CheckValue(key []byte) (string, error) {
	c, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	b := make([]byte, aes.BlockSize)
	c.Encrypt(b, b)
	return hex.EncodeToString(b[:3]), nil
}

func encodeCommitments(c secretsharing.SecretCommitment) ([]string, error) {
	out := make([]string, len(c))
	for i, e := range c {
		b, err := e.MarshalBinaryCompress()
		if err != nil {
			return nil, err
		}
		out[i] = hex.EncodeToString(b)
	}
	return out, nil
}

func decodeCommitments(hs []string) (secretsharing.SecretCommitment, error) {
	out := make(secretsharing.SecretCommitment, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("commitment %d is not 32 bytes of hex", i)
		}
		e := g.NewElement()
		if err := e.UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("commitment %d is not a Ristretto255 element: %w", i, err)
		}
		out[i] = e
	}
	return out, nil
}

// ShareError says which share is bad and why. It never holds share values.
type ShareError struct {
	// File is the share's file name, when known.
	File      string
	Custodian string
	Index     int
	Reason    string
}

func (e *ShareError) Error() string {
	who := fmt.Sprintf("share %d of custodian %q", e.Index, e.Custodian)
	if e.Custodian == "" {
		who = "share"
	}
	if e.File != "" {
		who += " (" + e.File + ")"
	}
	return who + ": " + e.Reason
}

// Commitments is the public part of an escrow that a share is checked
// against: from a blob or from a verified transcript's "escrow" event.
type Commitments struct {
	CeremonyID  string
	Threshold   int
	Shares      int
	Commitments []string
}

// Verify checks one opened share against c: same ceremony and scheme, and
// the Feldman check (the share lies on the committed polynomial). Failures
// are *ShareError.
func (c *Commitments) Verify(sh *Share) error {
	bad := func(reason string, args ...any) error {
		return &ShareError{File: sh.File, Custodian: sh.Custodian, Index: sh.Index, Reason: fmt.Sprintf(reason, args...)}
	}
	if sh.CeremonyID != c.CeremonyID {
		return bad("belongs to ceremony %q, not %q: use the shares of this ceremony", sh.CeremonyID, c.CeremonyID)
	}
	if sh.Threshold != c.Threshold || sh.Shares != c.Shares || !equal(sh.Commitments, c.Commitments) {
		return bad("belongs to another escrow of ceremony %q (its commitments differ): use the shares made with this escrow", c.CeremonyID)
	}
	if sh.Index < 1 || sh.Index > c.Shares {
		return bad("index %d is out of range 1..%d", sh.Index, c.Shares)
	}
	com, err := decodeCommitments(c.Commitments)
	if err != nil {
		return err
	}
	s, err := sh.scalar()
	if err != nil {
		return bad("%v", err)
	}
	defer s.Value.SetUint64(0)
	if !secretsharing.Verify(uint(c.Threshold-1), s, com) {
		return bad("fails the Feldman check against the commitments: the share is corrupted or forged; this custodian's share cannot be used")
	}
	return nil
}

// Recover checks every share against c ([Commitments.Verify]) and refuses
// duplicates, then recombines the first M good shares and checks the result
// against the commitment to the secret. It returns the derived KEK, which the
// caller zeroes. A bad share fails the whole call with a *ShareError naming
// it; fewer than M shares give an error wrapping [ErrTooFewShares].
func (c *Commitments) Recover(shares []*Share) ([]byte, error) {
	seen := map[int]*Share{}
	var good []secretsharing.Share
	defer func() {
		for _, s := range good {
			s.Value.SetUint64(0)
		}
	}()
	for _, sh := range shares {
		if err := c.Verify(sh); err != nil {
			return nil, err
		}
		if prev, ok := seen[sh.Index]; ok {
			return nil, &ShareError{File: sh.File, Custodian: sh.Custodian, Index: sh.Index,
				Reason: fmt.Sprintf("is a duplicate of %s: each custodian's share counts once; bring a share of another custodian", describe(prev))}
		}
		seen[sh.Index] = sh
		s, err := sh.scalar()
		if err != nil {
			return nil, err
		}
		good = append(good, s)
	}
	if len(good) < c.Threshold {
		return nil, fmt.Errorf("%w: %d distinct valid share(s) given, this escrow needs %d of %d", ErrTooFewShares, len(good), c.Threshold, c.Shares)
	}
	secret, err := secretsharing.Recover(uint(c.Threshold-1), good)
	if err != nil {
		return nil, fmt.Errorf("failed to recombine the shares: %w", err)
	}
	defer secret.SetUint64(0)
	com, err := decodeCommitments(c.Commitments)
	if err != nil {
		return nil, err
	}
	if !g.NewElement().MulGen(secret).IsEqual(com[0]) {
		// Unreachable with shares that passed the Feldman check.
		return nil, errors.New("the shares recombine to a secret that does not match the commitments")
	}
	return DeriveKEK(secret, c.CeremonyID)
}

func describe(sh *Share) string {
	s := fmt.Sprintf("share %d of custodian %q", sh.Index, sh.Custodian)
	if sh.File != "" {
		s += " (" + sh.File + ")"
	}
	return s
}

// CheckQuorum recombines every M-subset of shares and checks each result
// against the commitments and against kekCheck (the KEK's check value, hex),
// then, when check is not nil, calls it with the recombined KEK (which it
// must not keep: it is zeroed afterwards), for example to unwrap the blob on
// the token. It returns the number of subsets checked. Made for the ceremony
// table: a bad share is caught before anything is uploaded.
func (c *Commitments) CheckQuorum(shares []*Share, kekCheck string, check func(kek []byte) error) (int, error) {
	if len(shares) != c.Shares {
		return 0, fmt.Errorf("%d shares given for an escrow of %d", len(shares), c.Shares)
	}
	n := 0
	var err error
	subsets(len(shares), c.Threshold, func(idx []int) bool {
		sub := make([]*Share, len(idx))
		for i, j := range idx {
			sub[i] = shares[j]
		}
		var kek []byte
		kek, err = c.Recover(sub)
		if err != nil {
			return false
		}
		defer clear(kek)
		var kcv string
		kcv, err = CheckValue(kek)
		if err != nil {
			return false
		}
		if kcv != kekCheck {
			err = fmt.Errorf("shares %v recombine to a KEK with check value %s, want %s", indexes(sub), kcv, kekCheck)
			return false
		}
		if check != nil {
			// The callback may hand kek to hsm.Token.ImportKEK, which
			// zeroes it; give it a copy so the loop's own check stays valid.
			if err = check(append([]byte(nil), kek...)); err != nil {
				err = fmt.Errorf("shares %v: %w", indexes(sub), err)
				return false
			}
		}
		n++
		return true
	})
	return n, err
}

func indexes(sh []*Share) []int {
	out := make([]int, len(sh))
	for i, s := range sh {
		out[i] = s.Index
	}
	return out
}

// subsets calls f with every k-subset of 0..n-1 in lexicographic order, until
// f returns false.
func subsets(n, k int, f func([]int) bool) {
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i
	}
	for {
		if !f(append([]int(nil), idx...)) {
			return
		}
		i := k - 1
		for i >= 0 && idx[i] == n-k+i {
			i--
		}
		if i < 0 {
			return
		}
		idx[i]++
		for j := i + 1; j < k; j++ {
			idx[j] = idx[j-1] + 1
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
