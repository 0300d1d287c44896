package transcripts

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/keyceremony/keyceremony/transcripts/events"
)

var (
	testKey, _  = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
)

type ev struct {
	no   int
	at   time.Time
	data events.Data
}

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

var testScript = []ScriptStep{{1, "generate-keys", "Generate"}, {2, "fetch-params", "Fetch"}, {3, "wrap", "Wrap"}, {4, "import", "Import"}}

// ceremonyEvents is a well-formed ceremony for one key.
func ceremonyEvents() []ev {
	return []ev{
		{1, t0, &events.GenerateKey{Label: "k", KeyCheckValue: "aabbcc"}},
		{2, t0.Add(time.Minute), &events.FetchParams{Label: "k", ParametersValidTo: t0.Add(24 * time.Hour), File: "params-k.json", FileSHA256: sha256Hex([]byte("params"))}},
		{3, t0.Add(2 * time.Minute), &events.Wrap{Label: "k", KeyCheckValue: "aabbcc", File: "bundle-k.json", FileSHA256: sha256Hex([]byte("bundle"))}},
		{4, t0.Add(3 * time.Minute), &events.Import{Label: "k", KeyCheckValue: "aabbcc"}},
		{4, t0.Add(4 * time.Minute), &events.Files{List: []events.File{{Name: "params-k.json", SHA256: sha256Hex([]byte("params"))}}}},
	}
}

func sha256Hex(b []byte) string { return Fingerprint(b) }

// build writes a sealed transcript with the given header script and events.
func build(t testing.TB, script []ScriptStep, events []ev, signer *ecdsa.PrivateKey) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.jsonl")
	sk, err := NewSigningKey("test", &testKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Create(path, Header{CeremonyID: "c1", Tool: "test", SigningKey: sk, Script: script, TimeSource: "test clock", Started: t0})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		w.now = func() time.Time { return e.at }
		if err := w.AppendStep(e.no, "op", e.data); err != nil {
			t.Fatal(err)
		}
	}
	w.header.SigningKey = nil // let the test seal with another key
	if _, err := w.Seal(signer); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantClass(t *testing.T, err error, class Class, line int, field string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want a %s failure", err, class)
	}
	if ve.Class != class || ve.Line != line || ve.Field != field {
		t.Fatalf("got class %s line %d field %q, want %s line %d field %q: %v", ve.Class, ve.Line, ve.Field, class, line, field, err)
	}
}

func TestVerifyOrder(t *testing.T) {
	good := build(t, testScript, ceremonyEvents(), testKey)
	if _, err := VerifyBytes(good, Options{PublicKey: &testKey.PublicKey}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		script []ScriptStep
		edit   func([]ev) []ev
		class  Class
		line   int
		field  string
	}{
		{"kcv changes at wrap", testScript, func(e []ev) []ev { e[2].data.(*events.Wrap).KeyCheckValue = "000000"; return e }, ClassOrder, 4, "data.key_check_value"},
		{"kcv changes at import", testScript, func(e []ev) []ev { e[3].data.(*events.Import).KeyCheckValue = "000000"; return e }, ClassOrder, 5, "data.key_check_value"},
		{"params expired at wrap", testScript, func(e []ev) []ev { e[2].at = t0.Add(25 * time.Hour); return e }, ClassOrder, 4, "time"},
		{"import before wrap", testScript, func(e []ev) []ev { e[2], e[3] = e[3], e[2]; e[2].no, e[3].no = 3, 4; return e }, ClassOrder, 4, "step"},
		{"step numbers go back", testScript, func(e []ev) []ev { e[3].no = 2; return e }, ClassOrder, 5, "step_no"},
		{"upload before escrow", append(testScript, ScriptStep{5, "escrow", "Escrow"}), func(e []ev) []ev { return e }, ClassOrder, 5, "step"},
		{"escrow quorum failed", testScript, func(e []ev) []ev {
			return append(e[:3], append([]ev{{3, t0.Add(150 * time.Second), &events.Escrow{Keys: []events.EscrowKey{{Label: "k"}}, QuorumCheck: "failed"}}}, e[3:]...)...)
		}, ClassOrder, 5, "data.quorum_check"},
		{"escrowed key is another key", testScript, func(e []ev) []ev {
			return append(e[:3], append([]ev{{3, t0.Add(150 * time.Second), &events.Escrow{Keys: []events.EscrowKey{{Label: "k", KeyCheckValue: "ffffff"}}, QuorumCheck: "ok"}}}, e[3:]...)...)
		}, ClassOrder, 5, "data.keys.key_check_value"},
		{"script step missing", append(testScript, ScriptStep{9, "check-import", "Check"}), func(e []ev) []ev { return e }, ClassScript, 1, "script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := build(t, tt.script, tt.edit(ceremonyEvents()), testKey)
			_, err := VerifyBytes(b, Options{})
			wantClass(t, err, tt.class, tt.line, tt.field)
		})
	}
	// Escrow before the upload satisfies the escrow step.
	withEscrow := append(ceremonyEvents()[:3], append([]ev{{3, t0.Add(150 * time.Second), &events.Escrow{Keys: []events.EscrowKey{{Label: "k", KeyCheckValue: "aabbcc"}}, QuorumCheck: "ok"}}}, ceremonyEvents()[3:]...)...)
	b := build(t, append(testScript, ScriptStep{3, "escrow", "Escrow"}), withEscrow, testKey)
	if _, err := VerifyBytes(b, Options{}); err != nil {
		t.Fatalf("escrow before upload: %v", err)
	}
}

