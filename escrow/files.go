package escrow

import (
	"github.com/keyceremony/keyceremony/internal/strictjson"

	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"

	"github.com/cloudflare/circl/secretsharing"
	"golang.org/x/crypto/ssh"
)

// Share is one custodian's share: the plaintext sealed inside an age file.
// Value is the secret; everything else is public and repeated in the
// transcript.
type Share struct {
	Format     string `json:"format"`
	CeremonyID string `json:"ceremony_id"`
	Custodian  string `json:"custodian"`
	// Index is the share's x coordinate, 1..Shares.
	Index     int    `json:"index"`
	Threshold int    `json:"threshold"`
	Shares    int    `json:"shares"`
	Group     string `json:"group"`
	// Commitments are hex compressed Ristretto255 elements.
	Commitments []string `json:"commitments"`
	// EscrowSHA256 is the hex SHA-256 of the escrow blob file made with
	// this share.
	EscrowSHA256 string `json:"escrow_sha256"`
	// Value is the share's scalar, hex. Secret.
	Value string `json:"value"`
	// Escrow is the escrow blob (format v2): the keys wrapped under the KEK
	// and the commitments, public, carried by every share so that any M
	// custodians recover with their shares alone.
	Escrow *Blob `json:"escrow,omitempty"`

	// File is where the share was read from, for error messages.
	File string `json:"-"`
}

func (sh *Share) scalar() (secretsharing.Share, error) {
	b, err := hex.DecodeString(sh.Value)
	if err != nil || len(b) != 32 {
		return secretsharing.Share{}, errors.New("share value is not 32 bytes of hex: the share is corrupted")
	}
	defer clear(b)
	v := g.NewScalar()
	if err := v.UnmarshalBinary(b); err != nil {
		return secretsharing.Share{}, errors.New("share value is not a Ristretto255 scalar: the share is corrupted")
	}
	id := g.NewScalar().SetUint64(uint64(sh.Index))
	return secretsharing.Share{ID: id, Value: v}, nil
}

// Public returns the commitments this share claims to belong to.
func (sh *Share) Public() *Commitments {
	return &Commitments{CeremonyID: sh.CeremonyID, Threshold: sh.Threshold, Shares: sh.Shares, Commitments: sh.Commitments}
}

// Carry puts the escrow blob b into the share (format v2). b must be the
// blob the share names.
func (sh *Share) Carry(b *Blob) error {
	sum, err := b.SHA256()
	if err != nil {
		return err
	}
	if sum != sh.EscrowSHA256 {
		return fmt.Errorf("the escrow blob has sha256 %s, the share names %s", sum, sh.EscrowSHA256)
	}
	sh.Escrow, sh.Format = b, ShareFormat
	return sh.validate()
}

func (sh *Share) validate() error {
	switch {
	case sh.Format != ShareFormat && sh.Format != ShareFormatV1:
		return fmt.Errorf("format is %q, want %q", sh.Format, ShareFormat)
	case (sh.Format == ShareFormat) != (sh.Escrow != nil):
		return fmt.Errorf("a %s share must carry the escrow blob, and only it", ShareFormat)
	case sh.Group != Group:
		return fmt.Errorf("group is %q, want %q", sh.Group, Group)
	case sh.CeremonyID == "" || sh.Custodian == "":
		return errors.New("ceremony_id and custodian must be set")
	case sh.Threshold < 1 || sh.Shares < sh.Threshold || sh.Shares > MaxShares:
		return fmt.Errorf("threshold %d of %d is impossible", sh.Threshold, sh.Shares)
	case sh.Index < 1 || sh.Index > sh.Shares:
		return fmt.Errorf("index %d is out of range 1..%d", sh.Index, sh.Shares)
	case len(sh.Commitments) != sh.Threshold:
		return fmt.Errorf("%d commitments for threshold %d", len(sh.Commitments), sh.Threshold)
	}
	if b := sh.Escrow; b != nil {
		if err := b.validate(); err != nil {
			return fmt.Errorf("the escrow blob it carries: %w", err)
		}
		sum, err := b.SHA256()
		if err != nil {
			return err
		}
		if sum != sh.EscrowSHA256 || b.CeremonyID != sh.CeremonyID || b.Threshold != sh.Threshold || b.Shares != sh.Shares || !equal(b.Commitments, sh.Commitments) {
			return errors.New("the escrow blob it carries is not the one it names")
		}
	}
	return nil
}

