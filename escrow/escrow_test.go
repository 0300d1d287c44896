package escrow

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/cloudflare/circl/secretsharing"
	"golang.org/x/crypto/ssh"
)

func init() { testOnlyScryptWorkFactor = 10 }

func split(t testing.TB, id string, m, n int) (*Sharing, []*Share, []byte) {
	t.Helper()
	s, err := Split(rand.Reader, m, n)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*Share
	for i := 1; i <= n; i++ {
		sh, err := s.Share(i, id, fmt.Sprintf("c%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	kek, err := s.KEK(id)
	if err != nil {
		t.Fatal(err)
	}
	return s, shares, kek
}

func pub(s *Sharing, id string) *Commitments {
	return &Commitments{CeremonyID: id, Threshold: s.Threshold, Shares: s.Shares, Commitments: s.Commitments}
}

func choose(n, k int) int {
	r := 1
	for i := 0; i < k; i++ {
		r = r * (n - i) / (i + 1)
	}
	return r
}

// Every M-subset recovers the KEK; no (M-1)-subset does, for every M ≤ N ≤ 5.
func TestEverySubset(t *testing.T) {
	for n := 1; n <= 5; n++ {
		for m := 1; m <= n; m++ {
			t.Run(fmt.Sprintf("%d-of-%d", m, n), func(t *testing.T) {
				s, shares, kek := split(t, "c1", m, n)
				c := pub(s, "c1")
				kcv, _ := CheckValue(kek)
				got, err := c.CheckQuorum(shares, kcv, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got != choose(n, m) {
					t.Errorf("checked %d subsets, want C(%d,%d)=%d", got, n, m, choose(n, m))
				}
				subsets(n, m, func(idx []int) bool {
					k, err := c.Recover(pick(shares, idx))
					if err != nil || !bytes.Equal(k, kek) {
						t.Errorf("subset %v: %v", idx, err)
					}
					return true
				})
				if m == 1 {
					return
				}
				com, _ := decodeCommitments(s.Commitments)
				subsets(n, m-1, func(idx []int) bool {
					sub := pick(shares, idx)
					if _, err := c.Recover(sub); !errors.Is(err, ErrTooFewShares) {
						t.Errorf("subset %v of %d: got %v, want ErrTooFewShares", idx, m-1, err)
					}
					// Interpolating M-1 shares as if the degree were M-2
					// gives some other secret, never the committed one.
					var raw []secretsharing.Share
					for _, sh := range sub {
						r, _ := sh.scalar()
						raw = append(raw, r)
					}
					sec, err := secretsharing.Recover(uint(m-2), raw)
					if err != nil {
						t.Fatal(err)
					}
					if g.NewElement().MulGen(sec).IsEqual(com[0]) {
						t.Errorf("subset %v of %d shares recovered the secret", idx, m-1)
					}
					return true
				})
			})
		}
	}
}

func pick(shares []*Share, idx []int) []*Share {
	out := make([]*Share, len(idx))
	for i, j := range idx {
		out[i] = shares[j]
	}
	return out
}

func TestBadShares(t *testing.T) {
	s, shares, _ := split(t, "c1", 3, 5)
	c := pub(s, "c1")
	s2, other, _ := split(t, "c2", 3, 5)
	_ = s2
	_, sameCeremony, _ := split(t, "c1", 3, 5)

	corrupted := *shares[1]
	v, _ := hex.DecodeString(corrupted.Value)
	v[0] ^= 1
	corrupted.Value = hex.EncodeToString(v)
	corrupted.File = "share-2-c2.age"

	notScalar := *shares[1]
	notScalar.Value = strings.Repeat("ff", 32)

	tests := []struct {
		name   string
		shares []*Share
		want   string
		is     error
	}{
		{"another ceremony", []*Share{shares[0], other[1], shares[2]}, `share 2 of custodian "c2": belongs to ceremony "c2", not "c1"`, nil},
		{"another escrow", []*Share{shares[0], sameCeremony[1], shares[2]}, `share 2 of custodian "c2": belongs to another escrow of ceremony "c1"`, nil},
		{"duplicate", []*Share{shares[0], shares[1], shares[1], shares[2]}, `share 2 of custodian "c2": is a duplicate of share 2 of custodian "c2"`, nil},
		{"duplicate only", []*Share{shares[0], shares[0], shares[0]}, `is a duplicate`, nil},
		{"corrupted", []*Share{shares[0], &corrupted, shares[2]}, `share 2 of custodian "c2" (share-2-c2.age): fails the Feldman check`, nil},
		{"not a scalar", []*Share{shares[0], &notScalar, shares[2]}, `share value is not a Ristretto255 scalar`, nil},
		{"too few", shares[:2], "too few shares: 2 distinct valid share(s) given, this escrow needs 3 of 5", ErrTooFewShares},
		{"none", nil, "too few shares", ErrTooFewShares},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kek, err := c.Recover(tt.shares)
			if err == nil {
				t.Fatalf("recovered %x", kek)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, sh := range shares {
				if strings.Contains(err.Error(), sh.Value) {
					t.Errorf("error holds a share value")
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not wrap %v", tt.is)
			}
			var se *ShareError
			if tt.is == nil && !errors.As(err, &se) {
				t.Errorf("error %T is not a *ShareError", err)
			}
		})
	}
	// The quorum check at the table catches the same corrupted share.
	bad := append([]*Share(nil), shares...)
	bad[1] = &corrupted
	kek, _ := s.KEK("c1")
	kcv, _ := CheckValue(kek)
	if _, err := c.CheckQuorum(bad, kcv, nil); err == nil || !strings.Contains(err.Error(), "Feldman") {
		t.Errorf("CheckQuorum with a corrupted share: %v", err)
	}
	if _, err := c.CheckQuorum(shares, "000000", nil); err == nil || !strings.Contains(err.Error(), "check value") {
		t.Errorf("CheckQuorum with a wrong KEK check value: %v", err)
	}
}

func TestSplitRefuses(t *testing.T) {
	for _, mn := range [][2]int{{0, 3}, {4, 3}, {2, MaxShares + 1}} {
		if _, err := Split(rand.Reader, mn[0], mn[1]); err == nil || !strings.Contains(err.Error(), "impossible") {
			t.Errorf("Split(%d, %d): %v", mn[0], mn[1], err)
		}
	}
}

// DeriveKEK is checked against the openssl command line's HKDF.
func TestDeriveKEKOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	s, _, kek := split(t, "prod-2026.1", 2, 3)
	ikm, _ := s.secret.MarshalBinary()
	out, err := exec.Command("openssl", "kdf", "-keylen", "32", "-kdfopt", "digest:SHA256",
		"-kdfopt", "hexkey:"+hex.EncodeToString(ikm), "-kdfopt", "info:keyceremony/escrow/v1 KEK prod-2026.1", "HKDF").Output()
	if err != nil {
		t.Fatalf("openssl kdf: %v", err)
	}
	want := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(string(out)), ":", ""))
	if hex.EncodeToString(kek) != want {
		t.Errorf("KEK %x, openssl says %s", kek, want)
	}
	other, _ := DeriveKEK(s.secret, "prod-2026.2")
	if bytes.Equal(other, kek) {
		t.Error("the KEK does not depend on the ceremony id")
	}
}

func TestSealOpen(t *testing.T) {
	_, shares, _ := split(t, "c1", 2, 3)
	sh := shares[0]

	x, _ := age.GenerateX25519Identity()
	wrongX, _ := age.GenerateX25519Identity()
	xr, err := ParseRecipient(x.Recipient().String())
	if err != nil || xr.Kind != "x25519" {
		t.Fatal(xr, err)
	}

	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := ssh.NewPublicKey(edPriv.Public())
	sr, err := ParseRecipient(string(ssh.MarshalAuthorizedKey(sshPub)))
	if err != nil || sr.Kind != "ssh-ed25519" {
		t.Fatal(sr, err)
	}
	blk, err := ssh.MarshalPrivateKey(edPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshParsed, err := ParseIdentities(pem.EncodeToMemory(blk), nil)
	if err != nil {
		t.Fatal(err)
	}
	xParsed, err := ParseIdentities([]byte("# created: now\n"+x.String()+"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sshIDs, xIDs := ageIDs(sshParsed), ageIDs(xParsed)

	pr, err := PassphraseRecipient([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := PassphraseIdentity([]byte("correct horse"))
	wrongPID, _ := PassphraseIdentity([]byte("wrong horse"))

	for _, tc := range []struct {
		name  string
		r     *Recipient
		ids   []age.Identity
		wrong []age.Identity
		pass  bool
	}{
		{"x25519", xr, xIDs, []age.Identity{wrongX}, false},
		{"ssh-ed25519", sr, sshIDs, xIDs, false},
		{"passphrase", pr, []age.Identity{pid}, []age.Identity{wrongPID}, true},
	} {
		for _, armored := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s armor=%v", tc.name, armored), func(t *testing.T) {
				data, err := SealShare(sh, tc.r, armored)
				if err != nil {
					t.Fatal(err)
				}
				if armored != bytes.HasPrefix(data, []byte("-----BEGIN AGE ENCRYPTED FILE-----")) {
					t.Errorf("armor=%v but file starts %q", armored, data[:20])
				}
				if bytes.Contains(data, []byte(sh.Value)) {
					t.Fatal("sealed file holds the share value in clear")
				}
				if err := CheckSealed(data, tc.r); err != nil {
					t.Errorf("CheckSealed: %v", err)
				}
				other := xr
				if tc.r == xr {
					other = sr
				}
				if err := CheckSealed(data, other); err == nil || !strings.Contains(err.Error(), "want one") {
					t.Errorf("CheckSealed with another kind of recipient: %v", err)
				}
				if NeedsPassphrase(data) != tc.pass {
					t.Errorf("NeedsPassphrase = %v", !tc.pass)
				}
				got, err := OpenShare(data, "s.age", tc.ids...)
				if err != nil {
					t.Fatal(err)
				}
				got.File = ""
				if fmt.Sprint(*got) != fmt.Sprint(*sh) {
					t.Errorf("round trip: got %+v", got)
				}
				_, err = OpenShare(data, "s.age", tc.wrong...)
				if !errors.Is(err, ErrWrongIdentity) || !strings.HasPrefix(err.Error(), "s.age: ") {
					t.Errorf("wrong identity: %v", err)
				}
				// A damaged file is named as damaged, not as a wrong key.
				bad := bytes.Clone(data)
				bad[len(bad)-40] ^= 0x04
				if _, err := OpenShare(bad, "s.age", tc.ids...); err == nil || errors.Is(err, ErrWrongIdentity) {
					t.Errorf("damaged file: %v", err)
				}
			})
		}
	}
	if _, err := OpenShare([]byte("hello"), "s.age", xIDs...); err == nil || !strings.Contains(err.Error(), "not a readable age file") {
		t.Errorf("not age: %v", err)
	}
	for _, s := range []string{"", "age1nope", "ssh-dss AAAA", "AGE-SECRET-KEY-1XYZ"} {
		if _, err := ParseRecipient(s); err == nil {
			t.Errorf("ParseRecipient(%q) succeeded", s)
		} else if strings.Contains(err.Error(), "AGE-SECRET") {
			t.Errorf("error repeats a secret key: %v", err)
		}
	}
}

func TestBlobStrict(t *testing.T) {
	s, _, kek := split(t, "c1", 2, 3)
	kcv, _ := CheckValue(kek)
	b := &Blob{CeremonyID: "c1", Threshold: 2, Shares: 3, Commitments: s.Commitments, KEKCheckValue: kcv,
		Custodians: []BlobCustodian{{Name: "a", Index: 1, RecipientType: "x25519"}, {Name: "b", Index: 2, RecipientType: "x25519"}, {Name: "c", Index: 3, RecipientType: "passphrase"}},
		Keys:       []BlobKey{{Label: "k", ID: "01", KeyType: "AES-256", KMSKeyARNs: []string{"arn:x"}, WrappedKey: make([]byte, 40), KeyCheckValue: "abcdef"}}}
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != BlobFormat || got.Keys[0].Label != "k" {
		t.Errorf("round trip: %+v", got)
	}
	for name, mutate := range map[string]func(string) string{
		"unknown field": func(s string) string { return strings.Replace(s, `"threshold"`, `"extra": 1, "threshold"`, 1) },
		"trailing":      func(s string) string { return s + "{}" },
		"format":        func(s string) string { return strings.Replace(s, BlobFormat, "keyceremony/escrow/v9", 1) },
		"commitment": func(s string) string {
			return strings.Replace(s, s2(b.Commitments[0]), s2(strings.Repeat("ff", 32)), 1)
		},
	} {
		if _, err := ParseBlob([]byte(mutate(string(data)))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func s2(s string) string { return `"` + s + `"` }

func BenchmarkCheckQuorum3of5(b *testing.B) {
	s, shares, kek := split(b, "c1", 3, 5)
	kcv, _ := CheckValue(kek)
	c := pub(s, "c1")
	for b.Loop() {
		if _, err := c.CheckQuorum(shares, kcv, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func ageIDs(ids []*Identity) []age.Identity {
	var out []age.Identity
	for _, id := range ids {
		out = append(out, id)
	}
	return out
}

// TestIdentities: post-quantum age keys, SSH key tags, encrypted SSH keys,
// and keys compared as keys.
func TestIdentities(t *testing.T) {
	s, _, _ := split(t, "c1", 2, 3)
	sh, err := s.Share(1, "c1", "alice", strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("post-quantum", func(t *testing.T) {
		pq, err := age.GenerateHybridIdentity()
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseRecipient(pq.Recipient().String())
		if err != nil || r.Kind != "mlkem768x25519" {
			t.Fatal(r, err)
		}
		data, err := SealShare(sh, r, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckSealed(data, r); err != nil {
			t.Error(err)
		}
		ids, err := ParseIdentities([]byte(pq.String()+"\n"), nil)
		if err != nil || len(ids) != 1 || ids[0].Kind != "mlkem768x25519" || ids[0].Key != r.Key {
			t.Fatalf("identity %v %v", ids, err)
		}
		if _, err := OpenShare(data, "pq.age", ids[0]); err != nil {
			t.Error(err)
		}
	})
	_, edA, _ := ed25519.GenerateKey(rand.Reader)
	_, edB, _ := ed25519.GenerateKey(rand.Reader)
	pubA, _ := ssh.NewPublicKey(edA.Public())
	pubB, _ := ssh.NewPublicKey(edB.Public())
	lineA := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pubA)))
	rA, _ := ParseRecipient(lineA + " alice@laptop")
	rB, _ := ParseRecipient(string(ssh.MarshalAuthorizedKey(pubB)))
	t.Run("ssh tag", func(t *testing.T) {
		data, err := SealShare(sh, rA, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckSealed(data, rA); err != nil {
			t.Error(err)
		}
		if err := CheckSealed(data, rB); err == nil || !strings.Contains(err.Error(), "is for another SSH key than the custodian's") {
			t.Errorf("sealed to A, checked for B: %v", err)
		}
	})
	t.Run("same key", func(t *testing.T) {
		if !SameKey(lineA, lineA+" a comment") || !SameKey(lineA, "  "+strings.Replace(lineA, " ", "   ", 1)) {
			t.Error("the same SSH key with another comment or spacing is not the same key")
		}
		if SameKey(lineA, rB.Public) {
			t.Error("two SSH keys are the same key")
		}
	})
	t.Run("encrypted ssh key", func(t *testing.T) {
		blk, err := ssh.MarshalPrivateKeyWithPassphrase(edA, "", []byte("key passphrase"))
		if err != nil {
			t.Fatal(err)
		}
		pemBytes := pem.EncodeToMemory(blk)
		asked := 0
		ids, err := ParseIdentities(pemBytes, func(ssh.PublicKey) ([]byte, error) { asked++; return []byte("key passphrase"), nil })
		if err != nil || len(ids) != 1 || ids[0].Key != rA.Key || ids[0].Kind != "ssh-ed25519" {
			t.Fatalf("identity %v %v", ids, err)
		}
		if !CheckSSHPassphrase(pemBytes, []byte("key passphrase")) || CheckSSHPassphrase(pemBytes, []byte("wrong")) {
			t.Error("CheckSSHPassphrase")
		}
		data, _ := SealShare(sh, rA, false)
		other, _ := SealShare(sh, rB, false)
		if _, err := OpenShare(other, "b.age", ids[0]); !errors.Is(err, ErrWrongIdentity) || asked != 0 {
			t.Errorf("a share sealed to another key: %v, passphrase asked %d times", err, asked)
		}
		if _, err := OpenShare(data, "a.age", ids[0]); err != nil || asked != 1 {
			t.Errorf("open: %v, passphrase asked %d times", err, asked)
		}
		wrong, _ := ParseIdentities(pemBytes, func(ssh.PublicKey) ([]byte, error) { return []byte("wrong"), nil })
		if _, err := OpenShare(data, "a.age", wrong[0]); err == nil {
			t.Error("opened with a wrong key passphrase")
		}
		if _, err := ParseIdentities(pemBytes, nil); err == nil {
			t.Error("an encrypted key without a way to ask for its passphrase")
		}
	})
}

func TestIdentityString(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(ed.Public())
	blk, _ := ssh.MarshalPrivateKey(ed, "")
	ids, err := ParseIdentities(pem.EncodeToMemory(blk), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids[0].String(), "ssh-ed25519 "+ssh.FingerprintSHA256(pub); got != want {
		t.Errorf("SSH identity named %q, want %q", got, want)
	}
	x, _ := age.GenerateX25519Identity()
	ids, _ = ParseIdentities([]byte(x.String()), nil)
	if got := ids[0].String(); got != x.Recipient().String()[:40]+"…" {
		t.Errorf("age identity named %q", got)
	}
	p, _ := PassphraseIdentity([]byte("a passphrase"))
	if p.String() != "passphrase" {
		t.Errorf("passphrase identity named %q", p)
	}
}