func TestVerifyTamper(t *testing.T) {
	good := build(t, testScript, ceremonyEvents(), testKey)
	lines := strings.SplitAfter(string(good), "\n")
	lines = lines[:len(lines)-1] // header, 5 events, seal: 7 lines
	join := func(ls ...string) []byte { return []byte(strings.Join(ls, "")) }
	resealed := build(t, testScript, ceremonyEvents(), otherKey)
	tests := []struct {
		name  string
		data  []byte
		opts  Options
		class Class
		line  int
		field string
	}{
		{"delete event", join(lines[0], lines[1], lines[3], lines[4], lines[5], lines[6]), Options{}, ClassChain, 3, "prev"},
		{"reorder events", join(lines[0], lines[2], lines[1], lines[3], lines[4], lines[5], lines[6]), Options{}, ClassChain, 2, "prev"},
		{"insert line", join(lines[0], lines[1], lines[1], lines[2], lines[3], lines[4], lines[5], lines[6]), Options{}, ClassChain, 3, "prev"},
		{"delete header", join(lines[1:]...), Options{}, ClassChain, 1, "prev"},
		{"remove seal", join(lines[:6]...), Options{}, ClassChain, 6, ""},
		{"line after seal", join(append(lines, lines[6])...), Options{}, ClassChain, 8, ""},
		{"truncated", good[:len(good)-1], Options{}, ClassChain, 7, ""},
		{"CR LF line endings", bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")), Options{}, ClassChain, 1, ""},
		{"edit last event", join(lines[0], lines[1], lines[2], lines[3], lines[4], strings.Replace(lines[5], "params-k.json", "params-x.json", 1), lines[6]), Options{}, ClassChain, 7, "prev"},
		{"wrong pinned key", good, Options{PublicKey: &otherKey.PublicKey}, ClassSignature, 7, "public_key"},
		{"wrong pinned fingerprint", good, Options{Fingerprint: strings.Repeat("ab", 32)}, ClassSignature, 7, "fingerprint"},
		{"sealed by another key than the header's", resealed, Options{}, ClassSignature, 7, "public_key"},
		{"signer key swapped in the seal", join(append(lines[:6:6], swapSealKey(t, lines[6]))...), Options{}, ClassSignature, 7, "public_key"},
		{"v0 transcript", []byte(`{"type":"header","format":"keyceremony/transcript/v0","ceremony_id":"c","tool":"t","started":"2026-01-01T00:00:00Z","prev":"` + zeroHash + "\"}\n"), Options{}, ClassChain, 1, "format"},
		{"file replaced", good, Options{Files: fstest.MapFS{"params-k.json": {Data: []byte("params")}, "bundle-k.json": {Data: []byte("other")}}}, ClassFile, 4, "sha256"},
		{"file missing", good, Options{Files: fstest.MapFS{"bundle-k.json": {Data: []byte("bundle")}}}, ClassFile, 3, "file"},
		{"a device for a file", good, Options{Files: fstest.MapFS{"params-k.json": {Data: []byte("params"), Mode: fs.ModeDevice | fs.ModeCharDevice}, "bundle-k.json": {Data: []byte("bundle")}}}, ClassFile, 3, "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyBytes(tt.data, tt.opts)
			wantClass(t, err, tt.class, tt.line, tt.field)
		})
	}
	if _, err := VerifyBytes(good, Options{Files: fstest.MapFS{"params-k.json": {Data: []byte("params")}, "bundle-k.json": {Data: []byte("bundle")}}}); err != nil {
		t.Fatalf("files as named: %v", err)
	}
}