// Recipient is a custodian's age recipient and its kind, as recorded in the
// transcript: "mlkem768x25519" (age's post-quantum hybrid, age1pq1…),
// "x25519", "ssh-ed25519", "ssh-rsa" or "passphrase".
type Recipient struct {
	age.Recipient
	Kind string
	// Public is the recipient string ("" for a passphrase).
	Public string
	// Key is the recipient's public key in one canonical form (the age
	// encoding, or the SSH key type and wire encoding without comment), so
	// that two recipients are compared as keys, not as text.
	Key string
	// tag is the SSH key tag age writes in the stanza ("" for age keys).
	tag string
}

// ParseRecipient parses an age recipient (age1pq1… post-quantum hybrid, or
// age1… X25519) or an SSH public key (ssh-ed25519 …, ssh-rsa …).
func ParseRecipient(s string) (*Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "age1pq1"):
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("invalid post-quantum age recipient: %w", err)
		}
		return &Recipient{Recipient: r, Kind: "mlkem768x25519", Public: s, Key: r.String()}, nil
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("invalid age recipient: %w", err)
		}
		return &Recipient{Recipient: r, Kind: "x25519", Public: s, Key: r.String()}, nil
	case strings.HasPrefix(s, "ssh-ed25519 "), strings.HasPrefix(s, "ssh-rsa "):
		r, err := agessh.ParseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("invalid SSH recipient: %w", err)
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("invalid SSH recipient: %w", err)
		}
		return &Recipient{Recipient: r, Kind: pk.Type(), Public: s, Key: sshKey(pk), tag: sshTag(pk)}, nil
	}
	return nil, errors.New("recipient must be an age recipient (age1pq1… post-quantum, or age1…) or an SSH public key (ssh-ed25519 …, ssh-rsa …)")
}

// sshKey is an SSH public key's canonical form: type and wire encoding.
func sshKey(pk ssh.PublicKey) string {
	return pk.Type() + " " + base64.StdEncoding.EncodeToString(pk.Marshal())
}

// sshTag is the tag age's SSH recipients write in their stanza: the first 4
// bytes of the SHA-256 of the key's wire encoding, unpadded base64.
func sshTag(pk ssh.PublicKey) string {
	h := sha256.Sum256(pk.Marshal())
	return base64.RawStdEncoding.EncodeToString(h[:4])
}

