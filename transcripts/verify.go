package transcripts

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyceremony/keyceremony/internal/sshsig"
)

// Class is the kind of a verification failure; each has its own exit code
// in the keyceremony command.
type Class int

// Failure classes, in the order Verify checks them.
const (
	// ClassChain: the transcript is malformed, truncated, of another
	// format, or its hash chain is broken (a line changed, removed,
	// inserted or moved).
	ClassChain Class = iota + 1
	// ClassSignature: the seal's signature does not verify, or the signer
	// is not the pinned key or the key the header names.
	ClassSignature
	// ClassOrder: the events are out of order or inconsistent: a step
	// before the step it depends on, import parameters expired at wrap
	// time, key check values that change, an upload before escrow.
	ClassOrder
	// ClassFile: a file the transcript names is missing or has another
	// SHA-256.
	ClassFile
	// ClassWitness: a required witness signature is missing or does not
	// verify against the allowed signers.
	ClassWitness
	// ClassScript: a step of the ceremony script has no event.
	ClassScript
)

var classNames = map[Class]string{ClassChain: "chain", ClassSignature: "signature", ClassOrder: "order",
	ClassFile: "file", ClassWitness: "witness", ClassScript: "script"}

func (c Class) String() string {
	if s, ok := classNames[c]; ok {
		return s
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// VerifyError is a verification failure: the transcript is not what it
// claims. Line is 1-based; Field names the JSON field that failed.
type VerifyError struct {
	Class    Class
	Line     int
	Field    string
	Expected string
	Found    string
	Reason   string
}

func (e *VerifyError) Error() string {
	s := fmt.Sprintf("transcript line %d: %s", e.Line, e.Reason)
	if e.Line == 0 {
		s = "transcript: " + e.Reason
	}
	if e.Field != "" {
		s = fmt.Sprintf("transcript line %d: field %q: %s", e.Line, e.Field, e.Reason)
	}
	if e.Expected != "" || e.Found != "" {
		s += fmt.Sprintf(" (expected %s, found %s)", orNothing(short(e.Expected)), orNothing(short(e.Found)))
	}
	return s
}

func orNothing(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

func chainErr(line int, field, reason, expected, found string) *VerifyError {
	return &VerifyError{Class: ClassChain, Line: line, Field: field, Reason: reason, Expected: expected, Found: found}
}

// Result is what a verified transcript says.
type Result struct {
	Header Header
	// EventCount is the number of events between header and seal.
	EventCount int
	// Events are the decoded events, when Options.DecodeEvents was set (as
	// Verify does). VerifyBytes otherwise reads only the fields it checks,
	// to stay near the cost of hashing the file.
	Events []Event
	Seal   Seal
	// Payload is the seal payload the signature covers.
	Payload []byte
	// Pinned reports whether the signer was checked against a caller's key.
	Pinned bool
	// Files lists the files the transcript names, and whether they were
	// checked (Options.Files).
	Files        []FileRef
	FilesChecked bool
	// Witnesses lists the witness signatures that verified.
	Witnesses []Witness

	lines    [][]byte
	stepNos  map[int]bool
	orderErr error
}

// eventAt returns the i-th event (0-based); line i+2 of the transcript.

// decodeEvents decodes every event line fully.
func (r *Result) decodeEvents() error {
	r.Events = make([]Event, r.EventCount)
	for i := range r.Events {
		if err := strict(r.lines[i+1], &r.Events[i]); err != nil {
			return chainErr(i+2, "", "malformed event: "+err.Error(), "", "")
		}
	}
	return nil
}

// FileRef is a file an event names with its SHA-256.
type FileRef struct {
	Line   int    `json:"line"`
	Name   string `json:"file"`
	SHA256 string `json:"sha256"`
	// Optional files may be absent from the evidence: the share files,
	// which their custodians take away. One that is there must match.
	Optional bool `json:"optional,omitempty"`
	// Absent reports an optional file that was not there when checked.
	Absent bool `json:"absent,omitempty"`
}

// shareFileRE is the name keyceremony gives a custodian's share file.
var shareFileRE = regexp.MustCompile(`^share-[0-9]+-[A-Za-z0-9][A-Za-z0-9._-]*\.age$`)

// Witness is a verified witness signature.
type Witness struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"` // OpenSSH SHA256:...
}

// WitnessSignature is a witness's armoured SSH signature of the seal
// payload, and the principal it claims (from its file name).
type WitnessSignature struct {
	Name      string
	Signature []byte
}

// Options says what Verify checks beyond the chain and the signature.
type Options struct {
	// PublicKey, or else Fingerprint (hex SHA-256 of the DER public key),
	// pins the signer.
	PublicKey   *ecdsa.PublicKey
	Fingerprint string
	// Files, when not nil, holds the files the transcript names; each must
	// be there with the SHA-256 the transcript records.
	Files fs.FS
	// AllowedSigners, when not nil, checks Witnesses: each must verify and
	// its name must be allowed to sign with its key.
	AllowedSigners sshsig.AllowedSigners
	Witnesses      []WitnessSignature
	// RequireWitnesses lists names that must have signed.
	RequireWitnesses []string
	// DecodeEvents fills Result.Events.
	DecodeEvents bool
}

// Verify checks a transcript as [VerifyBytes] does and, when pub is not nil,
// that the signer is pub; it decodes every event into Result.Events.
func Verify(r io.Reader, pub *ecdsa.PublicKey) (*Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("failed to read transcript: %w", err)
	}
	return VerifyBytes(data, Options{PublicKey: pub, DecodeEvents: true})
}

// VerifyBytes checks a transcript, in this order: the format and hash chain
// of every line (ClassChain), the seal's signature and signer (ClassSignature),
// the order and consistency of the events (ClassOrder), the files it names
// (ClassFile, with opts.Files), the witness signatures (ClassWitness, with
// opts.AllowedSigners) and that every step of the ceremony script has an
// event (ClassScript). Failures are *VerifyError naming the first failure;
// other errors are operational.
func VerifyBytes(data []byte, opts Options) (*Result, error) {
	if len(data) == 0 {
		return nil, chainErr(1, "", "transcript is empty", "", "")
	}
	if data[len(data)-1] != '\n' {
		n := bytes.Count(data, []byte{'\n'}) + 1
		return nil, chainErr(n, "", "last line is not terminated by a newline: the transcript is truncated", "", "")
	}
	lines := splitLines(data)
	res := &Result{lines: lines, stepNos: map[int]bool{}}
	p := startReaders(lines)
	defer p.stop()
	oc := newOrderChecker()
	var prevHash, lastHash [sha256.Size]byte
	for c := range p.chunks {
		buf := p.next(c)
		lo := c * chunkLines
		for j := range min(chunkLines, len(lines)-lo) {
			lr := &buf[j]
			n := lo + j + 1
			if lr.err == nil {
				// A broken link is the first failure: a changed line first
				// shows as the next line's prev.
				var hx [2 * sha256.Size]byte
				if n > 1 {
					hex.Encode(hx[:], prevHash[:])
				} else {
					copy(hx[:], zeroHash)
				}
				if string(lr.prev) != string(hx[:]) {
					return nil, chainErr(n, "prev", fmt.Sprintf("does not match the hash of line %d: line %d was changed, or lines were removed, inserted or reordered here", n-1, n-1), string(hx[:]), string(lr.prev))
				}
				lr.err = structure(n, lr, len(lines), res)
			}
			if lr.err != nil {
				return nil, lr.err
			}
			lastHash, prevHash = prevHash, lr.hash
			switch lr.typ {
			case "header":
				res.Header = *lr.hdr
				oc.script(res.Header.Script)
			case "seal":
				res.Seal = *lr.seal
			case "event":
				e := &lr.ev
				if res.orderErr == nil {
					if err := oc.event(n, e); err != nil {
						res.orderErr = err
					}
				}
				res.stepNos[e.stepNo] = true
				res.Files = append(res.Files, lr.refs...)
			}
		}
		p.done(c, buf)
	}
	if res.Seal.Type == "" {
		return nil, chainErr(len(lines), "", "transcript has no seal: the ceremony did not finish or the seal was removed", "", "")
	}
	sealLine := len(lines)
	if err := checkSeal(sealLine, res, hex.EncodeToString(lastHash[:]), &opts); err != nil {
		return nil, err
	}
	if res.orderErr != nil {
		return nil, res.orderErr
	}
	if opts.Files != nil {
		if err := checkFiles(opts.Files, res.Files); err != nil {
			return nil, err
		}
		res.FilesChecked = true
	}
	if opts.AllowedSigners != nil || len(opts.RequireWitnesses) > 0 {
		if err := checkWitnesses(res, &opts); err != nil {
			return nil, err
		}
	}
	if err := checkScript(res); err != nil {
		return nil, err
	}
	if opts.DecodeEvents {
		if err := res.decodeEvents(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func splitLines(data []byte) [][]byte {
	// One pass: a guess at the line count instead of counting first.
	lines := make([][]byte, 0, len(data)/256+1)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		lines = append(lines, data[:i])
		data = data[i+1:]
	}
	return lines
}

var eventPrefix = []byte(`{"type":"event",`)

// chunkLines is how many lines a reader hashes and reads at a time.
const chunkLines = 128

// lineResult is what a reader learns from one line.
type lineResult struct {
	typ  string
	prev []byte
	hash [sha256.Size]byte
	ev   eventInfo
	hdr  *Header
	seal *Seal
	refs []FileRef
	err  *VerifyError
}

// readers hash and read the lines in chunks on every CPU: chunk c goes to
// reader c % len(out), which hands its results over in order. Each reader
// cycles through a few buffers, so memory stays small however long the
// transcript.
type readers struct {
	chunks int
	out    []chan []lineResult
	free   []chan []lineResult
	quit   chan struct{}
	wg     sync.WaitGroup
}

func startReaders(lines [][]byte) *readers {
	p := &readers{chunks: (len(lines) + chunkLines - 1) / chunkLines, quit: make(chan struct{})}
	workers := max(1, min(runtime.GOMAXPROCS(0), p.chunks))
	for w := range workers {
		out, free := make(chan []lineResult, 2), make(chan []lineResult, 3)
		for range cap(free) {
			free <- make([]lineResult, chunkLines)
		}
		p.out, p.free = append(p.out, out), append(p.free, free)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for c := w; c < p.chunks; c += workers {
				var buf []lineResult
				select {
				case buf = <-free:
				case <-p.quit:
					return
				}
				lo := c * chunkLines
				for j := range min(chunkLines, len(lines)-lo) {
					readLine(lo+j+1, lines[lo+j], &buf[j])
				}
				select {
				case out <- buf:
				case <-p.quit:
					return
				}
			}
		}()
	}
	return p
}

func (p *readers) next(c int) []lineResult { return <-p.out[c%len(p.out)] }

func (p *readers) done(c int, buf []lineResult) { p.free[c%len(p.out)] <- buf }

func (p *readers) stop() {
	close(p.quit)
	p.wg.Wait()
}

// readLine hashes and reads line n into lr.
func readLine(n int, line []byte, lr *lineResult) {
	*lr = lineResult{hash: sha256.Sum256(line)}
	typ := "event"
	if !bytes.HasPrefix(line, eventPrefix) {
		var probe struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			lr.err = chainErr(n, "", "not a JSON object: "+err.Error(), "", "")
			return
		}
		typ = probe.Type
	}
	lr.typ = typ
	var err error
	switch typ {
	case "header":
		lr.hdr = new(Header)
		if err = strict(line, lr.hdr); err == nil {
			lr.prev = []byte(lr.hdr.Prev)
		}
	case "event":
		if err = scanEvent(line, &lr.ev); err == nil {
			lr.prev = lr.ev.prev
			lr.ev.parseTimes()
			lr.refs = appendFileRefs(nil, n, &lr.ev)
		}
	case "seal":
		lr.seal = new(Seal)
		if err = strict(line, lr.seal); err == nil {
			lr.prev = []byte(lr.seal.Prev)
		}
	default:
		var probe struct {
			Prev string `json:"prev"`
		}
		_ = json.Unmarshal(line, &probe)
		lr.prev = []byte(probe.Prev)
	}
	if err != nil {
		lr.err = chainErr(n, "", "malformed "+typ+": "+err.Error(), "", "")
	}
}

// structure checks what line n of total says and where it stands.
func structure(n int, lr *lineResult, total int, res *Result) *VerifyError {
	switch {
	case n == 1 && lr.typ != "header":
		return chainErr(n, "type", "first line must be the header", "header", lr.typ)
	case lr.typ == "header":
		if n != 1 {
			return chainErr(n, "type", "second header", "event or seal", lr.typ)
		}
		if lr.hdr.Format != Format {
			reason := "unsupported transcript format"
			if lr.hdr.Format == "keyceremony/transcript/v0" {
				reason = "v0 transcripts are not verified by this version (v0 was never released): check its seal with openssl as its README says"
			}
			return chainErr(n, "format", reason, Format, lr.hdr.Format)
		}
	case lr.typ == "event":
		if lr.ev.seq != res.EventCount+1 {
			return chainErr(n, "seq", "events out of order", fmt.Sprint(res.EventCount+1), fmt.Sprint(lr.ev.seq))
		}
		res.EventCount++
	case lr.typ == "seal":
		if n != total {
			return chainErr(n+1, "", "line after the seal", "", "")
		}
		if lr.seal.Seq != res.EventCount+1 {
			return chainErr(n, "seq", "seal out of order", fmt.Sprint(res.EventCount+1), fmt.Sprint(lr.seal.Seq))
		}
	default:
		return chainErr(n, "type", "unknown line type", "event or seal", lr.typ)
	}
	return nil
}

func checkSeal(n int, res *Result, last string, opts *Options) error {
	s := &res.Seal
	sigErr := func(field, reason, expected, found string) error {
		return &VerifyError{Class: ClassSignature, Line: n, Field: field, Reason: reason, Expected: expected, Found: found}
	}
	// No later line hashes the seal line, so it must be exactly as the
	// writer encodes it: otherwise a changed byte that decodes to the same
	// values (base64 padding bits, spacing) would go unnoticed.
	if canon, err := json.Marshal(s); err != nil || !bytes.Equal(canon, res.lines[n-1]) {
		return chainErr(n, "", "seal line is not in canonical form (as keyceremony writes it): it was edited", "", "")
	}
	if s.Algorithm != SealAlgorithm {
		return sigErr("algorithm", "unsupported signature algorithm", SealAlgorithm, s.Algorithm)
	}
	k, err := x509.ParsePKIXPublicKey(s.PublicKey)
	if err != nil {
		return sigErr("public_key", "not a public key: "+err.Error(), "", "")
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return sigErr("public_key", "not an ECDSA P-256 key", "", "")
	}
	fp := Fingerprint(s.PublicKey)
	if fp != s.Fingerprint {
		return sigErr("fingerprint", "does not match public_key", fp, s.Fingerprint)
	}
	if hk := res.Header.SigningKey; hk != nil {
		if Fingerprint(hk.PublicKey) != hk.Fingerprint {
			return &VerifyError{Class: ClassSignature, Line: 1, Field: "signing_key.fingerprint", Reason: "does not match signing_key.public_key", Expected: Fingerprint(hk.PublicKey), Found: hk.Fingerprint}
		}
		if hk.Fingerprint != fp {
			return sigErr("public_key", "sealed by another key than the header's signing_key", hk.Fingerprint, fp)
		}
	}
	if opts.PublicKey != nil {
		want, err := x509.MarshalPKIXPublicKey(opts.PublicKey)
		if err != nil {
			return fmt.Errorf("failed to encode the pinned key: %w", err)
		}
		if wfp := Fingerprint(want); wfp != fp {
			return sigErr("public_key", "signed by another key than the pinned one", wfp, fp)
		}
		res.Pinned = true
	}
	if opts.Fingerprint != "" {
		want := strings.ToLower(strings.ReplaceAll(opts.Fingerprint, ":", ""))
		if want != fp {
			return sigErr("fingerprint", "signed by another key than the pinned one", want, fp)
		}
		res.Pinned = true
	}
	res.Payload = SealPayload(res.Header.CeremonyID, n-1, last, fp)
	digest := sha256.Sum256(res.Payload)
	if got := hex.EncodeToString(digest[:]); got != s.PayloadHash {
		return sigErr("payload_sha256", "does not match the seal payload", got, s.PayloadHash)
	}
	if w := Words(digest[:WordCount]); w != s.Words {
		return sigErr("words", "do not match payload_sha256", w, s.Words)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], s.Signature) {
		return sigErr("signature", "signature does not verify", "", "")
	}
	return nil
}

