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
		s += fmt.Sprintf(" (expected %s, found %s)", orNothing(e.Expected), orNothing(e.Found))
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

	lines []parsedLine
}

// eventAt returns the i-th event (0-based); line i+2 of the transcript.
func (r *Result) eventAt(i int) *eventInfo { return &r.lines[i+1].event }

// decodeEvents decodes every event line fully.
func (r *Result) decodeEvents() error {
	r.Events = make([]Event, r.EventCount)
	for i := range r.Events {
		if err := strict(r.eventAt(i).line, &r.Events[i]); err != nil {
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
}

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
	parsed, err := parseLines(lines)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	for i := range parsed {
		p := &parsed[i]
		n := i + 1
		if n > 1 && !p.prevMatches(&parsed[i-1].hash) || n == 1 && string(p.prev) != zeroHash {
			return nil, prevErr(parsed, i)
		}
		switch {
		case n == 1:
			if p.typ != "header" {
				return nil, chainErr(n, "type", "first line must be the header", "header", p.typ)
			}
			res.Header = *p.header
		case p.typ == "event":
			if p.event.seq != res.EventCount+1 {
				return nil, chainErr(n, "seq", "events out of order", fmt.Sprint(res.EventCount+1), fmt.Sprint(p.event.seq))
			}
			res.EventCount++
		case p.typ == "seal":
			if n != len(parsed) {
				return nil, chainErr(n+1, "", "line after the seal", "", "")
			}
			res.Seal = *p.seal
			if res.Seal.Seq != res.EventCount+1 {
				return nil, chainErr(n, "seq", "seal out of order", fmt.Sprint(res.EventCount+1), fmt.Sprint(res.Seal.Seq))
			}
		case p.typ == "header":
			return nil, chainErr(n, "type", "second header", "event or seal", p.typ)
		default:
			return nil, chainErr(n, "type", "unknown line type", "event or seal", p.typ)
		}
	}
	if res.Seal.Type == "" {
		return nil, chainErr(len(parsed), "", "transcript has no seal: the ceremony did not finish or the seal was removed", "", "")
	}
	sealLine := len(parsed)
	res.lines = parsed
	if err := checkSeal(sealLine, res, hex.EncodeToString(parsed[sealLine-2].hash[:]), &opts); err != nil {
		return nil, err
	}
	if err := checkOrder(res); err != nil {
		return nil, err
	}
	res.Files = fileRefs(res)
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
	lines := make([][]byte, 0, bytes.Count(data, []byte{'\n'}))
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		lines = append(lines, data[:i])
		data = data[i+1:]
	}
	return lines
}

type parsedLine struct {
	raw    []byte
	typ    string
	prev   []byte
	hash   [sha256.Size]byte
	header *Header
	event  eventInfo
	seal   *Seal
	err    *VerifyError
}

func (p *parsedLine) prevMatches(h *[sha256.Size]byte) bool {
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], h[:])
	return string(hx[:]) == string(p.prev)
}

// prevErr describes the broken link at parsed[i].
func prevErr(parsed []parsedLine, i int) error {
	want := zeroHash
	if i > 0 {
		want = hex.EncodeToString(parsed[i-1].hash[:])
	}
	return chainErr(i+1, "prev", fmt.Sprintf("does not match the hash of line %d: line %d was changed, or lines were removed, inserted or reordered here", i, i), short(want), short(string(parsed[i].prev)))
}

var eventPrefix = []byte(`{"type":"event",`)

// parseLines hashes and reads every line. Lines are independent until their
// hashes are compared, so the work is spread over the CPUs.
func parseLines(lines [][]byte) ([]parsedLine, error) {
	out := make([]parsedLine, len(lines))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(lines)/512))
	var wg sync.WaitGroup
	chunk := (len(lines) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(lines))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				parseLine(i+1, lines[i], &out[i])
				if out[i].err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	// Report the first line that failed, but if the chain breaks before it,
	// report that: a changed line first shows as the next line's prev.
	for i := range out {
		if out[i].err == nil {
			continue
		}
		for j := 0; j < i; j++ {
			if j > 0 && !out[j].prevMatches(&out[j-1].hash) || j == 0 && string(out[j].prev) != zeroHash {
				return nil, prevErr(out, j)
			}
		}
		return nil, out[i].err
	}
	return out, nil
}

