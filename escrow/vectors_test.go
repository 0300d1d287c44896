package escrow

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/keyceremony/keyceremony/wrap"
)

// The frozen vectors in testdata/v1 were made by keyceremony at commit
// 5aa1006 (a 2-of-4 ceremony "frozen-v1": alice age X25519, bob ssh-ed25519,
// carol passphrase, dave ssh-rsa; keys payments and ledger). Files written
// then must open, recombine and unwrap to the same keys for as long as
// keyceremony exists.
const (
	v1Dir      = "testdata/v1"
	v1BlobHash = "a82a44418cd7e5b143f478f7ba6305143342e0f7b69303372feb934147d84fe3"
	v1KEKCheck = "36aa16"
)

var v1KCVs = map[string]string{"payments": "167a0c", "ledger": "d828ec"}

func v1Shares(t *testing.T) []*Share {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(v1Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pass := strings.TrimSpace(string(read("identities/carol.pass")))
	carol, err := PassphraseIdentity([]byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	var out []*Share
	for i, c := range []struct {
		file string
		id   []age.Identity
	}{
		{"share-1-alice.age", mustIDs(t, read("identities/alice.key"))},
		{"share-2-bob.age", mustIDs(t, read("identities/bob_ed25519"))},
		{"share-3-carol.age", []age.Identity{carol.Identity}},
		{"share-4-dave.age", mustIDs(t, read("identities/dave_rsa"))},
	} {
		sh, err := OpenShare(read(c.file), c.file, c.id...)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if sh.Index != i+1 || sh.EscrowSHA256 != v1BlobHash || sh.CeremonyID != "frozen-v1" {
			t.Fatalf("%s: index %d, escrow %s, ceremony %s", c.file, sh.Index, sh.EscrowSHA256, sh.CeremonyID)
		}
		out = append(out, sh)
	}
	return out
}

func mustIDs(t *testing.T, data []byte) []age.Identity {
	t.Helper()
	ids, err := ParseIdentities(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ageIDs(ids)
}

func TestFrozenV1(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(v1Dir, "escrow.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The canonical hash of the blob is the hash the transcript and every
	// share recorded, also after line-ending conversion or re-indentation.
	for name, d := range map[string][]byte{
		"as written": data,
		"CRLF":       bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n")),
		"compact":    compact(t, data),
	} {
		b, err := ParseBlob(d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sum, err := b.SHA256(); err != nil || sum != v1BlobHash {
			t.Errorf("%s: canonical sha256 %s, want %s (%v)", name, sum, v1BlobHash, err)
		}
	}
	b, err := ParseBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	shares := v1Shares(t)
	n, err := b.Public().CheckQuorum(shares, v1KEKCheck, func(kek []byte) error {
		for _, k := range b.Keys {
			key, err := wrap.KeyUnwrapPad(kek, k.WrappedKey)
			if err != nil {
				return err
			}
			kcv, _ := CheckValue(key)
			if kcv != v1KCVs[k.Label] || kcv != k.KeyCheckValue {
				t.Errorf("key %s unwraps to kcv %s, want %s", k.Label, kcv, v1KCVs[k.Label])
			}
		}
		return nil
	})
	if err != nil || n != 6 {
		t.Fatalf("quorum check: %d subsets, %v", n, err)
	}
	if kek, err := b.Public().Recover(shares[1:3]); err != nil {
		t.Fatal(err)
	} else if kcv, _ := CheckValue(kek); kcv != v1KEKCheck || kcv != b.KEKCheckValue {
		t.Errorf("KEK check value %s, want %s", kcv, v1KEKCheck)
	}
}

func compact(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The frozen vectors in testdata/v2 were made by keyceremony with shares of
// format keyceremony/share/v2, which carry the escrow blob: a 2-of-5
// ceremony "frozen-v2" with alice on an age post-quantum key, bob on an
// encrypted SSH ed25519 key, carol on a passphrase, dave on ssh-rsa, erin
// on age X25519.
const (
	v2Dir      = "testdata/v2"
	v2BlobHash = "5b1f09c67fed9cdd2660eb90b90317eb8bb29c3e6491285cf825fe732514dad6"
	v2KEKCheck = "1b50d9"
)

var v2KCVs = map[string]string{"payments": "42c26b", "ledger": "363bb2"}

func TestFrozenV2(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(v2Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ids := func(name string) []age.Identity {
		key := read("identities/" + name)
		got, err := ParseIdentities(key, func(ssh.PublicKey) ([]byte, error) {
			return bytes.TrimSpace(read("identities/bob_key.pass")), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ageIDs(got)
	}
	carol, err := PassphraseIdentity(bytes.TrimSpace(read("identities/carol.pass")))
	if err != nil {
		t.Fatal(err)
	}
	var shares []*Share
	for i, c := range []struct {
		file string
		id   []age.Identity
	}{
		{"share-1-alice.age", ids("alice.key")},
		{"share-2-bob.age", ids("bob_ed25519")},
		{"share-3-carol.age", []age.Identity{carol.Identity}},
		{"share-4-dave.age", ids("dave_rsa")},
		{"share-5-erin.age", ids("erin.key")},
	} {
		sh, err := OpenShare(read(c.file), c.file, c.id...)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if sh.Format != ShareFormat || sh.Index != i+1 || sh.EscrowSHA256 != v2BlobHash || sh.Escrow == nil {
			t.Fatalf("%s: format %s, index %d, escrow %s", c.file, sh.Format, sh.Index, sh.EscrowSHA256)
		}
		if sum, _ := sh.Escrow.SHA256(); sum != v2BlobHash {
			t.Fatalf("%s carries a blob with sha256 %s", c.file, sum)
		}
		shares = append(shares, sh)
	}
	b := shares[4].Escrow
	n, err := b.Public().CheckQuorum(shares, v2KEKCheck, func(kek []byte) error {
		for _, k := range b.Keys {
			key, err := wrap.KeyUnwrapPad(kek, k.WrappedKey)
			if err != nil {
				return err
			}
			if kcv, _ := CheckValue(key); kcv != v2KCVs[k.Label] {
				t.Errorf("key %s unwraps to kcv %s, want %s", k.Label, kcv, v2KCVs[k.Label])
			}
		}
		return nil
	})
	if err != nil || n != 10 {
		t.Fatalf("quorum check: %d subsets, %v", n, err)
	}
	if file, err := ParseBlob(read("escrow.json")); err != nil {
		t.Fatal(err)
	} else if sum, _ := file.SHA256(); sum != v2BlobHash {
		t.Errorf("escrow.json has canonical sha256 %s, want %s", sum, v2BlobHash)
	}
}
