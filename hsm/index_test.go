package hsm_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestSecretKeyIndex: one listing sees every secret key on a real SoftHSM
// token, and GenerateAESKeyIndexed refuses a label or id in it, then adds
// the key it makes.
func TestSecretKeyIndex(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	tok := open(t, "ceremony")
	x0, err := tok.SecretKeyIndex()
	if err != nil || x0.HasLabel("k000") {
		t.Fatalf("index of an empty token: %v", err)
	}
	for i := range 300 { // more than one FindObjects batch
		if _, err := tok.GenerateAESKeyIndexed(x0, fmt.Sprintf("k%03d", i), []byte{byte(i >> 8), byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	x, err := tok.SecretKeyIndex()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"k000", "k255", "k256", "k299"} {
		if !x.HasLabel(l) {
			t.Errorf("index lacks %s", l)
		}
	}
	if x.HasLabel("new") {
		t.Fatal("index has a label that is not on the token")
	}
	for _, c := range []struct {
		label string
		id    []byte
	}{{"k007", []byte{9, 9}}, {"fresh", []byte{0, 7}}} {
		if _, err := tok.GenerateAESKeyIndexed(x, c.label, c.id); !errors.Is(err, hsm.ErrKeyExists) {
			t.Errorf("GenerateAESKeyIndexed(%s, %x) = %v, want ErrKeyExists", c.label, c.id, err)
		}
	}
	if _, err := tok.GenerateAESKeyIndexed(x, "new", []byte{7, 7}); err != nil {
		t.Fatal(err)
	}
	if !x.HasLabel("new") {
		t.Error("the new key is not in the index")
	}
	if _, err := tok.FindAESKey("new", []byte{7, 7}); err != nil {
		t.Errorf("the new key is not on the token: %v", err)
	}
	if _, err := tok.GenerateAESKeyIndexed(x, "new", []byte{8, 8}); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("second key labelled new: %v", err)
	}
}

// TestKeyMaker generates keys from many goroutines through a KeyMaker with
// four sessions of its own on a real SoftHSM token: SoftHSM allows them,
// each key is on the token with its label and id and a check value read in
// the token's own session, and of two keys racing for one label exactly
// one is made. A KeyMaker of one session uses the token's own.
func TestKeyMaker(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	tok := open(t, "ceremony")
	x, err := tok.SecretKeyIndex()
	if err != nil {
		t.Fatal(err)
	}
	mk := tok.KeyMaker(4)
	if mk.Sessions() != 4 {
		t.Fatalf("KeyMaker(4) on SoftHSM has %d sessions, want 4", mk.Sessions())
	}
	const n = 24
	keys := make([]*hsm.Key, n)
	errs := make([]error, n+2)
	var wg sync.WaitGroup
	for i := range n + 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i >= n { // two keys labelled "twin", with different ids
				_, errs[i] = mk.GenerateAESKeyIndexed(x, "twin", []byte{0xee, byte(i)})
				return
			}
			keys[i], errs[i] = mk.GenerateAESKeyIndexed(x, fmt.Sprintf("c%02d", i), []byte{0xc0, byte(i)})
		}()
	}
	wg.Wait()
	mk.Close()
	for i, err := range errs[:n] {
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
	if a, b := errs[n], errs[n+1]; (a == nil) == (b == nil) || !errors.Is(errors.Join(a, b), hsm.ErrKeyExists) {
		t.Fatalf("two keys labelled twin at once: %v and %v, want one made and one ErrKeyExists", a, b)
	}
	for i, k := range keys {
		if _, err := tok.CheckValue(k); err != nil {
			t.Fatalf("check value of c%02d in the token's session: %v", i, err)
		}
		found, err := tok.FindAESKey(fmt.Sprintf("c%02d", i), []byte{0xc0, byte(i)})
		if err != nil || string(found.ID) != string(k.ID) {
			t.Fatalf("c%02d on the token: %v", i, err)
		}
	}
	if _, err := tok.FindAESKey("twin", nil); err != nil {
		t.Fatalf("the twin that was made: %v", err)
	}

	one := tok.KeyMaker(1)
	defer one.Close()
	if one.Sessions() != 1 {
		t.Fatalf("KeyMaker(1) has %d sessions", one.Sessions())
	}
	if _, err := one.GenerateAESKeyIndexed(x, "solo", []byte{0x50}); err != nil {
		t.Fatal(err)
	}
	if _, err := one.GenerateAESKeyIndexed(x, "c03", []byte{0x51}); !errors.Is(err, hsm.ErrKeyExists) {
		t.Fatalf("a label made by the KeyMaker of four, again: %v", err)
	}
}
