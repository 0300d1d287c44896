package transcripts_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// FuzzReopen: Reopen refuses with ErrSealed, ErrNoHeader or a
// *VerifyError, or it opens the transcript without changing a complete
// line, records a torn line once (a second Reopen finds the same events
// and changes nothing), and a transcript it accepts, sealed by the key its
// header names, passes verify's chain and signature checks.
func FuzzReopen(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	sk, err := transcripts.NewSigningKey("transcript", &key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	build := func(name string, write func(w *transcripts.Writer) error) []byte {
		p := filepath.Join(dir, name)
		w, err := transcripts.Create(p, transcripts.Header{CeremonyID: "fuzz", SigningKey: sk})
		if err != nil {
			f.Fatal(err)
		}
		if err := write(w); err != nil {
			f.Fatal(err)
		}
		if err := w.Close(); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	checkpointed := build("checkpointed", func(w *transcripts.Writer) error {
		if err := w.Append("alice", &events.StepDone{ID: "one"}); err != nil {
			return err
		}
		if err := w.Checkpoint(0, "alice", key); err != nil {
			return err
		}
		return w.Append("alice", &events.StepDone{ID: "two"})
	})
	f.Add(checkpointed)
	f.Add(append(append([]byte(nil), checkpointed...), `{"seq":4,"ty`...))
	f.Add(bytes.Replace(checkpointed, []byte(`"signature":"M`), []byte(`"signature":"N`), 1))
	f.Add(build("sealed", func(w *transcripts.Writer) error { _, err := w.Seal(key); return err }))
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "transcript.jsonl")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := transcripts.Reopen(p)
		if err != nil {
			var ve *transcripts.VerifyError
			if !errors.Is(err, transcripts.ErrSealed) && !errors.Is(err, transcripts.ErrNoHeader) && !errors.As(err, &ve) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if r.Trusted > len(r.Events) || len(r.Counted) > len(r.Events) {
			t.Fatalf("%d events, %d counted, %d trusted", len(r.Events), len(r.Counted), r.Trusted)
		}
		if err := r.Writer.Close(); err != nil {
			t.Fatal(err)
		}
		after, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if keep := bytes.LastIndexByte(data, '\n') + 1; !bytes.HasPrefix(after, data[:keep]) {
			t.Fatal("Reopen changed a complete line")
		}
		again, err := transcripts.Reopen(p)
		if err != nil {
			t.Fatalf("a transcript Reopen wrote does not reopen: %v", err)
		}
		if len(again.Events) != len(r.Events) || again.Trusted != r.Trusted || again.Torn != nil {
			t.Fatalf("second Reopen: %d events (%d trusted, torn %v); first: %d (%d)", len(again.Events), again.Trusted, again.Torn, len(r.Events), r.Trusted)
		}
		if _, err := again.Writer.Seal(key); err != nil {
			again.Writer.Close()
			return // the header names another key
		}
		if err := again.Writer.Close(); err != nil {
			t.Fatal(err)
		}
		sealed, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = transcripts.VerifyBytes(sealed, transcripts.Options{PublicKey: &key.PublicKey})
		var ve *transcripts.VerifyError
		if errors.As(err, &ve) && (ve.Class == transcripts.ClassChain || ve.Class == transcripts.ClassSignature) {
			t.Fatalf("Reopen accepted what verify refuses: %v", err)
		}
	})
}
