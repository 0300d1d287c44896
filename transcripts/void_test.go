package transcripts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/keyceremony/keyceremony/transcripts/events"
)

// script writes a transcript as a ceremony does, with checkpoints (ck)
// signed by testKey, the header's signing key, and "dies" and resumes.
type script struct {
	t    *testing.T
	path string
	w    *Writer
}

func newScript(t *testing.T) *script {
	path := filepath.Join(t.TempDir(), "t.jsonl")
	sk, _ := NewSigningKey("test", &testKey.PublicKey)
	w, err := Create(path, Header{CeremonyID: "c1", Tool: "test", SigningKey: sk, Started: t0})
	if err != nil {
		t.Fatal(err)
	}
	return &script{t: t, path: path, w: w}
}

func (s *script) add(ds ...events.Data) *script {
	for _, d := range ds {
		if _, ok := d.(*events.Checkpoint); ok {
			if err := s.w.Checkpoint(0, "op", testKey); err != nil {
				s.t.Fatal(err)
			}
			continue
		}
		s.w.now = func() time.Time { return t0.Add(time.Minute) }
		if err := s.w.Append("op", d); err != nil {
			s.t.Fatal(err)
		}
	}
	return s
}

// resume "kills" the writer, reopens the transcript and records the resume
// event, as a resumed ceremony does.
func (s *script) resume() *Reopened {
	s.w.f.Close()
	r, err := Reopen(s.path)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := r.Writer.Append("op", r.Resume(nil)); err != nil {
		s.t.Fatal(err)
	}
	s.w = r.Writer
	return r
}

func (s *script) seal() []byte {
	if _, err := s.w.Seal(testKey); err != nil {
		s.t.Fatal(err)
	}
	b, _ := os.ReadFile(s.path)
	return b
}

func steps(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Step)
	}
	return out
}

var (
	params1 = &events.FetchParams{Label: "k", ParametersValidTo: t0.Add(time.Hour), File: "params-k.json", FileSHA256: sha256Hex([]byte("first"))}
	params2 = &events.FetchParams{Label: "k", ParametersValidTo: t0.Add(time.Hour), File: "params-k.json", FileSHA256: sha256Hex([]byte("second"))}
	ck      = &events.Checkpoint{}
)

// TestVoidAgreement: what a resume voids, verify skips; what it keeps,
// verify checks. The file a void event names was written again under the
// same name, so checking it would fail.
func TestVoidAgreement(t *testing.T) {
	s := newScript(t).add(&events.GenerateKey{Label: "k", KeyCheckValue: "aabbcc"}, ck, params1)
	r := s.resume()
	if got := steps(r.Counted); len(got) != 2 || got[1] != "checkpoint" || r.Trusted != 2 {
		t.Fatalf("resume counts %v (trusted %d), want generate-key checkpoint", got, r.Trusted)
	}
	if d := r.Resume(nil); d.VoidFirst != 3 || d.VoidLast != 3 || d.EventsBefore != 3 || d.EventsTrusted != 2 {
		t.Fatalf("resume records %+v", d)
	}
	data := s.add(params2, &events.Wrap{Label: "k", KeyCheckValue: "aabbcc", File: "bundle-k.json", FileSHA256: sha256Hex([]byte("bundle"))}).seal()
	res, err := VerifyBytes(data, Options{Files: fstest.MapFS{"params-k.json": {Data: []byte("second")}, "bundle-k.json": {Data: []byte("bundle")}}})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(res.Void) != 1 || res.Void[0].Data.(*events.FetchParams).FileSHA256 != params1.FileSHA256 {
		t.Fatalf("void %v", steps(res.Void))
	}
	_, err = VerifyBytes(data, Options{Files: fstest.MapFS{"params-k.json": {Data: []byte("first")}, "bundle-k.json": {Data: []byte("bundle")}}})
	wantClass(t, err, ClassFile, 6, "sha256")
}

