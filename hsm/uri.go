package hsm

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// URI is an RFC 7512 PKCS#11 URI, for example
// "pkcs11:token=ceremony;object=payments-2026?pin-source=file:///run/pin".
// Every attribute RFC 7512 defines is either kept here and honoured where a
// token or key is chosen, or refused by [ParseURI]; none is ignored.
type URI struct {
	// Token is the token label (the "token" path attribute).
	Token string
	// Serial is the token serial number (the "serial" path attribute).
	Serial string
	// Manufacturer and Model narrow the token further when set.
	Manufacturer string
	Model        string
	// SlotDescription, SlotManufacturer and SlotID narrow the slot.
	SlotDescription  string
	SlotManufacturer string
	SlotID           *uint
	// LibraryManufacturer, LibraryDescription and LibraryVersion ("M" or
	// "M.m") must match the module's C_GetInfo.
	LibraryManufacturer string
	LibraryDescription  string
	LibraryVersion      string
	// Object is the object label (the "object" path attribute).
	Object string
	// ID is the object's CKA_ID (the "id" path attribute, percent-encoded).
	ID []byte
	// Type is the object class: "secret-key", "private", "public", "cert"
	// or "data".
	Type string
	// ModulePath is the "module-path" query attribute.
	ModulePath string
	// PINSource is the absolute local path the "pin-source" query attribute
	// names as an RFC 8089 file URI.
	PINSource string
}

var errPINValue = errors.New("pkcs11 URI contains pin-value: never put a PIN in a URI; use a PIN file, the PIN environment variable or the prompt")

// ParseURI parses a "pkcs11:" URI as defined by RFC 7512. It refuses
// "pin-value" (a PIN must never be written on a command line or in a config
// file), "module-name" (give module-path), repeated and unknown attributes,
// and a pin-source that is not a local file URI (RFC 8089). Its errors never
// repeat the URI, which may hold a PIN.
func ParseURI(s string) (*URI, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, errors.New(`a pkcs11 URI must start with "pkcs11:"`)
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	if path != "" {
		for attr := range strings.SplitSeq(path, ";") {
			k, v, err := splitAttr(attr, seen)
			if err != nil {
				return nil, err
			}
			if err := u.setPath(k, v); err != nil {
				return nil, err
			}
		}
	}
	if query != "" {
		for attr := range strings.SplitSeq(query, "&") {
			k, v, err := splitAttr(attr, seen)
			if err != nil {
				return nil, err
			}
			switch k {
			case "module-path":
				u.ModulePath = v
			case "pin-source":
				p, err := parseFileURI(v)
				if err != nil {
					return nil, fmt.Errorf("pkcs11 URI: pin-source: %w", err)
				}
				u.PINSource = p
			case "pin-value":
				return nil, errPINValue
			case "module-name":
				return nil, errors.New("pkcs11 URI: module-name is not supported: give the module's path with module-path")
			default:
				return nil, fmt.Errorf("pkcs11 URI: unknown query attribute %s: remove it; keyceremony takes module-path and pin-source after the ?", attrName(k))
			}
		}
	}
	return u, nil
}

func (u *URI) setPath(k, v string) error {
	switch k {
	case "token":
		u.Token = v
	case "serial":
		u.Serial = v
	case "manufacturer":
		u.Manufacturer = v
	case "model":
		u.Model = v
	case "object":
		u.Object = v
	case "id":
		if v != "" { // an empty id, like any empty value, selects nothing
			u.ID = []byte(v)
		}
	case "type":
		switch v {
		case "secret-key", "private", "public", "cert", "data":
			u.Type = v
		default:
			return fmt.Errorf("pkcs11 URI: type %q is not one of secret-key, private, public, cert, data", v)
		}
	case "slot-description":
		u.SlotDescription = v
	case "slot-manufacturer":
		u.SlotManufacturer = v
	case "slot-id":
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("pkcs11 URI: slot-id %q is not a decimal number", v)
		}
		id := uint(n)
		u.SlotID = &id
	case "library-manufacturer":
		u.LibraryManufacturer = v
	case "library-description":
		u.LibraryDescription = v
	case "pin-value":
		return errPINValue
	case "library-version":
		major, minor, hasMinor := strings.Cut(v, ".")
		if !digits(major) || hasMinor && !digits(minor) {
			return fmt.Errorf("pkcs11 URI: library-version %q is not M or M.m", v)
		}
		u.LibraryVersion = v
	default:
		return fmt.Errorf("pkcs11 URI: unknown path attribute %s: remove it, or use one RFC 7512 defines (token, serial, manufacturer, model, slot-id, slot-description, slot-manufacturer, library-manufacturer, library-description, library-version, object, id, type)", attrName(k))
	}
	return nil
}

