package hsm

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/pkcs11"
)

// selection is every token, slot and library attribute a Config or a URI
// names (RFC 7512 section 2.3): each one narrows the choice, none is ignored.
type selection struct {
	label, serial, manufacturer, model             string
	slotDescription, slotManufacturer              string
	slotID                                         *uint
	libManufacturer, libDescription, libVersion    string
	hasLabel, hasSerial, hasManufacturer, hasModel bool
}

// selector merges the Config's label and serial with its URI's attributes;
// the two must not disagree.
func (c Config) selector() (*selection, error) {
	s := &selection{label: c.TokenLabel, serial: c.TokenSerial, hasLabel: c.TokenLabel != "", hasSerial: c.TokenSerial != ""}
	if u := c.URI; u != nil {
		for _, f := range []struct {
			name     string
			dst      *string
			has      *bool
			uriValue string
			set      bool
		}{
			{"token", &s.label, &s.hasLabel, u.Token, u.Token != ""},
			{"serial", &s.serial, &s.hasSerial, u.Serial, u.Serial != ""},
			{"manufacturer", &s.manufacturer, &s.hasManufacturer, u.Manufacturer, u.Manufacturer != ""},
			{"model", &s.model, &s.hasModel, u.Model, u.Model != ""},
		} {
			if !f.set {
				continue
			}
			if *f.has && *f.dst != f.uriValue {
				return nil, fmt.Errorf("%w: the URI's %s=%q contradicts the configured %q", ErrTokenNotFound, f.name, f.uriValue, *f.dst)
			}
			*f.dst, *f.has = f.uriValue, true
		}
		s.slotDescription, s.slotManufacturer, s.slotID = u.SlotDescription, u.SlotManufacturer, u.SlotID
		s.libManufacturer, s.libDescription, s.libVersion = u.LibraryManufacturer, u.LibraryDescription, u.LibraryVersion
	}
	if !s.hasLabel && !s.hasSerial && s.slotID == nil {
		return nil, fmt.Errorf("%w: no token label, serial or slot given: set token.label, token.serial or token.uri", ErrTokenNotFound)
	}
	return s, nil
}

func (s *selection) matches(lib pkcs11.Info, si pkcs11.SlotInfo, ti pkcs11.TokenInfo, slot uint) bool {
	eq := func(want, have string, set bool) bool { return !set || want == trim(have) }
	return eq(s.label, ti.Label, s.hasLabel) && eq(s.serial, ti.SerialNumber, s.hasSerial) &&
		eq(s.manufacturer, ti.ManufacturerID, s.hasManufacturer) && eq(s.model, ti.Model, s.hasModel) &&
		eq(s.slotDescription, si.SlotDescription, s.slotDescription != "") &&
		eq(s.slotManufacturer, si.ManufacturerID, s.slotManufacturer != "") &&
		(s.slotID == nil || *s.slotID == slot) &&
		eq(s.libManufacturer, lib.ManufacturerID, s.libManufacturer != "") &&
		eq(s.libDescription, lib.LibraryDescription, s.libDescription != "") &&
		(s.libVersion == "" || versionMatches(s.libVersion, lib.LibraryVersion))
}

// versionMatches compares an RFC 7512 library-version ("M" or "M.m") with
// the module's.
func versionMatches(want string, have pkcs11.Version) bool {
	major, minor, hasMinor := strings.Cut(want, ".")
	if major != strconv.Itoa(int(have.Major)) {
		return false
	}
	return !hasMinor || minor == strconv.Itoa(int(have.Minor))
}

// String names the selection in messages.
func (s *selection) String() string {
	var parts []string
	add := func(k, v string, set bool) {
		if set {
			parts = append(parts, fmt.Sprintf("%s %q", k, v))
		}
	}
	add("label", s.label, s.hasLabel)
	add("serial", s.serial, s.hasSerial)
	add("manufacturer", s.manufacturer, s.hasManufacturer)
	add("model", s.model, s.hasModel)
	add("slot-description", s.slotDescription, s.slotDescription != "")
	add("slot-manufacturer", s.slotManufacturer, s.slotManufacturer != "")
	if s.slotID != nil {
		parts = append(parts, fmt.Sprintf("slot-id %d", *s.slotID))
	}
	add("library-manufacturer", s.libManufacturer, s.libManufacturer != "")
	add("library-description", s.libDescription, s.libDescription != "")
	add("library-version", s.libVersion, s.libVersion != "")
	return strings.Join(parts, ", ")
}