// TestVoidTwice: a second resume voids, again, what the first voided and
// what came after it without a checkpoint; a resume after a checkpoint
// keeps what the first one voided void.
func TestVoidTwice(t *testing.T) {
	s := newScript(t).add(&events.GenerateKey{Label: "k", KeyCheckValue: "aabbcc"}, ck, params1)
	s.resume()
	s.add(params2)
	r := s.resume() // events 3 (params1), 4 (resume), 5 (params2) void
	if d := r.Resume(nil); d.VoidFirst != 3 || d.VoidLast != 5 {
		t.Fatalf("second resume records %+v", d)
	}
	s.add(params2, ck)
	r = s.resume() // nothing new is void; 3-5 stay void
	if got := steps(r.Counted); len(got) != 5 || r.Counted[3].Seq != 7 {
		t.Fatalf("third resume counts %v", got)
	}
	res, err := VerifyBytes(s.seal(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Void) != 3 || res.Void[0].Seq != 3 || res.Void[2].Seq != 5 {
		t.Fatalf("void %v", steps(res.Void))
	}
}

// TestVoidRefusals: a resume event that misstates what it voided, or a
// checkpoint that does not verify, is refused by verify and by the next
// resume alike.
func TestVoidRefusals(t *testing.T) {
	lying := func() *script {
		return newScript(t).add(&events.GenerateKey{Label: "k", KeyCheckValue: "aabbcc"}, ck, params1,
			&events.Resume{EventsBefore: 3, EventsTrusted: 2, VoidFirst: 3, VoidLast: 4})
	}
	_, err := VerifyBytes(lying().seal(), Options{})
	wantClass(t, err, ClassOrder, 5, "data")
	s := lying()
	s.w.f.Close()
	_, err = Reopen(s.path)
	wantClass(t, err, ClassOrder, 5, "data")

	// A checkpoint as a forger would write it: right lines, no signature.
	bad := func() *script {
		s := newScript(t).add(&events.GenerateKey{Label: "k", KeyCheckValue: "aabbcc"})
		if err := s.w.Append("op", &events.Checkpoint{Lines: 2, LastLineSHA256: s.w.prev, Signature: []byte("not a signature")}); err != nil {
			t.Fatal(err)
		}
		return s.add(params1)
	}
	s = bad()
	s.w.f.Close()
	_, err = Reopen(s.path)
	wantClass(t, err, ClassSignature, 3, "data.signature")
	_, err = VerifyBytes(bad().add(&events.Resume{EventsBefore: 3, EventsTrusted: 2, VoidFirst: 3, VoidLast: 3}).seal(), Options{})
	wantClass(t, err, ClassSignature, 3, "data.signature")
}

// TestReadStateAgrees: ReadState, which changes nothing, counts the events
// a resume counts, and those verify counts once sealed; it refuses what they
// refuse, and leaves a torn last line out.
func TestReadStateAgrees(t *testing.T) {
	s := newScript(t).add(&events.GenerateKey{Label: "k", KeyCheckValue: "aabbcc"}, ck, params1)
	read := func() *State {
		t.Helper()
		b, _ := os.ReadFile(s.path)
		st, err := ReadState(b)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := read()
	if got := steps(st.Counted); len(got) != 2 || len(st.Void) != 1 || st.Void[0].Step != "fetch-params" || st.Sealed {
		t.Fatalf("before the resume: counted %v, void %v", got, steps(st.Void))
	}
	r := s.resume()
	if got, want := steps(read().Counted), steps(r.Counted); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("ReadState counts %v, the resume %v", got, want)
	}
	s.add(params2, ck)
	// A torn last line is left out, and the file is not changed.
	f, _ := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"type":"event","seq":7,"st`)
	f.Close()
	before, _ := os.ReadFile(s.path)
	if got := steps(read().Counted); strings.Join(got, " ") != "generate-key checkpoint resume fetch-params checkpoint" {
		t.Fatalf("with a torn line: counted %v", got)
	}
	if after, _ := os.ReadFile(s.path); string(after) != string(before) {
		t.Fatal("ReadState changed the file")
	}
	os.Truncate(s.path, int64(strings.LastIndexByte(string(before), '\n')+1))
	data := s.seal()
	res, err := VerifyBytes(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st := read(); !st.Sealed || strings.Join(steps(st.Counted), " ") != strings.Join(steps(res.Events), " ") || len(st.Void) != len(res.Void) {
		t.Fatalf("sealed: ReadState counts %v (void %d), verify %v (void %d)", steps(st.Counted), len(st.Void), steps(res.Events), len(res.Void))
	}
	// A resume that misstates what it voided is refused, as by Reopen.
	lying := newScript(t).add(&events.GenerateKey{Label: "k", KeyCheckValue: "aabbcc"}, ck, params1,
		&events.Resume{EventsBefore: 3, EventsTrusted: 2, VoidFirst: 3, VoidLast: 4})
	b, _ := os.ReadFile(lying.path)
	_, err = ReadState(b)
	wantClass(t, err, ClassOrder, 5, "data")
	// A changed line breaks the chain.
	b, _ = os.ReadFile(s.path)
	_, err = ReadState([]byte(strings.Replace(string(b), `"aabbcc"`, `"aabbcd"`, 1)))
	wantClass(t, err, ClassChain, 3, "prev")
	if _, err := ReadState(nil); !errors.Is(err, ErrNoHeader) {
		t.Fatalf("empty: %v", err)
	}
}
