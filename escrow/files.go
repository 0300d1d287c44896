package escrow

import (
	"bufio"
	"bytes"
	"crypto/sha256"
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

func (sh *Share) validate() error {
	switch {
	case sh.Format != ShareFormat:
		return fmt.Errorf("format is %q, want %q", sh.Format, ShareFormat)
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
	return nil
}

// Recipient is a custodian's age recipient and its kind, as recorded in the
// transcript: "x25519", "ssh-ed25519", "ssh-rsa" or "passphrase".
type Recipient struct {
	age.Recipient
	Kind string
	// Public is the recipient string ("" for a passphrase).
	Public string
}

// ParseRecipient parses an age X25519 recipient (age1…) or an SSH public key
// (ssh-ed25519 …, ssh-rsa …).
func ParseRecipient(s string) (*Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "age1pq1"):
		return nil, errors.New("post-quantum age recipients are not supported for escrow shares yet: use an X25519 (age1…) or SSH key")
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("invalid age recipient: %w", err)
		}
		return &Recipient{Recipient: r, Kind: "x25519", Public: s}, nil
	case strings.HasPrefix(s, "ssh-ed25519 "), strings.HasPrefix(s, "ssh-rsa "):
		r, err := agessh.ParseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("invalid SSH recipient: %w", err)
		}
		return &Recipient{Recipient: r, Kind: strings.Fields(s)[0], Public: s}, nil
	}
	return nil, errors.New("recipient must be an age X25519 recipient (age1…) or an SSH public key (ssh-ed25519 …, ssh-rsa …)")
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

// PassphraseIdentity opens a passphrase-sealed share.
func PassphraseIdentity(pass []byte) (age.Identity, error) {
	if len(pass) == 0 {
		return nil, errors.New("the passphrase is empty")
	}
	return age.NewScryptIdentity(string(pass))
}

// ParseIdentities reads an age identity file (AGE-SECRET-KEY-1… lines) or an
// unencrypted SSH private key (PEM).
func ParseIdentities(data []byte) ([]age.Identity, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) && bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		id, err := agessh.ParseIdentity(data)
		if err != nil {
			return nil, fmt.Errorf("invalid SSH private key (encrypted SSH keys are not supported: use an unencrypted copy on the offline machine): %w", err)
		}
		return []age.Identity{id}, nil
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("invalid age identity file: %w", err)
	}
	return ids, nil
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
var stanzaTypes = map[string]string{"x25519": "X25519", "ssh-ed25519": "ssh-ed25519", "ssh-rsa": "ssh-rsa", "passphrase": "scrypt"}

// CheckSealed checks that a sealed share is an age file with exactly one
// recipient stanza, of the kind r writes: a share meant for one custodian
// opens for that custodian only.
func CheckSealed(data []byte, r *Recipient) error {
	hdr, err := age.ExtractHeader(dearmor(data))
	if err != nil {
		return fmt.Errorf("the sealed share is not a readable age file: %w", err)
	}
	var types []string
	for _, l := range strings.Split(string(hdr), "\n") {
		if rest, ok := strings.CutPrefix(l, "-> "); ok {
			types = append(types, strings.Fields(rest)[0])
		}
	}
	if len(types) != 1 || types[0] != stanzaTypes[r.Kind] {
		return fmt.Errorf("the sealed share has recipient stanzas %v, want one %s", types, stanzaTypes[r.Kind])
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
	if err := strictJSON(plain, &sh); err != nil {
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
	Mechanism  string    `json:"wrap_mechanism"`
	Threshold  int       `json:"threshold"`
	Shares     int       `json:"shares"`
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
	// WrappedKey is the key wrapped under the KEK with RFC 5649.
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
	b.Format, b.Group, b.KDF, b.Mechanism = BlobFormat, Group, KDF, Mechanism
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
	if err := strictJSON(data, &b); err != nil {
		return nil, fmt.Errorf("invalid escrow blob: %w", err)
	}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("invalid escrow blob: %w", err)
	}
	return &b, nil
}

func (b *Blob) validate() error {
	switch {
	case b.Format != BlobFormat:
		return fmt.Errorf("format is %q, want %q", b.Format, BlobFormat)
	case b.Group != Group || b.KDF != KDF || b.Mechanism != Mechanism:
		return fmt.Errorf("scheme %s/%s/%s is not %s/%s/%s", b.Group, b.KDF, b.Mechanism, Group, KDF, Mechanism)
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
		if len(k.WrappedKey) < 24 {
			return fmt.Errorf("keys[%d].wrapped_key is too short", i)
		}
		if kcv, err := hex.DecodeString(k.KeyCheckValue); err != nil || len(kcv) != 3 {
			return fmt.Errorf("keys[%d].key_check_value must be 3 bytes of hex", i)
		}
	}
	return nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bufio.NewReader(bytes.NewReader(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// labelRE is what a key label may be: it names files.
var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
