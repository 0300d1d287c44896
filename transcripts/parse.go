package transcripts

import (
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

// parseEvent decodes an event line strictly: only Event's fields, each at
// most once, with their JSON types.
func parseEvent(line []byte) (*Event, error) {
	r := &reader{b: line}
	if err := r.expect('{'); err != nil {
		return nil, err
	}
	e := &Event{}
	var seen uint8
	for {
		r.ws()
		if r.i >= len(r.b) || r.b[r.i] != '"' {
			return nil, r.errorf("want a field name")
		}
		k, err := r.key()
		if err != nil {
			return nil, err
		}
		if err := r.expect(':'); err != nil {
			return nil, err
		}
		var bit uint8
		var ok bool
		r.ws()
		switch string(k) {
		case "type":
			bit = 1 << 0
			e.Type, err = r.strField()
		case "seq":
			bit = 1 << 1
			e.Seq, err = r.integer()
		case "step_no":
			bit = 1 << 2
			e.StepNo, err = r.integer()
		case "time":
			bit = 1 << 3
			var s string
			if s, err = r.strField(); err == nil {
				if e.Time, err = time.Parse(time.RFC3339Nano, s); err != nil {
					err = fmt.Errorf("field time: %w", err)
				}
			}
		case "step":
			bit = 1 << 4
			e.Step, err = r.strField()
		case "actor":
			bit = 1 << 5
			e.Actor, err = r.strField()
		case "data":
			bit = 1 << 6
			if r.i < len(r.b) && r.b[r.i] == 'n' {
				err = r.lit("null")
			} else if r.i < len(r.b) && r.b[r.i] == '{' {
				e.Data, err = r.object(1)
			} else {
				err = r.errorf("field data: want an object")
			}
		case "prev":
			bit = 1 << 7
			e.Prev, err = r.strField()
		default:
			return nil, fmt.Errorf("unknown field %q", k)
		}
		if err != nil {
			return nil, err
		}
		if seen&bit != 0 {
			return nil, fmt.Errorf("%w %q", errDuplicateKey, k)
		}
		seen |= bit
		r.ws()
		if r.i >= len(r.b) {
			return nil, r.errorf("unexpected end in object")
		}
		if r.b[r.i] == ',' {
			r.i++
			continue
		}
		if ok = r.b[r.i] == '}'; !ok {
			return nil, r.errorf("unexpected %q in object", r.b[r.i])
		}
		r.i++
		r.ws()
		if r.i != len(r.b) {
			return nil, r.errorf("trailing data")
		}
		return e, nil
	}
}

func (r *reader) strField() (string, error) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return "", r.errorf("want a string")
	}
	return r.str()
}

// key reads a string without escapes or non-ASCII bytes and returns its
// bytes without copying: field names of event lines.
func (r *reader) key() ([]byte, error) {
	r.i++ // opening quote
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c == '"' {
			r.i++
			return r.b[start : r.i-1], nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return nil, r.errorf("unexpected field name")
		}
		r.i++
	}
	return nil, r.errorf("unterminated string")
}
