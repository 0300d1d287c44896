package transcripts

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/keyceremony/keyceremony/internal/sshsig"
	"github.com/keyceremony/keyceremony/internal/strictjson"
	"github.com/keyceremony/keyceremony/transcripts/events"
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
	// Events are the events that count, in order; Void the void ones (see
	// Void events), which verify checks only as lines of the chain.
	Events []Event
	Void   []Event
	Seal   Seal
	// Payload is the seal payload the signature covers.
	Payload []byte
	// Pinned reports whether the signer was checked against a caller's key.
	Pinned bool
	// Files lists the files the events that count name, and whether they
	// were checked (Options.Files).
	Files        []FileRef
	FilesChecked bool
	// Witnesses lists the witness signatures that verified.
	Witnesses []Witness

	sealLine []byte
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
	PublicKey   crypto.PublicKey
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
}

// Verify checks a transcript as [VerifyBytes] does and, when pub is not nil,
// that the signer is pub.
func Verify(r io.Reader, pub crypto.PublicKey) (*Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("failed to read transcript: %w", err)
	}
	return VerifyBytes(data, Options{PublicKey: pub})
}

// VerifyBytes checks a transcript, in this order: the form and hash chain
// of every line (ClassChain), the seal's signature and signer
// (ClassSignature), the checkpoints and resume events that say which events
// are void, the order and consistency of the events that count (ClassOrder),
// the files they name (ClassFile, with opts.Files), the witness signatures
// (ClassWitness, with opts.AllowedSigners) and that every step of the
// ceremony script has an event (ClassScript). Failures are *VerifyError
// naming the first failure; other errors are operational.
func VerifyBytes(data []byte, opts Options) (*Result, error) {
	res, lastHash, err := readChain(data)
	if err != nil {
		return nil, err
	}
	if err := checkSeal(res, lastHash, &opts); err != nil {
		return nil, err
	}
	if err := res.sortVoid(); err != nil {
		return nil, err
	}
	if err := checkOrder(res); err != nil {
		return nil, err
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
	return res, nil
}

// readChain reads a sealed transcript: every line as [readLines] does,
// the last a seal. It returns the hash of the line before the seal.
func readChain(data []byte) (*Result, string, error) {
	if len(data) == 0 {
		return nil, "", chainErr(1, "", "transcript is empty", "", "")
	}
	if data[len(data)-1] != '\n' {
		n := bytes.Count(data, []byte{'\n'}) + 1
		return nil, "", chainErr(n, "", "last line is not terminated by a newline: the transcript is truncated", "", "")
	}
	c, err := readLines(data)
	if err != nil {
		return nil, "", err
	}
	if c.seal == nil {
		return nil, "", chainErr(len(c.events)+1, "", "transcript has no seal: the ceremony did not finish or the seal was removed", "", "")
	}
	return &Result{Header: c.header, Events: c.events, EventCount: len(c.events), Seal: *c.seal, sealLine: c.sealLine}, c.beforeLast, nil
}

// chain is the lines of a transcript as readLines read them.
type chain struct {
	header Header
	events []Event
	// seal is the last line when it is a seal, sealLine its bytes.
	seal     *Seal
	sealLine []byte
	lines    int
	// last and beforeLast are the hex SHA-256 of the last line and of
	// the line before it.
	last, beforeLast string
}

// readLines reads the complete lines of a transcript, data, which ends in
// a newline: each strictly, and each one's prev the hash of the line
// before. Line 1 is the header, then come events, and a seal only as the
// last line. Verify and Reopen both read through it, so what a resume
// accepts, verify accepts. Failures are *VerifyError.
func readLines(data []byte) (*chain, error) {
	c := &chain{events: make([]Event, 0, bytes.Count(data, []byte{'\n'}))}
	prev := zeroHash
	for n := 1; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		line := data[:i]
		data = data[i+1:]
		var err error
		switch {
		case bytes.HasSuffix(line, []byte{'\r'}):
			// Hashed with its CR, the line would fail the next one's prev,
			// blaming a change that did not happen.
			err = chainErr(n, "", "line ends in CR LF: the file's line endings were converted (by git autocrlf, a Windows editor or a mail client); use the original file, whose lines end in LF alone", "", "")
		case n == 1:
			err = readHeader(line, prev, &c.header)
		case len(data) == 0 && lineType(line).Type == "seal":
			c.seal, c.sealLine = &Seal{}, line
			err = readSeal(n, line, prev, len(c.events)+1, c.seal)
		default:
			var e Event
			if e, err = readEvent(n, line, prev, len(c.events)+1); err == nil {
				c.events = append(c.events, e)
			}
		}
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(line)
		c.beforeLast, prev = prev, hex.EncodeToString(sum[:])
		c.lines = n
	}
	c.last = prev
	return c, nil
}

