package transcripts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// A strict JSON reader for event lines, the bulk of a transcript. It
// decodes what encoding/json decodes into an `any` (objects as
// map[string]any, numbers as float64), and is several times faster, which
// is what keeps Verify near the cost of hashing the file. It is stricter than
// encoding/json: it refuses invalid UTF-8 and duplicate keys, which would let
// two readers see different values in the same signed line. FuzzParseValue
// checks it against encoding/json.

var errDuplicateKey = errors.New("duplicate key")

type reader struct {
	b []byte
	i int
	// plainASCII is set when b holds only printable ASCII and no
	// backslash: every string then ends at the next '"'.
	plainASCII bool
}

func (r *reader) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", r.i, fmt.Sprintf(format, args...))
}

func (r *reader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *reader) expect(c byte) error {
	r.ws()
	if r.i >= len(r.b) || r.b[r.i] != c {
		if r.i >= len(r.b) {
			return r.errorf("unexpected end, want %q", c)
		}
		return r.errorf("unexpected %q, want %q", r.b[r.i], c)
	}
	r.i++
	return nil
}

// parseValue decodes one JSON value filling all of b.
func parseValue(b []byte) (any, error) {
	r := &reader{b: b}
	v, err := r.value(0)
	if err != nil {
		return nil, err
	}
	r.ws()
	if r.i != len(r.b) {
		return nil, r.errorf("trailing data")
	}
	return v, nil
}

const maxDepth = 64

func (r *reader) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, r.errorf("nested too deeply")
	}
	r.ws()
	if r.i >= len(r.b) {
		return nil, r.errorf("unexpected end of input")
	}
	switch c := r.b[r.i]; {
	case c == '{':
		return r.object(depth)
	case c == '[':
		return r.array(depth)
	case c == '"':
		return r.str()
	case c == 't':
		return true, r.lit("true")
	case c == 'f':
		return false, r.lit("false")
	case c == 'n':
		return nil, r.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		span, err := r.number()
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(string(span), 64)
		if err != nil {
			return nil, r.errorf("number %s out of range", span)
		}
		return f, nil
	default:
		return nil, r.errorf("unexpected %q", c)
	}
}

func (r *reader) lit(s string) error {
	if len(r.b)-r.i < len(s) || string(r.b[r.i:r.i+len(s)]) != s {
		return r.errorf("invalid literal")
	}
	r.i += len(s)
	return nil
}

func (r *reader) object(depth int) (map[string]any, error) {
	r.i++ // {
	m := map[string]any{}
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		return m, nil
	}
	for {
		r.ws()
		if r.i >= len(r.b) || r.b[r.i] != '"' {
			return nil, r.errorf("want an object key")
		}
		k, err := r.str()
		if err != nil {
			return nil, err
		}
		if err := r.expect(':'); err != nil {
			return nil, err
		}
		v, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%w %q", errDuplicateKey, k)
		}
		m[k] = v
		r.ws()
		if r.i >= len(r.b) {
			return nil, r.errorf("unexpected end in object")
		}
		switch r.b[r.i] {
		case ',':
			r.i++
		case '}':
			r.i++
			return m, nil
		default:
			return nil, r.errorf("unexpected %q in object", r.b[r.i])
		}
	}
}

func (r *reader) array(depth int) ([]any, error) {
	r.i++ // [
	a := []any{}
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == ']' {
		r.i++
		return a, nil
	}
	for {
		v, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		r.ws()
		if r.i >= len(r.b) {
			return nil, r.errorf("unexpected end in array")
		}
		switch r.b[r.i] {
		case ',':
			r.i++
		case ']':
			r.i++
			return a, nil
		default:
			return nil, r.errorf("unexpected %q in array", r.b[r.i])
		}
	}
}

// number returns the span of a JSON number (RFC 8259 grammar).
func (r *reader) number() ([]byte, error) {
	start := r.i
	digits := func() int {
		n := 0
		for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
			r.i++
			n++
		}
		return n
	}
	if r.b[r.i] == '-' {
		r.i++
	}
	if r.i < len(r.b) && r.b[r.i] == '0' {
		r.i++
	} else if digits() == 0 {
		return nil, r.errorf("invalid number")
	}
	if r.i < len(r.b) && r.b[r.i] == '.' {
		r.i++
		if digits() == 0 {
			return nil, r.errorf("invalid number")
		}
	}
	if r.i < len(r.b) && (r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		r.i++
		if r.i < len(r.b) && (r.b[r.i] == '+' || r.b[r.i] == '-') {
			r.i++
		}
		if digits() == 0 {
			return nil, r.errorf("invalid number")
		}
	}
	return r.b[start:r.i], nil
}