// short shortens a long hex value for a message; the VerifyError keeps it
// whole for --json.
func short(h string) string {
	if len(h) > 16 && strings.Trim(h, "0123456789abcdef") == "" {
		return h[:16] + "…"
	}
	return h
}

func strict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// SignedPayload returns the seal payload of a sealed transcript: the bytes
// the seal's signature covers. It does not verify the transcript.
func SignedPayload(transcript []byte) ([]byte, error) {
	res, err := VerifyBytes(transcript, Options{})
	if err != nil {
		return nil, err
	}
	return res.Payload, nil
}

// ---- order and consistency ----

type labelState struct {
	generated, escrowed, wrapped, imported bool
	kcv                                    string
	kcvLine                                int
	paramsValidTo                          time.Time
	paramsLine                             int
}

// orderChecker checks, event by event, that events follow the script's
// order and that what they say about each key agrees: generate-key, then
// (escrow), then wrap with unexpired parameters, then import, then
// check-import, with one key check value throughout.
type orderChecker struct {
	escrowInScript, escrowAll bool
	labels                    map[string]*labelState
	lastNo, lastNoLine        int
}

func newOrderChecker() *orderChecker {
	return &orderChecker{labels: map[string]*labelState{}}
}

func (c *orderChecker) script(steps []ScriptStep) {
	c.escrowInScript = slices.ContainsFunc(steps, func(s ScriptStep) bool { return s.ID == "escrow" })
}

