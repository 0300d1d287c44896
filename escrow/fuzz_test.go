package escrow

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
)

func FuzzParseBlob(f *testing.F) {
	s, _, kek := split(f, "c1", 2, 3)
	kcv, _ := CheckValue(kek)
	b := &Blob{CeremonyID: "c1", Threshold: 2, Shares: 3, Commitments: s.Commitments, KEKCheckValue: kcv,
		Custodians: []BlobCustodian{{Name: "a", Index: 1, RecipientType: "x25519"}, {Name: "b", Index: 2, RecipientType: "x25519"}, {Name: "c", Index: 3, RecipientType: "passphrase"}},
		Keys:       []BlobKey{{Label: "k", ID: "01", KeyType: "AES-256", WrappedKey: make([]byte, 40), KeyCheckValue: "abcdef"}}}
	good, err := b.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"format":"keyceremony/escrow/v1"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBlob(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid escrow blob: ") {
				t.Errorf("error without context: %v", err)
			}
			return
		}
		// What parses marshals and parses again to the same blob.
		out, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		b2, err := ParseBlob(out)
		if err != nil {
			t.Fatal(err)
		}
		out2, _ := b2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Error("round trip changed the blob")
		}
	})
}

// FuzzOpenShare fuzzes the share plaintext parser behind a real age layer:
// whatever the plaintext, OpenShare returns a valid share or a *ShareError.
func FuzzOpenShare(f *testing.F) {
	_, shares, _ := split(f, "c1", 2, 3)
	id, _ := age.GenerateX25519Identity()
	sh := shares[0]
	good := []byte(`{"format":"keyceremony/share/v1","ceremony_id":"c1","custodian":"c1","index":1,"threshold":2,"shares":3,"group":"ristretto255","commitments":["` +
		sh.Commitments[0] + `","` + sh.Commitments[1] + `"],"escrow_sha256":"","value":"` + sh.Value + `"}`)
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, pt []byte) {
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, id.Recipient())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(pt)
		_ = w.Close()
		sh, err := OpenShare(buf.Bytes(), "s", id)
		if err != nil {
			var se *ShareError
			if !errors.As(err, &se) {
				t.Errorf("error %T is not a *ShareError: %v", err, err)
			}
			return
		}
		if err := sh.validate(); err != nil {
			t.Errorf("OpenShare returned an invalid share: %v", err)
		}
		// Verify never panics on a parsed share.
		_ = sh.Public().Verify(sh)
	})
}
