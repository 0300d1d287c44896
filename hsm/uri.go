package hsm

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// URI is the subset of an RFC 7512 PKCS#11 URI that keyceremony uses to
// choose a token and an object, for example
// "pkcs11:token=ceremony;object=payments-2026".
type URI struct {
	// Token is the token label (the "token" path attribute).
	Token string
	// Serial is the token serial number (the "serial" path attribute).
	Serial string
	// Manufacturer and Model narrow the token further when set.
	Manufacturer string
	Model        string
	// Object is the object label (the "object" path attribute).
	Object string
	// ID is the object's CKA_ID (the "id" path attribute, percent-encoded).
	ID []byte
	// ModulePath is the "module-path" query attribute.
	ModulePath string
	// PINSource is the "pin-source" query attribute (only "file:" URIs).
	PINSource string
}

var errPINValue = errors.New("pkcs11 URI contains pin-value: never put a PIN in a URI; use a PIN file, the PIN environment variable or the prompt")

// ParseURI parses a "pkcs11:" URI as defined by RFC 7512. It rejects
// "pin-value": a PIN must never be written on a command line or in a config
// file, where it would end up in shell history and transcripts.
func ParseURI(s string) (*URI, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, errors.New(`a pkcs11 URI must start with "pkcs11:"`)
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{}
	if path != "" {
		for attr := range strings.SplitSeq(path, ";") {
			k, v, err := splitAttr(attr)
			if err != nil {
				return nil, err
			}
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
				u.ID = []byte(v)
			case "pin-value":
				return nil, errPINValue
			case "type", "library-manufacturer", "library-description", "library-version", "slot-description", "slot-manufacturer", "slot-id":
				// Accepted by RFC 7512; keyceremony does not narrow by them.
			default:
				return nil, fmt.Errorf("pkcs11 URI: unknown path attribute %q (use token, serial, object or id)", k)
			}
		}
	}
	if query != "" {
		for attr := range strings.SplitSeq(query, "&") {
			k, v, err := splitAttr(attr)
			if err != nil {
				return nil, err
			}
			switch k {
			case "module-path":
				u.ModulePath = v
			case "pin-source":
				if !strings.HasPrefix(v, "file:") {
					return nil, errors.New("pkcs11 URI: pin-source must be a file: URI")
				}
				u.PINSource = strings.TrimPrefix(strings.TrimPrefix(v, "file:"), "//")
			case "pin-value":
				return nil, errPINValue
			case "module-name":
			default:
				return nil, fmt.Errorf("pkcs11 URI: unknown query attribute %q (use module-path or pin-source)", k)
			}
		}
	}
	return u, nil
}

// splitAttr splits name=value. Its errors, like ParseURI's, never repeat
// the URI or a value: a URI may hold a PIN.
func splitAttr(attr string) (string, string, error) {
	k, v, ok := strings.Cut(attr, "=")
	if !ok || k == "" {
		return "", "", errors.New("pkcs11 URI: an attribute is not name=value")
	}
	dv, err := url.PathUnescape(v)
	if err != nil {
		return "", "", fmt.Errorf("pkcs11 URI: attribute %q has bad percent-encoding", k)
	}
	return k, dv, nil
}

// String formats u as a PKCS#11 URI.
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
	add("object", u.Object)
	if len(u.ID) > 0 {
		var b strings.Builder
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		path = append(path, "id="+b.String())
	}
	s := "pkcs11:" + strings.Join(path, ";")
	var q []string
	if u.ModulePath != "" {
		q = append(q, "module-path="+escape(u.ModulePath))
	}
	if u.PINSource != "" {
		q = append(q, "pin-source=file:"+escape(u.PINSource))
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

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
