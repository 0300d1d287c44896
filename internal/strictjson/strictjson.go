// Package strictjson decodes the JSON files keyceremony reads (transcript
// lines, params files, bundles, escrow blobs, shares, AWS CLI output, the
// loopback KMS's state) the one strict way.
//
// # What it refuses
//
// [Unmarshal] decodes exactly one JSON value into a Go value and refuses
// input that two readers could understand differently, or that keyceremony
// did not write:
//
//   - invalid UTF-8, in the input or in \u escapes (an unpaired UTF-16
//     surrogate, which encoding/json silently replaces with U+FFFD);
//   - two members of one object with the same name, at any depth
//     (encoding/json keeps the last, other readers the first);
//   - members that no field of the target struct takes: unknown fields,
//     and names that match a field only when case is ignored;
//   - anything after the value but white space (trailing data).
//
// It is encoding/json/v2 (github.com/go-json-experiment/json, the mirror
// of the standard library's encoding/json/v2 that aliases it from Go
// 1.27), which refuses the first two by default, with unknown members
// refused. Field names come from the same `json:"name"` tags that
// encoding/json writes with. Every error is an *[Error].
package strictjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Error is a refusal: Reason says why, Offset is the byte offset in the
// input where the problem was found, and Path the JSON pointer to the
// value (RFC 6901), when known.
type Error struct {
	Offset int64
	Path   string
	Reason string
}

func (e *Error) Error() string {
	s := e.Reason
	if e.Path != "" {
		s += " at " + e.Path
	}
	if e.Offset > 0 {
		s += fmt.Sprintf(" (byte %d)", e.Offset)
	}
	return s
}

// Unmarshal decodes data, which must hold exactly one JSON value, into v
// (a non-nil pointer), refusing what the package documentation lists. The
// error is an *[Error].
func Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v, json.RejectUnknownMembers(true)); err != nil {
		return refusal(data, err)
	}
	return nil
}

// Member returns the string value of member name of the JSON object in
// data, or "" when it has none (or data is no object). It reads only as far
// as that member and checks little: it is a hint for choosing the type to
// Unmarshal data into, which then checks everything.
func Member(data []byte, name string) string {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return ""
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return ""
		}
		if tok.String() == name {
			v, err := dec.ReadToken()
			if err != nil || v.Kind() != '"' {
				return ""
			}
			return v.String()
		}
		if dec.SkipValue() != nil {
			return ""
		}
	}
	return ""
}

// refusal turns the error of decoding data into an *Error with a plain
// reason.
func refusal(data []byte, err error) *Error {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	switch {
	case errors.As(err, &syn):
		e := &Error{Offset: syn.ByteOffset, Path: string(syn.JSONPointer)}
		switch {
		case errors.Is(syn.Err, jsontext.ErrDuplicateName):
			e.Path = ""
			e.Reason = fmt.Sprintf("duplicate member name %q", syn.JSONPointer.LastToken())
			if p := string(syn.JSONPointer.Parent()); p != "" {
				e.Reason += " in " + p
			}
		case errors.Is(syn.Err, io.ErrUnexpectedEOF):
			e.Reason = "invalid JSON: unexpected end of input"
		case syn.ByteOffset > 0 && syn.ByteOffset <= int64(len(data)) && jsontext.Value(data[:syn.ByteOffset]).IsValid():
			e.Reason = "trailing data after the JSON value"
		default:
			e.Reason = "invalid JSON: " + syn.Err.Error()
		}
		return e
	case errors.As(err, &sem):
		e := &Error{Offset: sem.ByteOffset, Path: string(sem.JSONPointer)}
		switch {
		case errors.Is(sem.Err, json.ErrUnknownName):
			e.Path = ""
			e.Reason = fmt.Sprintf("unknown field %q", sem.JSONPointer.LastToken())
			if p := string(sem.JSONPointer.Parent()); p != "" {
				e.Reason += " in " + p
			}
		case sem.GoType != nil:
			e.Reason = fmt.Sprintf("cannot read JSON %s as Go %s", sem.JSONKind, sem.GoType)
			if sem.Err != nil {
				e.Reason += ": " + sem.Err.Error()
			}
		default:
			e.Reason = "invalid JSON: " + sem.Error()
		}
		return e
	}
	return &Error{Reason: "invalid JSON: " + err.Error()}
}