func (c *orderChecker) get(l []byte) *labelState {
	ls := c.labels[string(l)]
	if ls == nil {
		ls = &labelState{}
		c.labels[string(l)] = ls
	}
	return ls
}

func (c *orderChecker) event(line int, e *eventInfo) error {
	orderErr := func(field, reason, expected, found string) error {
		return &VerifyError{Class: ClassOrder, Line: line, Field: field, Reason: reason, Expected: expected, Found: found}
	}
	if e.step == "resume" {
		// A ceremony resumed after its process died runs its steps again
		// from the first, skipping what the transcript shows done.
		c.lastNo = 0
	}
	if e.stepNo != 0 {
		if e.stepNo < c.lastNo {
			return orderErr("step_no", fmt.Sprintf("event of script step %d after an event of step %d (line %d)", e.stepNo, c.lastNo, c.lastNoLine), fmt.Sprintf("%d or more", c.lastNo), fmt.Sprint(e.stepNo))
		}
		c.lastNo, c.lastNoLine = e.stepNo, line
	}
	label := e.label
	checkKCV := func(ls *labelState) error {
		if len(e.kcv) == 0 {
			return nil
		}
		if ls.kcv == "" {
			ls.kcv, ls.kcvLine = string(e.kcv), line
			return nil
		}
		if string(e.kcv) != ls.kcv {
			return orderErr("data.key_check_value", fmt.Sprintf("key check value of %q differs from line %d", label, ls.kcvLine), ls.kcv, string(e.kcv))
		}
		return nil
	}
	switch e.step {
	case "generate-key":
		ls := c.get(label)
		if ls.wrapped || ls.imported {
			return orderErr("step", fmt.Sprintf("key %q generated after it was wrapped or imported", label), "generate-key first", e.step)
		}
		ls.generated = true
		return checkKCV(ls)
	case "key":
		// An air-gap wrap names the existing key it wraps.
		return checkKCV(c.get(label))
	case "fetch-params", "params":
		if e.step == "params" && len(e.validTo) == 0 {
			return nil
		}
		ls := c.get(label)
		vt, err := e.validAt, e.validErr
		if err != nil {
			return orderErr("data.parameters_valid_to", "not an RFC 3339 time", "a time", string(e.validTo))
		}
		ls.paramsValidTo, ls.paramsLine = vt, line
	case "escrow":
		switch {
		case len(label) > 0:
			c.get(label).escrowed = true
		case e.labels != nil:
			ls, _ := e.labels.([]any)
			for _, l := range ls {
				if s, ok := l.(string); ok {
					c.get([]byte(s)).escrowed = true
				}
			}
		case e.keys != nil:
			// "keys": [{"label", "key_check_value", ...}]: each key escrowed
			// must be the key generated.
			ks, _ := e.keys.([]any)
			for _, k := range ks {
				m, _ := k.(map[string]any)
				l, _ := m["label"].(string)
				kcv, _ := m["key_check_value"].(string)
				ls := c.get([]byte(l))
				ls.escrowed = true
				if kcv != "" && ls.kcv != "" && kcv != ls.kcv {
					return orderErr("data.keys.key_check_value", fmt.Sprintf("escrowed key %q has another key check value than line %d", l, ls.kcvLine), ls.kcv, kcv)
				}
			}
		default:
			// An escrow must say which keys it holds.
			return orderErr("data", "escrow event names no key (label, labels or keys)", "the escrowed keys", "none")
		}
		if q := e.quorum; e.hasQuorum && q != true && q != "ok" && q != "passed" {
			return orderErr("data.quorum_check", "escrow quorum check did not pass", "ok", fmt.Sprint(q))
		}
	case "wrap":
		ls := c.get(label)
		if ls.imported {
			return orderErr("step", fmt.Sprintf("key %q wrapped after it was imported", label), "wrap before import", e.step)
		}
		if !ls.paramsValidTo.IsZero() {
			t, err := e.at, e.atErr
			if err != nil {
				return orderErr("time", "not an RFC 3339 time", "a time", string(e.time))
			}
			if !t.Before(ls.paramsValidTo) {
				return orderErr("time", fmt.Sprintf("import parameters of %q (line %d) had expired when the key was wrapped", label, ls.paramsLine), "before "+ls.paramsValidTo.Format(time.RFC3339), t.Format(time.RFC3339))
			}
		}
		ls.wrapped = true
		return checkKCV(ls)
	case "import", "upload":
		ls := c.get(label)
		if c.escrowInScript && !ls.escrowed && !c.escrowAll {
			return orderErr("step", fmt.Sprintf("key %q uploaded before its escrow was proven", label), "escrow event first", e.step)
		}
		if ls.generated && !ls.wrapped {
			return orderErr("step", fmt.Sprintf("key %q imported before it was wrapped", label), "wrap first", e.step)
		}
		ls.imported = true
		return checkKCV(ls)
	case "check-import":
		if ls := c.get(label); !ls.imported {
			return orderErr("step", fmt.Sprintf("key %q checked in KMS before it was imported", label), "import first", e.step)
		}
	}
	return nil
}