// integer reads a non-negative JSON integer without fraction or exponent.
func (r *reader) integer() (int, error) {
	r.ws()
	if r.i >= len(r.b) || r.b[r.i] < '0' || r.b[r.i] > '9' {
		return 0, r.errorf("want a non-negative integer")
	}
	span, err := r.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(span))
	if err != nil || n < 0 {
		return 0, r.errorf("want a non-negative integer, found %s", span)
	}
	return n, nil
}

func (r *reader) str() (string, error) {
	r.i++ // opening quote
	start := r.i
	// Fast path: plain ASCII without escapes.
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c == '"' {
			s := string(r.b[start:r.i])
			r.i++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		r.i++
	}
	buf := append([]byte(nil), r.b[start:r.i]...)
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			return string(buf), nil
		case c < 0x20:
			return "", r.errorf("control character in string")
		case c == '\\':
			if r.i+1 >= len(r.b) {
				return "", r.errorf("unterminated escape")
			}
			r.i += 2
			switch e := r.b[r.i-1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				c1, ok := r.hex4()
				if !ok {
					return "", r.errorf("invalid \\u escape")
				}
				rn := rune(c1)
				if utf16.IsSurrogate(rn) {
					rn = utf8.RuneError
					// A high surrogate followed by a low one is one rune.
					if c1 < 0xdc00 && r.i+1 < len(r.b) && r.b[r.i] == '\\' && r.b[r.i+1] == 'u' {
						save := r.i
						r.i += 2
						c2, ok := r.hex4()
						if !ok {
							return "", r.errorf("invalid \\u escape")
						}
						if d := utf16.DecodeRune(rune(c1), rune(c2)); d != utf8.RuneError {
							rn = d
						} else {
							r.i = save
						}
					}
				}
				buf = utf8.AppendRune(buf, rn)
			default:
				return "", r.errorf("invalid escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			r.i++
		default:
			rn, size := utf8.DecodeRune(r.b[r.i:])
			if rn == utf8.RuneError && size == 1 {
				return "", r.errorf("invalid UTF-8 in string")
			}
			buf = append(buf, r.b[r.i:r.i+size]...)
			r.i += size
		}
	}
	return "", r.errorf("unterminated string")
}

func (r *reader) hex4() (uint16, bool) {
	if len(r.b)-r.i < 4 {
		return 0, false
	}
	var v uint16
	for _, c := range r.b[r.i : r.i+4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= uint16(c - '0')
		case c >= 'a' && c <= 'f':
			v |= uint16(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v |= uint16(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	r.i += 4
	return v, true
}

// rawStr reads a string and returns its bytes between the quotes, checked
// (escapes, control characters, UTF-8) but not unescaped, and whether it
// holds escapes. It allocates nothing.
func (r *reader) rawStr() ([]byte, bool, error) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return nil, false, r.errorf("want a string")
	}
	r.i++
	start := r.i
	if r.plainASCII {
		n := bytes.IndexByte(r.b[r.i:], '"')
		if n < 0 {
			return nil, false, r.errorf("unterminated string")
		}
		r.i += n + 1
		return r.b[start : r.i-1], false, nil
	}
	esc := false
	for r.i < len(r.b) {
		// Skip plain ASCII quickly, 8 bytes at a time: this loop is most of
		// Verify's time.
		for r.i+8 <= len(r.b) && !special8(binary.LittleEndian.Uint64(r.b[r.i:])) {
			r.i += 8
		}
		for r.i < len(r.b) && plain[r.b[r.i]] {
			r.i++
		}
		if r.i >= len(r.b) {
			break
		}
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			return r.b[start : r.i-1], esc, nil
		case c < 0x20:
			return nil, false, r.errorf("control character in string")
		case c == '\\':
			esc = true
			if r.i+1 >= len(r.b) {
				return nil, false, r.errorf("unterminated escape")
			}
			switch r.b[r.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.i += 2
			case 'u':
				r.i += 2
				if _, ok := r.hex4(); !ok {
					return nil, false, r.errorf("invalid \\u escape")
				}
			default:
				return nil, false, r.errorf("invalid escape")
			}
		case c < utf8.RuneSelf:
			r.i++
		default:
			rn, size := utf8.DecodeRune(r.b[r.i:])
			if rn == utf8.RuneError && size == 1 {
				return nil, false, r.errorf("invalid UTF-8 in string")
			}
			r.i += size
		}
	}
	return nil, false, r.errorf("unterminated string")
}

