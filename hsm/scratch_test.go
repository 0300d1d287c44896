package hsm_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// TestScratchToken makes a token through PKCS#11 alone (no softhsm2-util,
// no PIN on any command line), logs in with the PIN it returns, and checks
// that a key unwrapped as a session object is gone once the session is:
// what a drill recovers never reaches the token's files.
func TestScratchToken(t *testing.T) {
	hsmtest.Require(t)
	dir := t.TempDir()
	conf, err := hsm.ScratchConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	pin, err := hsm.InitScratchToken(hsmtest.Module, "scratch")
	if err != nil {
		t.Fatal(err)
	}
	open := func() *hsm.Token {
		tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "scratch", PIN: append([]byte(nil), pin...)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := open()
	kek, err := tok.ImportKEK(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	src, err := tok.GenerateAESKey("src", []byte{1})
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := tok.WrapKWP(kek, src)
	if err != nil {
		t.Fatal(err)
	}
	before := objectFiles(t, dir)
	if _, err := tok.UnwrapKWP(kek, wrapped, "recovered", []byte{2}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.FindAESKey("recovered", nil); err != nil {
		t.Fatalf("the session key is not found in its session: %v", err)
	}
	if after := objectFiles(t, dir); after != before {
		t.Errorf("a session key wrote %d object files to the token store", after-before)
	}
	tok.Close()
	tok = open()
	if _, err := tok.FindAESKey("recovered", nil); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("the session key outlived its session: %v", err)
	}
	// The control: the token key is still there.
	if _, err := tok.FindAESKey("src", nil); err != nil {
		t.Fatal(err)
	}
	tok.Close()
	// A wrong PIN is refused: the PIN returned is the one set.
	if _, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "scratch", PIN: []byte("0000")}); !errors.Is(err, hsm.ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
}

func objectFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && filepath.Ext(p) == ".object" {
			n++
		}
		return nil
	})
	return n
}
