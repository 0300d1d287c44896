package sshsig

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// AllowedSigner is one usable line of an OpenSSH allowed-signers file
// (ssh-keygen(1), "ALLOWED SIGNERS"), as OpenSSH's sshsig.c reads it.
type AllowedSigner struct {
	Line       int    // line number in the file, from 1
	Principals string // comma-separated patterns, quotes removed
	// CA marks a cert-authority line: Key is the CA that certifies the
	// signing keys, and the certificate must name the principal.
	CA bool
	// Namespaces holds the namespaces="..." patterns; nil allows any.
	Namespaces *string
	// ValidAfter and ValidBefore are Unix seconds; 0 means unset.
	ValidAfter, ValidBefore uint64
	Key                     ssh.PublicKey
}

// SkippedLine is a line that is neither blank nor a comment and that
// ssh-keygen -Y verify ignores because it cannot parse it.
type SkippedLine struct {
	Line   int
	Reason string
}

// AllowedSigners is a parsed allowed-signers file.
type AllowedSigners []AllowedSigner

// ParseAllowedSigners reads an allowed-signers file exactly as ssh-keygen
// -Y verify does: principals (plain or double-quoted, with '*', '?' and '!'
// patterns), then optional options (cert-authority, namespaces="...",
// valid-after="...", valid-before="...", names in any case), then the key.
// Like OpenSSH it skips a line it cannot parse rather than failing the
// file; those lines come back in skipped so the caller can warn.
func ParseAllowedSigners(data []byte) (signers AllowedSigners, skipped []SkippedLine) {
	for i, line := range bytes.Split(data, []byte("\n")) {
		// getline keeps NUL bytes, but every C string function after it
		// stops at the first one.
		if j := bytes.IndexByte(line, 0); j >= 0 {
			line = line[:j]
		}
		s, err := parseAllowedLine(string(line))
		switch {
		case errors.Is(err, errBlank):
		case err != nil:
			skipped = append(skipped, SkippedLine{Line: i + 1, Reason: printable(err.Error())})
		default:
			s.Line = i + 1
			signers = append(signers, s)
		}
	}
	return signers, skipped
}

var errBlank = errors.New("blank or comment line")

// printable replaces what a terminal would not show as text (control
// characters, escapes, invalid UTF-8) with '?': errors from x/crypto can
// quote bytes of a key blob, and the reasons are printed.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsGraphic(r) {
			return '?'
		}
		return r
	}, s)
}

// whitespace is OpenSSH's WHITESPACE (misc.c), which strdelim skips.
const whitespace = " \t\r\n"

func parseAllowedLine(line string) (AllowedSigner, error) {
	var a AllowedSigner
	cp := strings.TrimLeft(line, whitespace)
	if cp == "" || cp[0] == '#' {
		return a, errBlank
	}
	principals, cp, ok := strdelimw(cp)
	if !ok {
		return a, errors.New("invalid line")
	}
	a.Principals = principals
	var opts string
	key, err := readKey(cp)
	if err != nil {
		// Not a key: options first (sshkey_advance_past_options).
		i, quoted := 0, false
		for ; i < len(cp) && (quoted || cp[i] != ' ' && cp[i] != '\t'); i++ {
			if cp[i] == '\\' && i+1 < len(cp) && cp[i+1] == '"' {
				i++
			} else if cp[i] == '"' {
				quoted = !quoted
			}
		}
		switch {
		case i == len(cp) && quoted:
			return a, errors.New("invalid options: unterminated quote")
		case i == len(cp):
			return a, errors.New("missing key")
		}
		opts = cp[:i]
		if key, err = readKey(strings.TrimLeft(cp[i+1:], " \t")); err != nil {
			return a, fmt.Errorf("invalid key: %v", err)
		}
	}
	a.Key = key
	if err := a.parseOptions(opts); err != nil {
		return a, fmt.Errorf("bad options: %v", err)
	}
	return a, nil
}

// strdelimw is OpenSSH's strdelimw: the next token, ending at white space;
// a double quote (anywhere in it) is dropped and the token then runs to the
// next quote. ok is false where OpenSSH finds no token or nothing after it.
func strdelimw(s string) (tok, rest string, ok bool) {
	i := strings.IndexAny(s, whitespace+`"`)
	if i < 0 {
		return "", "", false
	}
	if s[i] != '"' {
		return s[:i], strings.TrimLeft(s[i+1:], whitespace), true
	}
	s = s[:i] + s[i+1:]
	j := strings.IndexByte(s[i:], '"')
	if j < 0 {
		return "", "", false
	}
	j += i
	return s[:j], strings.TrimLeft(s[j+1:], whitespace), true
}

// readKey is OpenSSH's sshkey_read: an exact key type name, spaces or tabs,
// the base64 blob up to the next space or tab, and a blob of that type.
func readKey(s string) (ssh.PublicKey, error) {
	sp := strings.IndexAny(s, " \t")
	if sp < 0 {
		return nil, errors.New("no key")
	}
	typ := s[:sp]
	b64 := strings.TrimLeft(s[sp:], " \t")
	if b64 == "" {
		return nil, errors.New("no key after the key type")
	}
	if end := strings.IndexAny(b64, " \t"); end >= 0 {
		b64 = b64[:end]
	}
	blob, err := decodeBase64([]byte(b64))
	if err != nil {
		return nil, fmt.Errorf("key is not base64: %v", err)
	}
	k, err := parseKey(blob)
	if err != nil {
		return nil, err
	}
	if k.Type() != typ {
		return nil, fmt.Errorf("key type %q does not match the %s key", typ, k.Type())
	}
	return k, nil
}