// prevErr says that line n does not chain to the line before it, whose
// hash is want.
func prevErr(n int, want, got string) error {
	return chainErr(n, "prev", fmt.Sprintf("does not match the hash of line %d: line %d was changed, or lines were removed, inserted or reordered here", n-1, n-1), want, got)
}

func readHeader(line []byte, prev string, h *Header) error {
	if err := strictjson.Unmarshal(line, h); err != nil || h.Type != "header" {
		return misplaced(1, line, prev, "header", err)
	}
	if h.Prev != prev {
		return prevErr(1, prev, h.Prev)
	}
	if h.Format != Format {
		reason := "unsupported transcript format"
		if h.Format == "keyceremony/transcript/v0" {
			reason = "v0 transcripts are not verified by this version (v0 was never released): check its seal with openssl as its README says"
		}
		return chainErr(1, "format", reason, Format, h.Format)
	}
	return nil
}

func readSeal(n int, line []byte, prev string, seq int, s *Seal) error {
	if err := strictjson.Unmarshal(line, s); err != nil {
		return chainErr(n, "", "malformed seal: "+err.Error(), "", "")
	}
	if s.Prev != prev {
		return prevErr(n, prev, s.Prev)
	}
	if s.Seq != seq {
		return chainErr(n, "seq", "seal out of order", fmt.Sprint(seq), fmt.Sprint(s.Seq))
	}
	return nil
}