// SameKey reports whether two recipient strings are the same public key,
// whatever their text (an SSH key's comment, spacing). Unparsable strings
// are compared as text.
func SameKey(a, b string) bool {
	ra, err1 := ParseRecipient(a)
	rb, err2 := ParseRecipient(b)
	if err1 != nil || err2 != nil {
		return strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	return ra.Key == rb.Key
}

// testOnlyScryptWorkFactor lowers the scrypt work factor in tests; 0 keeps
// age's default (2^18, about a second).
var testOnlyScryptWorkFactor = 0

// PassphraseRecipient seals to a passphrase with age's scrypt recipient.
func PassphraseRecipient(pass []byte) (*Recipient, error) {
	if len(pass) == 0 {
		return nil, errors.New("the passphrase is empty")
	}
	r, err := age.NewScryptRecipient(string(pass))
	if err != nil {
		return nil, err
	}
	if testOnlyScryptWorkFactor > 0 {
		r.SetWorkFactor(testOnlyScryptWorkFactor)
	}
	return &Recipient{Recipient: r, Kind: "passphrase"}, nil
}

// Identity opens shares sealed to one custodian, and says whose: the kind
// and public recipient it opens for, so that a recovery records which
// identity opened which share and checks it against the transcript.
type Identity struct {
	age.Identity
	// Kind is as [Recipient.Kind].
	Kind string
	// Key is the public key it opens for, as [Recipient.Key] ("" for a
	// passphrase).
	Key string
}

// String names the identity by its public side, never its secret.
// An SSH key is named by its OpenSSH fingerprint, an age key by the start of
// its recipient.
func (id *Identity) String() string {
	if t, b64, ok := strings.Cut(id.Key, " "); ok {
		if wire, err := base64.StdEncoding.DecodeString(b64); err == nil {
			if pk, err := ssh.ParsePublicKey(wire); err == nil {
				return t + " " + ssh.FingerprintSHA256(pk)
			}
		}
	}
	if id.Key == "" {
		return id.Kind
	}
	k := id.Key
	if len(k) > 40 {
		k = k[:40] + "…"
	}
	return k
}

// PassphraseIdentity opens a passphrase-sealed share.
func PassphraseIdentity(pass []byte) (*Identity, error) {
	if len(pass) == 0 {
		return nil, errors.New("the passphrase is empty")
	}
	id, err := age.NewScryptIdentity(string(pass))
	if err != nil {
		return nil, err
	}
	return &Identity{Identity: id, Kind: "passphrase"}, nil
}

// ParseIdentities reads an age identity file (AGE-SECRET-KEY-1… and
// AGE-SECRET-KEY-PQ-1… lines) or an SSH private key (PEM). An encrypted SSH
// key asks passphrase for its passphrase only when a share is sealed to it.
func ParseIdentities(data []byte, passphrase func(ssh.PublicKey) ([]byte, error)) ([]*Identity, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) && bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		return parseSSHIdentity(data, passphrase)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("invalid age identity file: %w", err)
	}
	var out []*Identity
	for _, id := range ids {
		switch id := id.(type) {
		case *age.X25519Identity:
			out = append(out, &Identity{Identity: id, Kind: "x25519", Key: id.Recipient().String()})
		case *age.HybridIdentity:
			out = append(out, &Identity{Identity: id, Kind: "mlkem768x25519", Key: id.Recipient().String()})
		default:
			return nil, fmt.Errorf("unsupported age identity type %T", id)
		}
	}
	return out, nil
}

func parseSSHIdentity(data []byte, passphrase func(ssh.PublicKey) ([]byte, error)) ([]*Identity, error) {
	raw, err := ssh.ParseRawPrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		if missing.PublicKey == nil {
			return nil, errors.New("encrypted SSH private key in an old PEM format that does not name its public key: convert it with ssh-keygen -p -o")
		}
		if passphrase == nil {
			return nil, errors.New("the SSH private key is encrypted and its passphrase cannot be asked here")
		}
		pk := missing.PublicKey
		id, err := agessh.NewEncryptedSSHIdentity(pk, data, func() ([]byte, error) { return passphrase(pk) })
		if err != nil {
			return nil, fmt.Errorf("invalid SSH private key: %w", err)
		}
		return []*Identity{{Identity: id, Kind: pk.Type(), Key: sshKey(pk)}}, nil
	case err != nil:
		return nil, fmt.Errorf("invalid SSH private key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid SSH private key: %w", err)
	}
	id, err := agessh.ParseIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("invalid SSH private key: %w", err)
	}
	pk := signer.PublicKey()
	return []*Identity{{Identity: id, Kind: pk.Type(), Key: sshKey(pk)}}, nil
}

// CheckSSHPassphrase reports whether pass decrypts the encrypted SSH private
// key pemBytes, so that a caller can try the passphrases it was given before
// asking.
func CheckSSHPassphrase(pemBytes, pass []byte) bool {
	_, err := ssh.ParseRawPrivateKeyWithPassphrase(pemBytes, pass)
	return err == nil
}