// ---- files ----

// appendFileRefs collects the files an event names: "file" with
// "file_sha256", and "files": [{"file", "sha256"}, ...].
func appendFileRefs(out []FileRef, line int, e *eventInfo) []FileRef {
	if len(e.file) > 0 && len(e.fileSHA) > 0 {
		out = append(out, FileRef{Line: line, Name: string(e.file), SHA256: string(e.fileSHA)})
	}
	fs, _ := e.files.([]any)
	for _, x := range fs {
		m, _ := x.(map[string]any)
		f, _ := m["file"].(string)
		h, _ := m["sha256"].(string)
		if f != "" && h != "" {
			out = append(out, FileRef{Line: line, Name: f, SHA256: h, Optional: shareFileRE.MatchString(f)})
		}
	}
	return out
}

func checkFiles(fsys fs.FS, refs []FileRef) error {
	for i, r := range refs {
		b, err := fs.ReadFile(fsys, r.Name)
		if r.Optional && errors.Is(err, fs.ErrNotExist) {
			refs[i].Absent = true
			continue
		}
		if err != nil {
			return &VerifyError{Class: ClassFile, Line: r.Line, Field: "file", Reason: fmt.Sprintf("file %s named by the transcript cannot be read: %v", r.Name, err), Expected: r.SHA256, Found: "no file"}
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != r.SHA256 {
			return &VerifyError{Class: ClassFile, Line: r.Line, Field: "sha256", Reason: fmt.Sprintf("file %s is not the file the transcript names: it was replaced or changed", r.Name), Expected: r.SHA256, Found: got}
		}
	}
	return nil
}

// ---- witnesses ----

func checkWitnesses(res *Result, opts *Options) error {
	n := res.EventCount + 2
	seen := map[string]bool{}
	for _, w := range opts.Witnesses {
		werr := func(reason string) error {
			return &VerifyError{Class: ClassWitness, Line: n, Field: "witness " + w.Name, Reason: reason}
		}
		sig, err := sshsig.Parse(w.Signature)
		if err != nil {
			return werr("witness signature is unreadable: " + err.Error())
		}
		if err := sig.Verify(WitnessNamespace, res.Payload); err != nil {
			return werr("witness signature does not verify over this transcript's seal payload: " + err.Error())
		}
		if !opts.AllowedSigners.Allows(w.Name, sig.PublicKey, WitnessNamespace) {
			return &VerifyError{Class: ClassWitness, Line: n, Field: "witness " + w.Name, Reason: "witness key is not allowed for this name in the allowed signers file", Expected: "a key listed for " + w.Name, Found: sshsig.Fingerprint(sig.PublicKey)}
		}
		seen[w.Name] = true
		res.Witnesses = append(res.Witnesses, Witness{Name: w.Name, Fingerprint: sshsig.Fingerprint(sig.PublicKey)})
	}
	for _, name := range opts.RequireWitnesses {
		if !seen[name] {
			return &VerifyError{Class: ClassWitness, Line: n, Field: "witness " + name, Reason: "required witness signature is missing", Expected: "a signature by " + name, Found: ""}
		}
	}
	if len(opts.Witnesses) == 0 {
		return &VerifyError{Class: ClassWitness, Line: n, Reason: "no witness signature found", Expected: "at least one witness-NAME.sig", Found: ""}
	}
	return nil
}

// ---- script ----

func checkScript(res *Result) error {
	var missing []string
	var nos []string
	for _, s := range res.Header.Script {
		if !res.stepNos[s.No] {
			missing = append(missing, fmt.Sprintf("%d (%s: %s)", s.No, s.ID, s.Title))
			nos = append(nos, fmt.Sprint(s.No))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &VerifyError{Class: ClassScript, Line: 1, Field: "script", Reason: "the transcript has no event for script step " + strings.Join(missing, ", "),
		Expected: "events with step_no " + strings.Join(nos, ", "), Found: ""}
}