// readEvent reads line n, which must be event seq.
func readEvent(n int, line []byte, prev string, seq int) (Event, error) {
	e, err := decodeEvent(line)
	if err != nil {
		return e, misplaced(n, line, prev, "event", err)
	}
	if e.Prev != prev {
		return e, prevErr(n, prev, e.Prev)
	}
	if e.Seq != seq {
		return e, chainErr(n, "seq", "events out of order", fmt.Sprint(seq), fmt.Sprint(e.Seq))
	}
	return e, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// misplaced explains why line n, where a line of type want belongs, could
// not be read as one (err): a broken chain first, as elsewhere.
func misplaced(n int, line []byte, prev, want string, err error) error {
	got := lineType(line)
	switch {
	case got.Type == "":
		return chainErr(n, "", "malformed "+want+": "+errString(err), "", "")
	case got.Prev != prev:
		return prevErr(n, prev, got.Prev)
	case got.Type == want:
		return chainErr(n, "", "malformed "+got.Type+": "+errString(err), "", "")
	case got.Type == "seal":
		return chainErr(n+1, "", "line after the seal", "", "")
	case n == 1:
		return chainErr(1, "type", "first line must be the header", "header", got.Type)
	case got.Type == "header":
		return chainErr(n, "type", "second header", "event or seal", got.Type)
	}
	return chainErr(n, "type", "unknown line type", "event or seal", got.Type)
}

// sortVoid moves the void events from Events to Void, and collects the
// files the others name, each name and hash once.
func (r *Result) sortVoid() error {
	void, _, err := voidEvents(&r.Header, r.Events, false)
	if err != nil {
		return err
	}
	counted := make([]Event, 0, len(r.Events))
	named := map[events.File]bool{}
	for i, e := range r.Events {
		if void[i] {
			r.Void = append(r.Void, e)
			continue
		}
		counted = append(counted, e)
		for _, f := range events.Named(e.Data) {
			if !named[f] { // the files event names again what others named
				named[f] = true
				r.Files = append(r.Files, FileRef{Line: i + 2, Name: f.Name, SHA256: f.SHA256, Optional: shareFileRE.MatchString(f.Name)})
			}
		}
	}
	r.Events = counted
	return nil
}

// checkSeal checks the seal line: its form, its signer, and its signature
// over the seal payload of the lines before it, the last of which hashes to
// last.
func checkSeal(res *Result, last string, opts *Options) error {
	n := res.EventCount + 2
	s := &res.Seal
	sigErr := func(field, reason, expected, found string) error {
		return &VerifyError{Class: ClassSignature, Line: n, Field: field, Reason: reason, Expected: expected, Found: found}
	}
	// No later line hashes the seal line, so it must be exactly as the
	// writer encodes it: otherwise a changed byte that decodes to the same
	// values (base64 padding bits, spacing) would go unnoticed.
	if canon, err := json.Marshal(s); err != nil || !bytes.Equal(canon, res.sealLine) {
		return chainErr(n, "", "seal line is not in canonical form (as keyceremony writes it): it was edited", "", "")
	}
	if s.Algorithm != SealECDSAP256 && s.Algorithm != SealRSA3072 {
		return sigErr("algorithm", "unsupported signature algorithm", SealECDSAP256+" or "+SealRSA3072, s.Algorithm)
	}
	pub, alg, err := ParseSealKey(s.PublicKey)
	if err != nil {
		return sigErr("public_key", "not a seal key: "+err.Error(), "", "")
	}
	if alg != s.Algorithm {
		return sigErr("algorithm", "is not the algorithm of the seal's public_key", alg, s.Algorithm)
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
		if _, _, err := res.Header.sealKey(); err != nil {
			return err
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
	if !verifySignature(alg, pub, digest[:], s.Signature) {
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
	return Printable(h)
}

// Printable returns s with every rune that is not graphic or a space (a
// newline, the ESC of a terminal escape sequence, invalid UTF-8) written
// as \uXXXX, so that a string read from a transcript, which its signer
// chose, cannot start a new line, move the cursor or hide text when it is
// printed.
func Printable(s string) string {
	if !strings.ContainsFunc(s, notPrintable) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if notPrintable(r) {
			fmt.Fprintf(&b, "\\u%04x", r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func notPrintable(r rune) bool { return r != ' ' && !unicode.IsGraphic(r) }

// SignedPayload returns the seal payload of a sealed transcript: the bytes
// the seal's signature covers. It does not verify the transcript.
func SignedPayload(transcript []byte) ([]byte, error) {
	res, err := VerifyBytes(transcript, Options{})
	if err != nil {
		return nil, err
	}
	return res.Payload, nil
}

// ---- files ----

func checkFiles(fsys fs.FS, refs []FileRef) error {
	for i, r := range refs {
		// Stat first: a device or a pipe where a file belongs (a link to
		// /dev/zero in evidence from elsewhere) would be read forever.
		fi, err := fs.Stat(fsys, r.Name)
		if r.Optional && errors.Is(err, fs.ErrNotExist) {
			refs[i].Absent = true
			continue
		}
		if err == nil && !fi.Mode().IsRegular() {
			err = errors.New("it is not a regular file: evidence files are plain files")
		}
		var b []byte
		if err == nil {
			b, err = fs.ReadFile(fsys, r.Name)
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
	had := map[int]bool{}
	for _, e := range res.Events {
		had[e.StepNo] = true
	}
	var missing []string
	var nos []string
	for _, s := range res.Header.Script {
		if !had[s.No] {
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

// Escrow returns the data of the escrow event that counts (the last one
// that is not void), or nil when the transcript has none.
func (r *Result) Escrow() *events.Escrow {
	var e *events.Escrow
	for _, ev := range r.Events {
		if d, ok := ev.Data.(*events.Escrow); ok {
			e = d
		}
	}
	return e
}
