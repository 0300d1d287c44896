package kmslocal

import (
	"encoding/base64"
	"slices"
)

// checkLimit validates the Limit member of a List operation: 1 to max,
// def when it is absent (ListResourceTags: 50 and 50; the others: 1000
// and 100).
func checkLimit(l *int, def, max int) (int, error) {
	if l == nil {
		return def, nil
	}
	if *l < 1 || *l > max {
		return 0, validationError("Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and %d", *l, max)
	}
	return *l, nil
}

// page returns one page of a List response: at most limit entries, from
// the one marker names on (from the first when marker is ""), and the
// NextMarker of the next page ("" when none is left). name gives each
// entry's stable, unique name; a marker is the name of the first entry of
// its page in base64url, opaque to clients, so a page boundary holds when
// entries before it come or go between two calls. A marker that names no
// entry is an InvalidMarkerException.
func page[T any](entries []T, name func(T) string, marker string, limit int) ([]T, string, error) {
	start := 0
	if marker != "" {
		b, err := base64.RawURLEncoding.DecodeString(marker)
		start = slices.IndexFunc(entries, func(e T) bool { return name(e) == string(b) })
		if err != nil || start < 0 {
			return nil, "", newError(excInvalidMarker, "The marker is not valid.")
		}
	}
	end := min(start+limit, len(entries))
	next := ""
	if end < len(entries) {
		next = base64.RawURLEncoding.EncodeToString([]byte(name(entries[end])))
	}
	return append([]T{}, entries[start:end]...), next, nil
}