// attrName quotes an attribute name for an error: printable, at most 32
// bytes. Only names are quoted, never values (a value may be a PIN), and not
// a name that begins like pin-value: a mistyped one may hold the PIN.
func attrName(k string) string {
	if strings.HasPrefix(strings.ToLower(k), "pin") && k != "pin-source" {
		return `"pin…" (not repeated: it may hold a PIN)`
	}
	if len(k) > 32 {
		return strconv.Quote(k[:32]) + "…"
	}
	return strconv.Quote(k)
}

func digits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func splitAttr(attr string, seen map[string]bool) (string, string, error) {
	k, v, ok := strings.Cut(attr, "=")
	if !ok || k == "" {
		return "", "", errors.New("pkcs11 URI: an attribute is not name=value")
	}
	if seen[k] {
		return "", "", fmt.Errorf("pkcs11 URI: attribute %s is given twice: keep one", attrName(k))
	}
	seen[k] = true
	dv, err := url.PathUnescape(v)
	if err != nil {
		return "", "", fmt.Errorf("pkcs11 URI: attribute %s has bad percent-encoding: write a byte as %%XX", attrName(k))
	}
	return k, dv, nil
}

// parseFileURI returns the absolute local path of an RFC 8089 file URI:
// "file:/p", "file:///p" or "file://localhost/p". A host ("file://etc/pin"
// names the host etc), a UNC-style "file:////host/share", a relative path, a
// query or a fragment are refused: each would read another file than the
// one the operator meant.
func parseFileURI(s string) (string, error) {
	fu, err := url.Parse(s)
	switch {
	case err != nil:
		return "", errors.New("it is not a URI: give a file URI such as file:///run/keyceremony/pin")
	case fu.Scheme != "file":
		return "", errors.New("it must be a file: URI, such as file:///run/keyceremony/pin")
	case fu.Opaque != "" || !strings.HasPrefix(fu.Path, "/"):
		return "", errors.New("the file URI has a relative path: give an absolute one, such as file:///run/keyceremony/pin")
	case fu.User != nil || fu.Host != "" && fu.Host != "localhost":
		return "", fmt.Errorf("the file URI names the host %q (RFC 8089 reads file://%s/… as a remote file): for a local path write file:///%s…", fu.Host, fu.Host, fu.Host)
	case strings.HasPrefix(fu.Path, "//"):
		return "", errors.New("the file URI is a UNC-style path (file:////…), not a local file: give file:///path")
	case fu.RawQuery != "" || fu.ForceQuery || fu.Fragment != "" || strings.Contains(s, "#"):
		return "", errors.New("the file URI has a query or fragment: give only the path")
	case strings.ContainsRune(fu.Path, 0):
		return "", errors.New("the file URI's path contains a NUL byte")
	}
	return fu.Path, nil
}

// fileURI formats an absolute path as a file URI that parseFileURI reads
// back to the same path.
func fileURI(p string) string {
	return (&url.URL{Scheme: "file", Path: p}).String()
}

// String formats u as a PKCS#11 URI that [ParseURI] reads back to u.
func (u *URI) String() string {
	var path []string
	add := func(k, v string) {
		if v != "" {
			path = append(path, k+"="+escape(v))
		}
	}
	add("token", u.Token)
	add("serial", u.Serial)
	add("manufacturer", u.Manufacturer)
	add("model", u.Model)
	add("slot-description", u.SlotDescription)
	add("slot-manufacturer", u.SlotManufacturer)
	if u.SlotID != nil {
		add("slot-id", strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	add("library-manufacturer", u.LibraryManufacturer)
	add("library-description", u.LibraryDescription)
	add("library-version", u.LibraryVersion)
	add("object", u.Object)
	if len(u.ID) > 0 {
		var b strings.Builder
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		path = append(path, "id="+b.String())
	}
	add("type", u.Type)
	s := "pkcs11:" + strings.Join(path, ";")
	var q []string
	if u.ModulePath != "" {
		q = append(q, "module-path="+escape(u.ModulePath))
	}
	if u.PINSource != "" {
		q = append(q, "pin-source="+escape(fileURI(u.PINSource)))
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

// escape percent-encodes v for a path or query attribute value: everything
// but RFC 7512's unreserved and available characters.
func escape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:[]@!$'()*+,/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