// swapSealKey replaces the seal's public key and fingerprint with another
// key's, leaving the signature.
func swapSealKey(t *testing.T, line string) string {
	var s Seal
	if err := json.Unmarshal([]byte(line), &s); err != nil {
		t.Fatal(err)
	}
	sk, _ := NewSigningKey("", &otherKey.PublicKey)
	s.PublicKey, s.Fingerprint = sk.PublicKey, sk.Fingerprint
	b, _ := json.Marshal(s)
	return string(b) + "\n"
}

// TestFlipEveryByteNamed flips each byte in turn: every change is detected,
// as a failure naming a line of the transcript.
func TestFlipEveryByteNamed(t *testing.T) {
	good := build(t, testScript, ceremonyEvents(), testKey)
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		_, err := VerifyBytes(bad, Options{})
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Line < 1 || ve.Line > 8 {
			t.Fatalf("flipping byte %d (%q): %v", i, good[i], err)
		}
	}
}

func TestWords(t *testing.T) {
	// The example in Wikipedia's "PGP word list" article.
	in := []byte{0xE5, 0x82, 0x94, 0xF2, 0xE9, 0xA2, 0x27, 0x48, 0x6E, 0x8B, 0x06, 0x1B, 0x31, 0xCC, 0x52, 0x8F, 0xD7, 0xFA, 0x3F, 0x19}
	want := "topmost Istanbul Pluto vagabond treadmill Pacific brackish dictator goldfish Medusa afflict bravado chatter revolver Dupont midsummer stopwatch whimsical cowbell bottomless"
	if got := Words(in); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	seen := map[string]bool{}
	for i := range 256 {
		for _, w := range []string{evenWords[i], oddWords[i]} {
			if w == "" || seen[strings.ToLower(w)] {
				t.Fatalf("word %d %q empty or repeated", i, w)
			}
			seen[strings.ToLower(w)] = true
		}
	}
}

// FuzzVerifyBytes: any input gives a result or a *VerifyError, never a
// panic or another error; a mutated line of a sealed transcript never
// verifies.
func FuzzVerifyBytes(f *testing.F) {
	good := build(f, testScript, ceremonyEvents(), testKey)
	f.Add(good, 3, []byte(`{"type":"event"}`))
	f.Add(good, 1, []byte(`{}`))
	f.Add([]byte("{}\n"), 0, []byte(""))
	f.Fuzz(func(t *testing.T, data []byte, line int, repl []byte) {
		_, err := VerifyBytes(data, Options{})
		var ve *VerifyError
		if err != nil && !errors.As(err, &ve) {
			t.Fatalf("error of type %T: %v", err, err)
		}
		lines := bytes.SplitAfter(good, []byte("\n"))
		if line < 0 || line >= len(lines)-1 || bytes.Equal(lines[line], append(bytes.Clone(repl), '\n')) {
			return
		}
		lines[line] = append(bytes.Clone(repl), '\n')
		if _, err := VerifyBytes(bytes.Join(lines, nil), Options{}); err == nil {
			t.Fatalf("changed line %d verified", line+1)
		}
	})
}

// TestDecodeEventAnyOrder: an event line's members may come in any order;
// a "step" inside data before the event's own does not confuse it.
func TestDecodeEventAnyOrder(t *testing.T) {
	line := []byte(`{"data":{"step":"wrap","error":"x"},"type":"event","seq":1,"time":"2026-11-23T09:00:00Z","step":"failed","prev":"p"}`)
	e, err := decodeEvent(line)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := e.Data.(*events.Failed); !ok || d.StepID != "wrap" || e.Step != "failed" {
		t.Fatalf("read %+v %+v", e, e.Data)
	}
	for _, bad := range []string{
		`{"type":"event","seq":1,"time":"2026-11-23T09:00:00Z","step":"failed","data":null,"prev":"p"}`,
		`{"type":"event","seq":1,"time":"2026-11-23T09:00:00Z","data":{"step":"wrap","error":"x"},"prev":"p"}`,
		`{"type":"header","seq":1,"time":"2026-11-23T09:00:00Z","step":"failed","prev":"p"}`,
	} {
		if _, err := decodeEvent([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"payments-2026":                "payments-2026",
		"typed by operator Zoë Ö":      "typed by operator Zoë Ö",
		"a\nb":                         `a\u000ab`,
		"x\x1b[8my":                    `x\u001b[8my`,
		"tab\there, del\x7f, c1\u0085": `tab\u0009here, del\u007f, c1\u0085`,
		"bidi \u202e override":         `bidi \u202e override`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