func parseLine(n int, line []byte, p *parsedLine) {
	p.hash = sha256.Sum256(line)
	p.raw = line
	if bytes.HasPrefix(line, eventPrefix) {
		p.typ = "event"
	} else {
		var probe struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			p.err = chainErr(n, "", "not a JSON object: "+err.Error(), "", "")
			return
		}
		p.typ = probe.Type
	}
	var err error
	switch p.typ {
	case "header":
		p.header = new(Header)
		if err = strict(line, p.header); err == nil {
			p.prev = []byte(p.header.Prev)
			if p.header.Format != Format {
				reason := "unsupported transcript format"
				if p.header.Format == "keyceremony/transcript/v0" {
					reason = "v0 transcripts are not verified by this version (v0 was never released): check its seal with openssl as its README says"
				}
				p.err = chainErr(n, "format", reason, Format, p.header.Format)
			}
		}
	case "event":
		if err = scanEvent(line, &p.event); err == nil {
			p.prev = p.event.prev
		}
	case "seal":
		p.seal = new(Seal)
		if err = strict(line, p.seal); err == nil {
			p.prev = []byte(p.seal.Prev)
		}
	default:
		var probe struct {
			Prev string `json:"prev"`
		}
		_ = json.Unmarshal(line, &probe)
		p.prev = []byte(probe.Prev)
	}
	if err != nil {
		p.err = chainErr(n, "", "malformed "+p.typ+": "+err.Error(), "", "")
	}
}

func checkSeal(n int, res *Result, last string, opts *Options) error {
	s := &res.Seal
	sigErr := func(field, reason, expected, found string) error {
		return &VerifyError{Class: ClassSignature, Line: n, Field: field, Reason: reason, Expected: expected, Found: found}
	}
	// No later line hashes the seal line, so it must be exactly as the
	// writer encodes it: otherwise a changed byte that decodes to the same
	// values (base64 padding bits, spacing) would go unnoticed.
	if canon, err := json.Marshal(s); err != nil || !bytes.Equal(canon, res.lines[n-1].raw) {
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
		return sigErr("fingerprint", "does not match public_key", short(fp), short(s.Fingerprint))
	}
	if hk := res.Header.SigningKey; hk != nil {
		if Fingerprint(hk.PublicKey) != hk.Fingerprint {
			return &VerifyError{Class: ClassSignature, Line: 1, Field: "signing_key.fingerprint", Reason: "does not match signing_key.public_key", Expected: short(Fingerprint(hk.PublicKey)), Found: short(hk.Fingerprint)}
		}
		if hk.Fingerprint != fp {
			return sigErr("public_key", "sealed by another key than the header's signing_key", short(hk.Fingerprint), short(fp))
		}
	}
	if opts.PublicKey != nil {
		want, err := x509.MarshalPKIXPublicKey(opts.PublicKey)
		if err != nil {
			return fmt.Errorf("failed to encode the pinned key: %w", err)
		}
		if wfp := Fingerprint(want); wfp != fp {
			return sigErr("public_key", "signed by another key than the pinned one", short(wfp), short(fp))
		}
		res.Pinned = true
	}
	if opts.Fingerprint != "" {
		want := strings.ToLower(strings.ReplaceAll(opts.Fingerprint, ":", ""))
		if want != fp {
			return sigErr("fingerprint", "signed by another key than the pinned one", short(want), short(fp))
		}
		res.Pinned = true
	}
	res.Payload = SealPayload(res.Header.CeremonyID, n-1, last, fp)
	digest := sha256.Sum256(res.Payload)
	if got := hex.EncodeToString(digest[:]); got != s.PayloadHash {
		return sigErr("payload_sha256", "does not match the seal payload", short(got), short(s.PayloadHash))
	}
	if w := Words(digest[:WordCount]); w != s.Words {
		return sigErr("words", "do not match payload_sha256", w, s.Words)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], s.Signature) {
		return sigErr("signature", "signature does not verify", "", "")
	}
	return nil
}

