package hsm_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
)

func TestParseURI(t *testing.T) {
	u, err := hsm.ParseURI("pkcs11:token=ceremony;object=payments-2026;id=%01%02;slot-id=7;library-version=2.6?module-path=/usr/lib/softhsm/libsofthsm2.so")
	if err != nil {
		t.Fatal(err)
	}
	if u.Token != "ceremony" || u.Object != "payments-2026" || string(u.ID) != "\x01\x02" || u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" ||
		u.SlotID == nil || *u.SlotID != 7 || u.LibraryVersion != "2.6" {
		t.Fatalf("%+v", u)
	}
	back, err := hsm.ParseURI(u.String())
	if err != nil || !reflect.DeepEqual(back, u) {
		t.Fatalf("round trip %q: %v", u.String(), err)
	}
	for _, tt := range []struct{ uri, err string }{
		{"token=x", `must start with "pkcs11:"`},
		{"pkcs11:token", "not name=value"},
		{"pkcs11:foo=bar", `unknown path attribute "foo"`},
		{"pkcs11:token=x?pin-value=1234", "never put a PIN in a URI"},
		{"pkcs11:foo=1?pin-value=1234", `unknown path attribute "foo"`},
		{"pkcs11:token=%zz", "bad percent-encoding"},
		{"pkcs11:token=a;token=b", "given twice"},
		{"pkcs11:token=a?module-name=softhsm2", "module-name is not supported"},
		{"pkcs11:slot-id=x", "not a decimal number"},
		{"pkcs11:type=secret", "not one of secret-key"},
		{"pkcs11:library-version=2.x", "not M or M.m"},
		{"pkcs11:token=a;pin-value%3D1234=x", `unknown path attribute "pin…" (not repeated: it may hold a PIN)`},
		{"pkcs11:token=a?PIN1234=x", `unknown query attribute "pin…"`},
		{"pkcs11:token=a?pin-source=file:/a&pin-source=file:/b", `attribute "pin-source" is given twice: keep one`},
	} {
		_, err := hsm.ParseURI(tt.uri)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseURI(%q) = %v, want an error with %q", tt.uri, err, tt.err)
		}
		if err != nil && strings.Contains(err.Error(), "1234") {
			t.Errorf("error leaks the PIN: %v", err)
		}
	}
}

// TestPINSourceRFC8089 holds the inputs that found the pin-source defect
// (issue 17): "file:////x" read as "//x" and printed back as a URI read as
// "x"; "file://etc/pin" read as the relative path "etc/pin" when RFC 8089
// reads etc as a host.
func TestPINSourceRFC8089(t *testing.T) {
	for _, tt := range []struct{ source, path, err string }{
		{"file:///run/pin", "/run/pin", ""},
		{"file:/run/pin", "/run/pin", ""},
		{"file://localhost/run/pin", "/run/pin", ""},
		{"file:///run/a%20b", "/run/a b", ""},
		{"file:////x", "", "UNC-style"},
		{"file://etc/pin", "", `names the host "etc"`},
		{"file:etc/pin", "", "relative path"},
		{"file:pin", "", "relative path"},
		{"/run/pin", "", "must be a file: URI"},
		{"file:///run/pin%3Fx?y", "", "query or fragment"},
		{"file:///run/pin#x", "", "query or fragment"},
		{"file://user@localhost/pin", "", "names the host"},
	} {
		u, err := hsm.ParseURI("pkcs11:token=t?pin-source=" + strings.ReplaceAll(strings.ReplaceAll(tt.source, "%", "%25"), "?", "%3F"))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("pin-source=%s: %v, want an error with %q", tt.source, err, tt.err)
			}
			continue
		}
		if err != nil || u.PINSource != tt.path {
			t.Errorf("pin-source=%s: %+v, %v; want %q", tt.source, u, err, tt.path)
			continue
		}
		back, err := hsm.ParseURI(u.String())
		if err != nil || back.PINSource != tt.path {
			t.Errorf("pin-source=%s printed as %q reads back as %+v, %v", tt.source, u.String(), back, err)
		}
	}
}

// FuzzParseURI checks that every URI ParseURI accepts prints as a URI that
// parses to the same value, and that no error repeats a pin-value.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=ceremony;object=payments-2026",
		"pkcs11:serial=abc;id=%01?pin-source=file:/tmp/pin",
		"pkcs11:?pin-source=file:////x",
		"pkcs11:token=t?pin-source=file://etc/pin",
		"pkcs11:token=a%20b;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;slot-id=3;type=secret-key",
		"pkcs11:library-manufacturer=Mozilla%20Foundation;library-version=3.87;slot-description=x?module-path=/usr/lib/x86_64-linux-gnu/libsoftokn3.so",
		"pkcs11:token=x?pin-value=1234",
		"pkcs11:token=x?pin-source=file:///run/a%2520b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := hsm.ParseURI(s)
		if err != nil {
			if i := strings.Index(s, "pin-value="); i >= 0 {
				v, _, _ := strings.Cut(s[i+len("pin-value="):], "&")
				if len(v) >= 4 && strings.Contains(err.Error(), v) {
					t.Fatalf("error %q repeats the pin-value", err)
				}
			}
			return
		}
		u2, err := hsm.ParseURI(u.String())
		if err != nil {
			t.Fatalf("reparse of %q (from %q): %v", u.String(), s, err)
		}
		if !reflect.DeepEqual(u, u2) {
			t.Fatalf("round trip of %q: %+v != %+v", s, u2, u)
		}
	})
}