// SealShare encrypts sh to r with age, in age's armored text form when armor
// is true (for printing). The plaintext is zeroed afterwards.
func SealShare(sh *Share, r *Recipient, armored bool) ([]byte, error) {
	if err := sh.validate(); err != nil {
		return nil, fmt.Errorf("invalid share: %w", err)
	}
	plain, err := json.MarshalIndent(sh, "", "  ")
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var buf bytes.Buffer
	var dst io.Writer = &buf
	var aw io.WriteCloser
	if armored {
		aw = armor.NewWriter(&buf)
		dst = aw
	}
	w, err := age.Encrypt(dst, r.Recipient)
	if err != nil {
		return nil, fmt.Errorf("failed to seal the share of %q: %w", sh.Custodian, err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if aw != nil {
		if err := aw.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

func dearmor(data []byte) io.Reader {
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(armor.Header)) {
		return armor.NewReader(bytes.NewReader(data))
	}
	return bytes.NewReader(data)
}

// stanzaTypes maps a recipient kind to the age stanza type it writes.
var stanzaTypes = map[string]string{"mlkem768x25519": "mlkem768x25519", "x25519": "X25519", "ssh-ed25519": "ssh-ed25519", "ssh-rsa": "ssh-rsa", "passphrase": "scrypt"}

// CheckSealed checks that a sealed share is an age file with exactly one
// recipient stanza, of the kind r writes and, for SSH keys, tagged with r's
// key: a share meant for one custodian opens for that custodian only. age's
// X25519, post-quantum and scrypt stanzas do not name their recipient, so
// for those only the kind is checked here; opening the share with the
// custodian's identity checks the rest.
func CheckSealed(data []byte, r *Recipient) error {
	hdr, err := age.ExtractHeader(dearmor(data))
	if err != nil {
		return fmt.Errorf("the sealed share is not a readable age file: %w", err)
	}
	var stanzas [][]string
	for _, l := range strings.Split(string(hdr), "\n") {
		if rest, ok := strings.CutPrefix(l, "-> "); ok {
			stanzas = append(stanzas, strings.Fields(rest))
		}
	}
	if len(stanzas) != 1 || len(stanzas[0]) == 0 || stanzas[0][0] != stanzaTypes[r.Kind] {
		var types []string
		for _, st := range stanzas {
			types = append(types, strings.Join(st[:min(1, len(st))], ""))
		}
		return fmt.Errorf("the sealed share has recipient stanzas %v, want one %s", types, stanzaTypes[r.Kind])
	}
	if r.tag != "" && (len(stanzas[0]) < 2 || stanzas[0][1] != r.tag) {
		return fmt.Errorf("the sealed share's %s stanza is for another SSH key than the custodian's (tag %s, want %s)", r.Kind, strings.Join(stanzas[0][1:min(2, len(stanzas[0]))], ""), r.tag)
	}
	return nil
}

// NeedsPassphrase reports whether a sealed share is passphrase-protected
// (its age header has an scrypt stanza), so that the caller knows to ask.
func NeedsPassphrase(data []byte) bool {
	hdr, err := age.ExtractHeader(dearmor(data))
	if err != nil {
		return false
	}
	return bytes.Contains(hdr, []byte("\n-> scrypt "))
}

// OpenShare decrypts a sealed share with ids and decodes it strictly. file
// names it in errors. A share no identity opens gives an error wrapping
// [ErrWrongIdentity]; a damaged file, a *ShareError.
func OpenShare(data []byte, file string, ids ...age.Identity) (*Share, error) {
	bad := func(reason string) error { return &ShareError{File: file, Reason: reason} }
	r, err := age.Decrypt(dearmor(data), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		switch {
		case errors.As(err, &nm), errors.Is(err, age.ErrIncorrectIdentity):
			return nil, fmt.Errorf("%s: %w: check that it is your share and that you used your own identity file or passphrase", file, ErrWrongIdentity)
		case len(ids) == 0:
			return nil, fmt.Errorf("%s: no identity or passphrase given to open the share", file)
		}
		return nil, bad("is not a readable age file (" + oneLine(err.Error()) + "): the file is damaged; use another copy")
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		return nil, bad("does not decrypt cleanly (" + oneLine(err.Error()) + "): the file is damaged; use another copy")
	}
	defer clear(plain)
	var sh Share
	if err := strictjson.Unmarshal(plain, &sh); err != nil {
		return nil, bad("opens but does not hold a keyceremony share: " + oneLine(err.Error()))
	}
	if err := sh.validate(); err != nil {
		return nil, bad("opens but is not a valid share: " + err.Error())
	}
	sh.File = file
	return &sh, nil
}

var lineBreaks = regexp.MustCompile(`\s+`)

func oneLine(s string) string { return lineBreaks.ReplaceAllString(s, " ") }

// Blob is the escrow blob file: the keys wrapped under the KEK, public
// metadata and the commitments. It holds no secret.
type Blob struct {
	Format     string    `json:"format"`
	CeremonyID string    `json:"ceremony_id"`
	Created    time.Time `json:"created"`
	Group      string    `json:"group"`
	KDF        string    `json:"kdf"`
	// Scheme is [WrapScheme]. Blobs written before it was named by its
	// standard have LegacyMechanism ("wrap_mechanism") instead, read as
	// WrapScheme ([Blob.Wrapping]).
	Scheme          string `json:"wrap_scheme,omitempty"`
	LegacyMechanism string `json:"wrap_mechanism,omitempty"`
	Threshold       int    `json:"threshold"`
	Shares          int    `json:"shares"`
	// Commitments are hex compressed Ristretto255 elements.
	Commitments []string `json:"commitments"`
	// KEKCheckValue is the KEK's check value (hex): recombined shares are
	// checked against it before the token is touched.
	KEKCheckValue string          `json:"kek_check_value"`
	Custodians    []BlobCustodian `json:"custodians"`
	Keys          []BlobKey       `json:"keys"`
}

// BlobCustodian names who holds share Index, and how it is sealed.
type BlobCustodian struct {
	Name          string `json:"name"`
	Index         int    `json:"index"`
	RecipientType string `json:"recipient_type"`
}

// BlobKey is one escrowed key.
type BlobKey struct {
	Label string `json:"label"`
	// ID is the key's CKA_ID, hex.
	ID         string   `json:"id"`
	KeyType    string   `json:"key_type"`
	KMSKeyARNs []string `json:"kms_key_arns"`
	// WrappedKey is the key wrapped under the KEK with RFC 5649 (40 bytes).
	WrappedKey []byte `json:"wrapped_key"`
	// KeyCheckValue is the key's check value from the token, hex.
	KeyCheckValue string `json:"key_check_value"`
}

// Custodian returns the custodian the blob lists for share index i, or nil.
func (b *Blob) Custodian(i int) *BlobCustodian {
	for j := range b.Custodians {
		if b.Custodians[j].Index == i {
			return &b.Custodians[j]
		}
	}
	return nil
}

// Public returns the commitments shares are checked against.
func (b *Blob) Public() *Commitments {
	return &Commitments{CeremonyID: b.CeremonyID, Threshold: b.Threshold, Shares: b.Shares, Commitments: b.Commitments}
}

// Marshal encodes b, indented, with a final newline.
func (b *Blob) Marshal() ([]byte, error) {
	b.Format, b.Group, b.KDF, b.Scheme, b.LegacyMechanism = BlobFormat, Group, KDF, WrapScheme, ""
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("invalid escrow blob: %w", err)
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// SHA256 is the hex SHA-256 of b in canonical form: as keyceremony writes
// the file (indented JSON, a final newline), with Created in UTC. A blob file
// keyceremony wrote is in canonical form, so this is its file hash; a copy
// that was re-serialised or had its line endings converted, and decodes to
// the same blob, has the same canonical hash.
func (b *Blob) SHA256() (string, error) {
	c := *b
	c.Created = c.Created.UTC()
	out, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(out, '\n'))
	return hex.EncodeToString(sum[:]), nil
}

// ParseBlob decodes and validates an escrow blob file.
func ParseBlob(data []byte) (*Blob, error) {
	var b Blob
	if err := strictjson.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("invalid escrow blob: %w", err)
	}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("invalid escrow blob: %w", err)
	}
	return &b, nil
}

// Wrapping returns the blob's wrapping scheme, [WrapScheme], for new blobs
// and for those that named it by LegacyMechanism. The blob is left as read:
// its canonical hash ([Blob.SHA256]) covers the field as it was written.
func (b *Blob) Wrapping() string {
	if b.LegacyMechanism == LegacyMechanism {
		return WrapScheme
	}
	return b.Scheme
}

func (b *Blob) validate() error {
	switch {
	case b.Format != BlobFormat:
		return fmt.Errorf("format is %q, want %q", b.Format, BlobFormat)
	case (b.Scheme == "") == (b.LegacyMechanism == ""):
		return errors.New("exactly one of wrap_scheme and (in older files) wrap_mechanism must be set")
	case b.LegacyMechanism != "" && b.LegacyMechanism != LegacyMechanism:
		return fmt.Errorf("wrap_mechanism %q is not %s", b.LegacyMechanism, LegacyMechanism)
	case b.Group != Group || b.KDF != KDF || b.Scheme != "" && b.Scheme != WrapScheme:
		return fmt.Errorf("scheme %s/%s/%s is not %s/%s/%s", b.Group, b.KDF, b.Scheme, Group, KDF, WrapScheme)
	case b.CeremonyID == "":
		return errors.New("ceremony_id is empty")
	case b.Threshold < 1 || b.Shares < b.Threshold || b.Shares > MaxShares:
		return fmt.Errorf("threshold %d of %d is impossible", b.Threshold, b.Shares)
	case len(b.Commitments) != b.Threshold:
		return fmt.Errorf("%d commitments for threshold %d", len(b.Commitments), b.Threshold)
	case len(b.KEKCheckValue) != 6:
		return errors.New("kek_check_value must be 3 bytes of hex")
	case len(b.Keys) == 0:
		return errors.New("no keys")
	}
	if _, err := decodeCommitments(b.Commitments); err != nil {
		return err
	}
	if len(b.Custodians) != b.Shares {
		return fmt.Errorf("%d custodians for %d shares", len(b.Custodians), b.Shares)
	}
	for i, c := range b.Custodians {
		if c.Index != i+1 || c.Name == "" {
			return fmt.Errorf("custodians[%d] must be share %d with a name", i, i+1)
		}
	}
	seen := map[string]bool{}
	for i, k := range b.Keys {
		if !labelRE.MatchString(k.Label) || seen[k.Label] {
			return fmt.Errorf("keys[%d].label %q is repeated or not 1-64 letters, digits, '.', '_' or '-'", i, k.Label)
		}
		seen[k.Label] = true
		if id, err := hex.DecodeString(k.ID); err != nil || len(id) == 0 {
			return fmt.Errorf("keys[%d].id must be hex", i)
		}
		if len(k.WrappedKey) != WrappedKeyLen {
			return fmt.Errorf("keys[%d].wrapped_key is %d bytes; an RFC 5649 wrap of an AES-256 key is %d", i, len(k.WrappedKey), WrappedKeyLen)
		}
		if kcv, err := hex.DecodeString(k.KeyCheckValue); err != nil || len(kcv) != 3 {
			return fmt.Errorf("keys[%d].key_check_value must be 3 bytes of hex", i)
		}
	}
	return nil
}

// labelRE is what a key label may be: it names files.
var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