func short(h string) string {
	if len(h) > 16 {
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

// checkOrder checks that events follow the script's order and that what
// they say about each key agrees: generate-key, then (escrow), then wrap
// with unexpired parameters, then import, then check-import, with one key
// check value throughout.
func checkOrder(res *Result) error {
	orderErr := func(line int, field, reason, expected, found string) error {
		return &VerifyError{Class: ClassOrder, Line: line, Field: field, Reason: reason, Expected: expected, Found: found}
	}
	escrowInScript := slices.ContainsFunc(res.Header.Script, func(s ScriptStep) bool { return s.ID == "escrow" })
	labels := map[string]*labelState{}
	get := func(l string) *labelState {
		if labels[l] == nil {
			labels[l] = &labelState{}
		}
		return labels[l]
	}
	escrowAll := false
	lastNo, lastNoLine := 0, 0
	for i := range res.EventCount {
		e := res.eventAt(i)
		line := i + 2
		if e.stepNo != 0 {
			if e.stepNo < lastNo {
				return orderErr(line, "step_no", fmt.Sprintf("event of script step %d after an event of step %d (line %d)", e.stepNo, lastNo, lastNoLine), fmt.Sprintf("%d or more", lastNo), fmt.Sprint(e.stepNo))
			}
			lastNo, lastNoLine = e.stepNo, line
		}
		label := e.label
		checkKCV := func(ls *labelState) error {
			if e.kcv == "" {
				return nil
			}
			if ls.kcv == "" {
				ls.kcv, ls.kcvLine = e.kcv, line
				return nil
			}
			if e.kcv != ls.kcv {
				return orderErr(line, "data.key_check_value", fmt.Sprintf("key check value of %q differs from line %d", label, ls.kcvLine), ls.kcv, e.kcv)
			}
			return nil
		}
		switch e.step {
		case "generate-key":
			ls := get(label)
			if ls.wrapped || ls.imported {
				return orderErr(line, "step", fmt.Sprintf("key %q generated after it was wrapped or imported", label), "generate-key first", e.step)
			}
			ls.generated = true
			if err := checkKCV(ls); err != nil {
				return err
			}
		case "fetch-params":
			ls := get(label)
			vt, err := time.Parse(time.RFC3339Nano, e.validTo)
			if err != nil {
				return orderErr(line, "data.parameters_valid_to", "not an RFC 3339 time", "a time", e.validTo)
			}
			ls.paramsValidTo, ls.paramsLine = vt, line
		case "escrow":
			switch {
			case label != "":
				get(label).escrowed = true
			case e.labels != nil:
				ls, _ := e.labels.([]any)
				for _, l := range ls {
					if s, ok := l.(string); ok {
						get(s).escrowed = true
					}
				}
			default:
				escrowAll = true
			}
			if q := e.quorum; e.hasQuorum && q != true && q != "ok" && q != "passed" {
				return orderErr(line, "data.quorum_check", "escrow quorum check did not pass", "ok", fmt.Sprint(q))
			}
		case "wrap":
			ls := get(label)
			if ls.imported {
				return orderErr(line, "step", fmt.Sprintf("key %q wrapped after it was imported", label), "wrap before import", e.step)
			}
			if !ls.paramsValidTo.IsZero() {
				t, err := time.Parse(time.RFC3339Nano, string(e.time))
				if err != nil {
					return orderErr(line, "time", "not an RFC 3339 time", "a time", string(e.time))
				}
				if !t.Before(ls.paramsValidTo) {
					return orderErr(line, "time", fmt.Sprintf("import parameters of %q (line %d) had expired when the key was wrapped", label, ls.paramsLine), "before "+ls.paramsValidTo.Format(time.RFC3339), t.Format(time.RFC3339))
				}
			}
			ls.wrapped = true
			if err := checkKCV(ls); err != nil {
				return err
			}
		case "import", "upload":
			ls := get(label)
			if escrowInScript && !ls.escrowed && !escrowAll {
				return orderErr(line, "step", fmt.Sprintf("key %q uploaded before its escrow was proven", label), "escrow event first", e.step)
			}
			if ls.generated && !ls.wrapped {
				return orderErr(line, "step", fmt.Sprintf("key %q imported before it was wrapped", label), "wrap first", e.step)
			}
			ls.imported = true
			if err := checkKCV(ls); err != nil {
				return err
			}
		case "check-import":
			if ls := get(label); !ls.imported {
				return orderErr(line, "step", fmt.Sprintf("key %q checked in KMS before it was imported", label), "import first", e.step)
			}
		}
	}
	return nil
}

// ---- files ----

// fileRefs collects the files events name: "file" with "file_sha256", and
// "files": [{"file", "sha256"}, ...].
func fileRefs(res *Result) []FileRef {
	var out []FileRef
	for i := range res.EventCount {
		e := res.eventAt(i)
		if e.file != "" && e.fileSHA != "" {
			out = append(out, FileRef{Line: i + 2, Name: e.file, SHA256: e.fileSHA})
		}
		fs, _ := e.files.([]any)
		for _, x := range fs {
			m, _ := x.(map[string]any)
			f, _ := m["file"].(string)
			h, _ := m["sha256"].(string)
			if f != "" && h != "" {
				out = append(out, FileRef{Line: i + 2, Name: f, SHA256: h})
			}
		}
	}
	return out
}

func checkFiles(fsys fs.FS, refs []FileRef) error {
	for _, r := range refs {
		b, err := fs.ReadFile(fsys, r.Name)
		if err != nil {
			return &VerifyError{Class: ClassFile, Line: r.Line, Field: "file", Reason: fmt.Sprintf("file %s named by the transcript cannot be read: %v", r.Name, err), Expected: short(r.SHA256), Found: "no file"}
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != r.SHA256 {
			return &VerifyError{Class: ClassFile, Line: r.Line, Field: "sha256", Reason: fmt.Sprintf("file %s is not the file the transcript names: it was replaced or changed", r.Name), Expected: short(r.SHA256), Found: short(got)}
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
	have := map[int]bool{}
	for i := range res.EventCount {
		have[res.eventAt(i).stepNo] = true
	}
	for _, s := range res.Header.Script {
		if !have[s.No] {
			return &VerifyError{Class: ClassScript, Line: 1, Field: "script", Reason: fmt.Sprintf("script step %d (%s: %s) has no event in the transcript", s.No, s.ID, s.Title), Expected: fmt.Sprintf("an event with step_no %d", s.No), Found: ""}
		}
	}
	return nil
}