// unescape decodes the raw bytes of a string rawStr accepted.
func unescape(raw []byte, esc bool) string {
	if !esc {
		return string(raw)
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	s, _ := (&reader{b: q}).str()
	return s
}

// keySet detects duplicate keys in an object without allocating for the
// usual few keys.
type keySet struct {
	small [16][]byte
	n     int
	big   map[string]bool
}

func (k *keySet) add(raw []byte, esc bool) bool {
	key := raw
	if esc {
		key = []byte(unescape(raw, true))
	}
	if k.big != nil {
		if k.big[string(key)] {
			return false
		}
		k.big[string(key)] = true
		return true
	}
	for _, x := range k.small[:k.n] {
		if string(x) == string(key) {
			return false
		}
	}
	if k.n == len(k.small) {
		k.big = map[string]bool{}
		for _, x := range k.small[:k.n] {
			k.big[string(x)] = true
		}
		k.big[string(key)] = true
		return true
	}
	k.small[k.n] = key
	k.n++
	return true
}

// skip checks one JSON value as value does, without decoding it.
func (r *reader) skip(depth int) error {
	if depth > maxDepth {
		return r.errorf("nested too deeply")
	}
	r.ws()
	if r.i >= len(r.b) {
		return r.errorf("unexpected end of input")
	}
	switch c := r.b[r.i]; {
	case c == '{':
		r.i++
		var keys keySet
		r.ws()
		if r.i < len(r.b) && r.b[r.i] == '}' {
			r.i++
			return nil
		}
		for {
			r.ws()
			k, esc, err := r.rawStr()
			if err != nil {
				return err
			}
			if !keys.add(k, esc) {
				return fmt.Errorf("%w %q", errDuplicateKey, unescape(k, esc))
			}
			if err := r.expect(':'); err != nil {
				return err
			}
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			if done, err := r.next('}'); done || err != nil {
				return err
			}
		}
	case c == '[':
		r.i++
		r.ws()
		if r.i < len(r.b) && r.b[r.i] == ']' {
			r.i++
			return nil
		}
		for {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			if done, err := r.next(']'); done || err != nil {
				return err
			}
		}
	case c == '"':
		_, _, err := r.rawStr()
		return err
	case c == 't':
		return r.lit("true")
	case c == 'f':
		return r.lit("false")
	case c == 'n':
		return r.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		span, err := r.number()
		if err != nil {
			return err
		}
		// Only an exponent or 300-odd digits can overflow a float64, which
		// encoding/json (and so value) refuses.
		if len(span) > 300 || bytes.ContainsAny(span, "eE") {
			if _, err := strconv.ParseFloat(string(span), 64); err != nil {
				return r.errorf("number %s out of range", span)
			}
		}
		return nil
	default:
		return r.errorf("unexpected %q", c)
	}
}

// next reads a ',' (more to come) or the closing byte (done).
func (r *reader) next(closing byte) (bool, error) {
	r.ws()
	if r.i >= len(r.b) {
		return false, r.errorf("unexpected end of input")
	}
	switch r.b[r.i] {
	case ',':
		r.i++
		return false, nil
	case closing:
		r.i++
		return true, nil
	}
	return false, r.errorf("unexpected %q", r.b[r.i])
}

// eventInfo is what Verify reads from an event line: the fields it checks,
// with the data fields the order and file checks use.
type eventInfo struct {
	seq, stepNo int
	step        string
	time        []byte // RFC 3339, checked for shape
	prev        []byte
	line        []byte
	// From data:
	// label ... fileSHA are unescaped string values, sharing the line's
	// bytes when they hold no escapes.
	label, kcv, validTo, file, fileSHA []byte
	labels, files, keys, quorum        any
	hasQuorum                          bool
	// validAt and at are validTo and time parsed, for the steps whose
	// order checks use them (see parseTimes).
	validAt, at     time.Time
	validErr, atErr error
}

// parseTimes parses the times the order checks of e's step use.
func (e *eventInfo) parseTimes() {
	switch e.step {
	case "fetch-params", "params":
		if len(e.validTo) > 0 || e.step == "fetch-params" {
			e.validAt, e.validErr = parseTime(e.validTo)
		}
	case "wrap":
		e.at, e.atErr = parseTime(e.time)
	}
}

// knownSteps avoids allocating the usual step names.
var knownSteps = []string{"open-token", "kms-key", "generate-key", "fetch-params", "escrow", "wrap", "import",
	"upload", "check-import", "signing-key", "files", "failed", "key", "params", "step-done", "step"}

func internStep(b []byte) string {
	for _, s := range knownSteps {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// scanEvent reads an event line strictly: only Event's fields, each at most
// once, with their JSON types, valid JSON throughout (as encoding/json,
// plus valid UTF-8 and no duplicate keys). It allocates only for the data
// values the checks use.
func scanEvent(line []byte, e *eventInfo) error {
	r := &reader{b: line, plainASCII: bytes.IndexByte(line, '\\') < 0 && printableASCII(line)}
	e.line = line
	if err := r.expect('{'); err != nil {
		return err
	}
	var seen uint8
	for {
		r.ws()
		k, esc, err := r.rawStr()
		if err != nil {
			return err
		}
		if esc {
			return fmt.Errorf("unknown field %q", unescape(k, esc))
		}
		if err := r.expect(':'); err != nil {
			return err
		}
		r.ws()
		var bit uint8
		switch string(k) {
		case "type":
			bit = 1 << 0
			var v []byte
			if v, _, err = r.rawStr(); err == nil && string(v) != "event" {
				err = fmt.Errorf("field type: want \"event\", found %q", v)
			}
		case "seq":
			bit = 1 << 1
			e.seq, err = r.integer()
		case "step_no":
			bit = 1 << 2
			e.stepNo, err = r.integer()
		case "time":
			bit = 1 << 3
			if e.time, _, err = r.rawStr(); err == nil && !rfc3339Shape(e.time) {
				err = fmt.Errorf("field time: %q is not an RFC 3339 UTC time", e.time)
			}
		case "step":
			bit = 1 << 4
			var v []byte
			if v, esc, err = r.rawStr(); err == nil {
				if esc {
					e.step = unescape(v, esc)
				} else {
					e.step = internStep(v)
				}
			}
		case "actor":
			bit = 1 << 5
			_, _, err = r.rawStr()
		case "data":
			bit = 1 << 6
			err = r.scanData(e)
		case "prev":
			bit = 1 << 7
			e.prev, _, err = r.rawStr()
		default:
			return fmt.Errorf("unknown field %q", k)
		}
		if err != nil {
			return err
		}
		if seen&bit != 0 {
			return fmt.Errorf("%w %q", errDuplicateKey, k)
		}
		seen |= bit
		done, err := r.next('}')
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	r.ws()
	if r.i != len(r.b) {
		return r.errorf("trailing data")
	}
	const required = 1<<0 | 1<<1 | 1<<3 | 1<<4 | 1<<7
	if seen&required != required {
		return errors.New("missing one of the fields type, seq, time, step, prev")
	}
	return nil
}

func (r *reader) scanData(e *eventInfo) error {
	if r.i < len(r.b) && r.b[r.i] == 'n' {
		return r.lit("null")
	}
	if r.i >= len(r.b) || r.b[r.i] != '{' {
		return r.errorf("field data: want an object")
	}
	r.i++
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		return nil
	}
	var keys keySet
	for {
		r.ws()
		k, esc, err := r.rawStr()
		if err != nil {
			return err
		}
		if esc {
			// keyceremony writes plain keys; an escaped one ("l\u0061bel")
			// would read differently here and in encoding/json.
			return r.errorf("escaped key %q in data", unescape(k, esc))
		}
		if !keys.add(k, esc) {
			return fmt.Errorf("%w %q in data", errDuplicateKey, unescape(k, esc))
		}
		if err := r.expect(':'); err != nil {
			return err
		}
		r.ws()
		var dst *[]byte
		if !esc {
			switch string(k) {
			case "label":
				dst = &e.label
			case "key_check_value":
				dst = &e.kcv
			case "parameters_valid_to":
				dst = &e.validTo
			case "file":
				dst = &e.file
			case "file_sha256":
				dst = &e.fileSHA
			case "labels":
				e.labels, err = r.value(2)
			case "files":
				e.files, err = r.value(2)
			case "keys":
				e.keys, err = r.value(2)
			case "quorum_check":
				e.quorum, err = r.value(2)
				e.hasQuorum = true
			default:
				err = r.skip(2)
			}
		} else {
			err = r.skip(2)
		}
		if dst != nil {
			if r.i < len(r.b) && r.b[r.i] == '"' {
				var v []byte
				if v, esc, err = r.rawStr(); err == nil {
					if esc {
						v = []byte(unescape(v, esc))
					}
					*dst = v
				}
			} else {
				err = r.skip(2)
			}
		}
		if err != nil {
			return err
		}
		if done, err := r.next('}'); done || err != nil {
			return err
		}
	}
}

// rfc3339Shape reports whether b is a valid 2006-01-02T15:04:05[.frac]Z.
func rfc3339Shape(b []byte) bool {
	const pat = "dddd-dd-ddTdd:dd:dd"
	if len(b) < len(pat)+1 || b[len(b)-1] != 'Z' {
		return false
	}
	for i := 0; i < len(pat); i++ {
		if pat[i] == 'd' {
			if b[i] < '0' || b[i] > '9' {
				return false
			}
		} else if b[i] != pat[i] {
			return false
		}
	}
	if !validDate(b) {
		return false
	}
	frac := b[len(pat) : len(b)-1]
	if len(frac) == 0 {
		return true
	}
	if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
		return false
	}
	for _, c := range frac[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// plain marks the bytes a string holds as they are: printable ASCII other
// than '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// special8 reports whether any of the 8 bytes in x is not plain: below
// 0x20, at or above 0x80, '"' or '\\' (the "has less" and "has zero" byte
// tricks from Bit Twiddling Hacks, exact for these constants).
func special8(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	ctl := (x - 0x20*lo) & ^x & hi
	q := x ^ ('"' * lo)
	bs := x ^ ('\\' * lo)
	return (ctl | (q-lo)&^q&hi | (bs-lo)&^bs&hi | x&hi) != 0
}

// printableASCII reports whether b holds only bytes 0x20 to 0x7f, 32 bytes
// at a time (see special8).
func printableASCII(b []byte) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	var acc uint64
	for len(b) >= 32 {
		x0, x1 := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		x2, x3 := binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])
		acc |= (x0-0x20*lo)&^x0 | x0 | (x1-0x20*lo)&^x1 | x1 | (x2-0x20*lo)&^x2 | x2 | (x3-0x20*lo)&^x3 | x3
		b = b[32:]
	}
	if acc&hi != 0 {
		return false
	}
	for _, c := range b {
		if c < 0x20 || c >= 0x80 {
			return false
		}
	}
	return true
}

// parseTime reads an RFC 3339 time as the writer writes them (UTC, "Z",
// up to nine fraction digits) without the generality of time.Parse, and
// falls back to time.Parse for any other RFC 3339 form.
func parseTime(b []byte) (time.Time, error) {
	if !rfc3339Shape(b) {
		return time.Parse(time.RFC3339Nano, string(b))
	}
	num := func(b []byte) int {
		n := 0
		for _, c := range b {
			n = n*10 + int(c-'0')
		}
		return n
	}
	y, mo, d := num(b[0:4]), num(b[5:7]), num(b[8:10])
	h, mi, sec := num(b[11:13]), num(b[14:16]), num(b[17:19])
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("time %q out of range", b)
	}
	ns := 0
	if frac := b[19 : len(b)-1]; len(frac) > 1 {
		ns = num(frac[1:])
		for i := len(frac) - 1; i < 9; i++ {
			ns *= 10
		}
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC)
	if t.Day() != d {
		return time.Time{}, fmt.Errorf("time %q out of range", b)
	}
	return t, nil
}

// validDate checks the ranges of a time rfc3339Shape has checked digit by
// digit: month, day of that month, hour, minute, second.
func validDate(b []byte) bool {
	d2 := func(i int) int { return int(b[i]-'0')*10 + int(b[i+1]-'0') }
	y := d2(0)*100 + d2(2)
	mo, d, h, mi, sec := d2(5), d2(8), d2(11), d2(14), d2(17)
	if mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59 {
		return false
	}
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[mo]
	if mo == 2 && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return d <= days
}