// parseOptions is OpenSSH's sshsigopt_parse.
func (a *AllowedSigner) parseOptions(opts string) error {
	for opts != "" {
		switch {
		case len(opts) >= len("cert-authority") && strings.EqualFold(opts[:len("cert-authority")], "cert-authority"):
			a.CA = true
			opts = opts[len("cert-authority"):]
		case optMatch(&opts, "namespaces"):
			if a.Namespaces != nil {
				return errors.New(`multiple "namespaces" clauses`)
			}
			v, err := optDequote(&opts)
			if err != nil {
				return err
			}
			a.Namespaces = &v
		case optMatch(&opts, "valid-after"):
			if err := optTime(&opts, &a.ValidAfter, "valid-after"); err != nil {
				return err
			}
		case optMatch(&opts, "valid-before"):
			if err := optTime(&opts, &a.ValidBefore, "valid-before"); err != nil {
				return err
			}
		}
		if opts == "" {
			break
		}
		if opts[0] != ',' {
			return errors.New("unknown key option")
		}
		if opts = opts[1:]; opts == "" {
			return errors.New("unexpected end-of-options")
		}
	}
	if a.ValidAfter != 0 && a.ValidBefore != 0 && a.ValidBefore <= a.ValidAfter {
		return errors.New(`"valid-before" time is before "valid-after"`)
	}
	return nil
}

// optMatch consumes `name=` in any case.
func optMatch(opts *string, name string) bool {
	s := *opts
	if len(s) > len(name) && strings.EqualFold(s[:len(name)], name) && s[len(name)] == '=' {
		*opts = s[len(name)+1:]
		return true
	}
	return false
}

// optTime reads the quoted time of option name into t, once.
func optTime(opts *string, t *uint64, name string) error {
	if *t != 0 {
		return fmt.Errorf("multiple %q clauses", name)
	}
	v, err := optDequote(opts)
	if err != nil {
		return err
	}
	if *t = parseAbsoluteTime(v); *t == 0 {
		return fmt.Errorf("invalid %q time", name)
	}
	return nil
}

// optDequote is OpenSSH's opt_dequote: a double-quoted value in which \"
// stands for a quote.
func optDequote(opts *string) (string, error) {
	s := *opts
	if s == "" || s[0] != '"' {
		return "", errors.New("missing start quote")
	}
	var v strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '"':
			*opts = s[i+1:]
			return v.String(), nil
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '"':
			i++
		}
		v.WriteByte(s[i])
	}
	return "", errors.New("missing end quote")
}

// parseAbsoluteTime is OpenSSH's parse_absolute_time: YYYYMMDD[HHMM[SS]],
// UTC with a "Z" or "UTC" suffix and local time otherwise; 0 if invalid.
// Fields out of strptime's ranges are refused; within them, time.Date
// normalises (20230231 is 3 March) as mktime does. Unlike strptime, spaces
// inside the digits are refused.
func parseAbsoluteTime(s string) uint64 {
	loc := time.Local
	switch u := strings.ToUpper(s); {
	case len(s) > 1 && strings.HasSuffix(u, "Z"):
		s, loc = s[:len(s)-1], time.UTC
	case len(s) > 3 && strings.HasSuffix(u, "UTC"):
		s, loc = s[:len(s)-3], time.UTC
	}
	if len(s) != 8 && len(s) != 12 && len(s) != 14 {
		return 0
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0
		}
	}
	var f [6]int // year, month, day, hour, minute, second
	for i, at := 0, 0; at < len(s); i++ {
		w := 2
		if i == 0 {
			w = 4
		}
		for _, c := range s[at : at+w] {
			f[i] = f[i]*10 + int(c-'0')
		}
		at += w
	}
	if f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 61 {
		return 0
	}
	t := time.Date(f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], 0, loc).Unix()
	if t <= 0 {
		return 0
	}
	return uint64(t)
}

// Allows reports whether principal may sign with key under namespace now.
func (a AllowedSigners) Allows(principal string, key ssh.PublicKey, namespace string) bool {
	return a.AllowsAt(principal, key, namespace, time.Now())
}

// AllowsAt is [AllowedSigners.Allows] at time now, as ssh-keygen -Y verify
// -O verify-time=... decides: some line lists the principal, names the key
// (or, with cert-authority, the CA of a valid user certificate naming the
// principal), allows the namespace and is valid at now.
func (a AllowedSigners) AllowsAt(principal string, key ssh.PublicKey, namespace string, now time.Time) bool {
	t := uint64(max(now.Unix(), 0))
	for _, s := range a {
		if !match(s.Principals, principal) {
			continue
		}
		if cert, ok := key.(*ssh.Certificate); s.CA {
			if !ok || !bytes.Equal(plain(cert.SignatureKey).Marshal(), plain(s.Key).Marshal()) || !certAuthorises(cert, principal, t) {
				continue
			}
		} else if !bytes.Equal(s.Key.Marshal(), key.Marshal()) {
			continue
		}
		if s.Namespaces != nil && !match(*s.Namespaces, namespace) {
			continue
		}
		if s.ValidAfter != 0 && t < s.ValidAfter || s.ValidBefore != 0 && t > s.ValidBefore {
			continue
		}
		return true
	}
	return false
}

// plain is the key a certificate certifies, or k itself.
func plain(k ssh.PublicKey) ssh.PublicKey {
	if c, ok := k.(*ssh.Certificate); ok {
		return c.Key
	}
	return k
}

// certAuthorises is OpenSSH's sshkey_cert_check_authority for a user
// certificate that must name the principal exactly.
func certAuthorises(c *ssh.Certificate, principal string, t uint64) bool {
	if c.CertType != ssh.UserCert || t < c.ValidAfter || t >= c.ValidBefore {
		return false
	}
	for _, p := range c.ValidPrincipals {
		if p == principal {
			return true
		}
	}
	return false
}
