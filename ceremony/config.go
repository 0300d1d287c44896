package ceremony

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/wrap"
)

// DefaultPINEnv is the environment variable the non-interactive runner reads
// the user PIN from when the config names no other source.
const DefaultPINEnv = "KEYCEREMONY_PIN"

// Config is a ceremony configuration file (YAML, decoded strictly).
type Config struct {
	Ceremony CeremonyConfig `yaml:"ceremony"`
	Token    TokenConfig    `yaml:"token"`
	KMS      KMSConfig      `yaml:"kms"`
	Keys     []KeyConfig    `yaml:"keys"`
	// Escrow is required by Run: a ceremony escrows its keys before any
	// upload (ErrNoEscrow otherwise).
	Escrow *EscrowConfig `yaml:"escrow"`

	// dir is the directory of the config file; relative paths are resolved
	// against it.
	dir  string
	hash string
	// raw is the file's bytes: a ceremony keeps a copy (amend.go).
	raw []byte
	// where caches the KMS endpoint and Region the plan shows.
	where *[2]string
}

// CeremonyConfig names the ceremony and where its evidence goes.
type CeremonyConfig struct {
	// ID names the ceremony in the transcript and in every file it writes.
	ID string `yaml:"id"`
	// Operator is the person at the keyboard.
	Operator string `yaml:"operator"`
	// OutDir receives the transcript, bundles and public keys. It is
	// created if missing; existing files in it are never overwritten.
	OutDir string `yaml:"out_dir"`
}

// TokenConfig chooses the PKCS#11 module, token and PIN source.
type TokenConfig struct {
	Module string `yaml:"module"`
	// InitArgs are the module's initialisation parameters (C_Initialize's
	// pReserved), for modules that need them: NSS softokn takes
	// "configdir='sql:DIR' certPrefix='' keyPrefix='' secmod=''
	// flags=optimizeSpace". Not secret: never put a PIN here.
	InitArgs string `yaml:"init_args"`
	Label    string `yaml:"label"`
	Serial   string `yaml:"serial"`
	// URI is an RFC 7512 PKCS#11 URI, an alternative to Label/Serial/Module.
	URI string `yaml:"uri"`
	// PINEnv names an environment variable holding the user PIN.
	PINEnv string `yaml:"pin_env"`
	// PINFile is a file holding the user PIN (a trailing newline is ignored).
	PINFile string `yaml:"pin_file"`
	// SigningKey labels the transcript-signing key on the token; it is
	// generated on first use.
	SigningKey string `yaml:"signing_key"`
	// SealAlgorithm, when set, is the only kind of signing key the
	// ceremony makes or accepts: "ecdsa-p256" or "rsa-3072" (recorded in
	// the open-token event). Empty: ECDSA P-256 where the probe proves the
	// token makes it, else RSA 3072.
	SealAlgorithm string `yaml:"seal_algorithm"`
	// Parallel is how many keys generate-keys makes at once, each in a
	// session of its own (1 to MaxParallel; fewer when the token allows
	// fewer sessions); 0 means DefaultTokenParallel.
	Parallel int `yaml:"parallel"`
	// ProbeAll makes the probe try every kind of signing key (keyceremony
	// probe). Not read from the file.
	ProbeAll bool `yaml:"-"`
	// KeyLabel and KeyID name the key a command will choose on the token
	// (wrap), so that an ambiguous one is refused before the login where
	// the token shows it (see hsm.Config). Not read from the file.
	KeyLabel string `yaml:"-"`
	KeyID    []byte `yaml:"-"`
}

// KMSConfig chooses the Region, profile and wrapping parameters.
type KMSConfig struct {
	Region            string `yaml:"region"`
	Profile           string `yaml:"profile"`
	WrappingAlgorithm string `yaml:"wrapping_algorithm"`
	WrappingKeySpec   string `yaml:"wrapping_key_spec"`
	// AllowHostWrap lets the ceremony wrap on the host when the token cannot
	// wrap with the chosen algorithm inside the HSM: the key material is
	// then in host memory for a moment (see hsm.Token.WrapForKMS).
	AllowHostWrap bool `yaml:"allow_host_wrap"`
	// Parallel is how many keys the online steps work on at once (1 to
	// MaxParallel); 0 means DefaultParallel.
	Parallel int `yaml:"parallel"`
	// HostWrapAllowedBy says who allowed host wrapping, for the transcript:
	// "kms.allow_host_wrap" or a command-line flag. Not read from the file.
	HostWrapAllowedBy string `yaml:"-"`
	// InsecureUnpinnedWrappingKey lets an offline ceremony use params files
	// whose wrapping key is not pinned (keys[].wrapping_key_sha256): a
	// swapped file then sends the keys to whoever made it. The transcript
	// records it and the plan shows it as a warning.
	InsecureUnpinnedWrappingKey bool `yaml:"insecure_unpinned_wrapping_key"`
}

// UnpinnedOption names the config option that lets wrapping keys go
// unpinned, as the transcript and the plan name it.
const UnpinnedOption = "kms.insecure_unpinned_wrapping_key"

// ReplicaConfig is one replica Region of a multi-Region key: Region in a
// connected ceremony; in an offline one, the ParamsFile fetched for the
// replica (keyceremony params fetch --key REPLICA_ARN) and its pin.
type ReplicaConfig struct {
	Region            string `yaml:"region"`
	ParamsFile        string `yaml:"params_file"`
	WrappingKeySHA256 string `yaml:"wrapping_key_sha256"`
}

// regionRE is the form of an AWS Region name (as KMS checks it).
var regionRE = regexp.MustCompile(`^([a-z]+-){2,3}[0-9]+$`)

// validate checks replica i of key k (path names it).
func (r *ReplicaConfig) validate(path string, k *KeyConfig, seen map[string]bool) error {
	switch {
	case k.ParamsFile == "" && r.ParamsFile != "":
		return fmt.Errorf("%s.params_file goes with an offline key (keys[].params_file); a connected ceremony fetches the replica's parameters itself: remove it", path)
	case k.ParamsFile == "" && !regionRE.MatchString(r.Region):
		return fmt.Errorf("%s.region %q must be an AWS Region such as us-east-1", path, r.Region)
	case k.ParamsFile != "" && r.ParamsFile == "":
		return fmt.Errorf("%s.params_file must be set: an offline key's replica is wrapped for the parameters fetched in its Region (keyceremony params fetch --key REPLICA_ARN)", path)
	case k.ParamsFile != "" && r.Region != "":
		return fmt.Errorf("%s.region: an offline replica's Region is the one its params_file names: remove it", path)
	}
	if r.WrappingKeySHA256 != "" {
		if b, err := hex.DecodeString(r.WrappingKeySHA256); err != nil || len(b) != 32 || r.ParamsFile == "" {
			return fmt.Errorf("%s.wrapping_key_sha256 must be 64 hex digits, with params_file", path)
		}
	}
	name := r.Region + "\x00" + filepath.Clean(r.ParamsFile)
	if seen[name] {
		return fmt.Errorf("%s names a replica twice: list each Region once", path)
	}
	seen[name] = true
	return nil
}

// KeyConfig is one key to generate and import.
type KeyConfig struct {
	// Label is the key's CKA_LABEL on the token.
	Label string `yaml:"label"`
	// ID is the key's CKA_ID in hex; empty means random.
	ID string `yaml:"id"`
	// KMSKeyID is an existing KMS key (ARN or id) with Origin EXTERNAL in
	// PendingImport. Exactly one of KMSKeyID and Create is set.
	KMSKeyID string `yaml:"kms_key_id"`
	// Create makes a new KMS key with Origin EXTERNAL.
	Create bool `yaml:"create"`
	// MultiRegion makes the created key a multi-Region primary (mrk-),
	// replicated into Replicas by the ceremony (or later with keyceremony
	// replicate).
	MultiRegion bool `yaml:"multi_region"`
	// Replicas are the other Regions of a multi-Region key: the ceremony
	// replicates the primary there (ReplicateKey) and imports the same
	// material into each replica with that Region's own import parameters.
	Replicas []ReplicaConfig `yaml:"replicas,omitempty"`
	// Rotate imports the new key's material into KMSKeyID, an existing key
	// that already has material, as NEW_KEY_MATERIAL, then rotates the key
	// to it (RotateKeyOnDemand). The old materials stay with the key for
	// decryption; their escrows stay recoverable. With ParamsFile (offline)
	// the transcript records the intent and keyceremony upload does it.
	Rotate bool `yaml:"rotate"`
	// ParamsFile is a params file (keyceremony params fetch) carried into
	// the room: the key is then wrapped for the KMS key it names, and the
	// ceremony runs offline. Either every key has one or none.
	ParamsFile string `yaml:"params_file"`
	// WrappingKeySHA256 pins the wrapping public key a params file must
	// carry (hex SHA-256 of its DER, as params fetch prints it): a params
	// file swapped on its way into the room is refused.
	WrappingKeySHA256 string `yaml:"wrapping_key_sha256"`
	// Description is the description of a created KMS key.
	Description string `yaml:"description"`
	// ValidTo (RFC 3339), ValidFor (e.g. "90d", "2160h") or DoesNotExpire:
	// exactly one says when the imported material expires in KMS.
	ValidTo       string `yaml:"valid_to"`
	ValidFor      string `yaml:"valid_for"`
	DoesNotExpire bool   `yaml:"does_not_expire"`
}

// LoadConfig reads and validates a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	cfg.dir = abs
	return cfg, nil
}

// ParseConfig decodes YAML strictly (unknown fields are errors) and
// validates it. Errors name the field: "keys[0].valid_for: ...".
func ParseConfig(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty")
		}
		return nil, fmt.Errorf("invalid config: %s", yamlError(err))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid config: more than one YAML document")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.hash = sha256Hex(data)
	cfg.raw = append([]byte(nil), data...)
	cfg.dir = "."
	return &cfg, nil
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) validate() error {
	if !idRE.MatchString(c.Ceremony.ID) {
		return fmt.Errorf("ceremony.id %q must be 1-64 letters, digits, '.', '_' or '-'", c.Ceremony.ID)
	}
	if c.Ceremony.OutDir == "" {
		return errors.New("ceremony.out_dir must be set: it receives the transcript and bundles")
	}
	if op := c.Ceremony.Operator; transcripts.Printable(op) != op {
		return fmt.Errorf("ceremony.operator %q must be printable text on one line: it is printed in the evidence", op)
	}
	if err := c.Token.validate(); err != nil {
		return err
	}
	if err := c.KMS.validate(); err != nil {
		return err
	}
	if len(c.Keys) == 0 {
		return errors.New("keys must list at least one key")
	}
	offline := 0
	for i := range c.Keys {
		if c.Keys[i].ParamsFile != "" {
			offline++
		}
		if err := c.Keys[i].validate(fmt.Sprintf("keys[%d]", i)); err != nil {
			return err
		}
	}
	if offline != 0 && offline != len(c.Keys) {
		return errors.New("keys: either every key has a params_file (an offline ceremony) or none does")
	}
	if err := c.checkDuplicates(); err != nil {
		return err
	}
	if c.KMS.InsecureUnpinnedWrappingKey && offline == 0 {
		return errors.New("kms.insecure_unpinned_wrapping_key applies only to an offline ceremony (keys[].params_file): remove it")
	}
	for i, k := range c.Keys {
		if k.ParamsFile != "" && k.WrappingKeySHA256 == "" && !c.KMS.InsecureUnpinnedWrappingKey {
			return fmt.Errorf("keys[%d].wrapping_key_sha256 must be set: pin the wrapping key's SHA-256 that params fetch printed, so that a swapped params file is refused (or set %s: true, at your own risk)", i, UnpinnedOption)
		}
		for j, r := range k.Replicas {
			if r.ParamsFile != "" && r.WrappingKeySHA256 == "" && !c.KMS.InsecureUnpinnedWrappingKey {
				return fmt.Errorf("keys[%d].replicas[%d].wrapping_key_sha256 must be set: pin the wrapping key's SHA-256 that params fetch printed, so that a swapped params file is refused (or set %s: true, at your own risk)", i, j, UnpinnedOption)
			}
		}
	}
	// A ceremony (Run) requires the escrow section; commands that read a
	// config only for its token section (wrap --config) do not.
	if c.Escrow != nil {
		return c.Escrow.validate()
	}
	return nil
}

// checkDuplicates refuses two keys with the same label, the same CKA_ID
// (in either case of hex), the same KMS key (by ARN or key ID, however
// written) or the same params file: each would make a second key for one
// target, found out only after changes (a second CKA_ID only when the
// token refuses the second key, after the KMS keys and the first key were
// made).
func (c *Config) checkDuplicates() error {
	seen := map[string]int{}
	for i, k := range c.Keys {
		fields := []struct{ field, value, key string }{
			{"label", k.Label, k.Label},
			{"id", k.ID, strings.ToLower(k.ID)},
			{"kms_key_id", k.KMSKeyID, kmsKeyName(k.KMSKeyID)},
			{"params_file", k.ParamsFile, filepath.Clean(k.ParamsFile)},
		}
		for _, r := range k.Replicas {
			fields = append(fields, struct{ field, value, key string }{"params_file", r.ParamsFile, filepath.Clean(r.ParamsFile)})
		}
		for _, f := range fields {
			if f.value == "" {
				continue
			}
			id := f.field + "\x00" + f.key
			if j, ok := seen[id]; ok {
				return fmt.Errorf("keys[%d].%s %q is used twice (keys[%d] names it too): each key needs its own", i, f.field, f.value, j)
			}
			seen[id] = i
		}
	}
	return nil
}

// kmsKeyName reduces a KMS key ARN to its key ID, so that one key written as
// an ARN and as an ID is seen as one; aliases and IDs are kept as written.
func kmsKeyName(s string) string {
	if i := strings.LastIndex(s, ":key/"); i >= 0 && strings.HasPrefix(s, "arn:") {
		return s[i+len(":key/"):]
	}
	return s
}

// refuseKeySelection refuses a token URI's object, id and type where no key
// is chosen by them (why says where keys come from instead): RFC 7512
// attributes are honoured or refused, never ignored.
func (t *TokenConfig) refuseKeySelection(why string) error {
	if t.URI == "" {
		return nil
	}
	u, err := hsm.ParseURI(t.URI)
	if err != nil {
		return fmt.Errorf("token.uri: %w", err)
	}
	if u.Object != "" || len(u.ID) > 0 || u.Type != "" {
		return fmt.Errorf("token.uri: object, id and type choose a key, but %s: drop them from the URI", why)
	}
	return nil
}

// Validate checks a token section given alone (probe --token), with the
// errors validate gives in a config.
func (t *TokenConfig) Validate() error { return t.validate() }

func (t *TokenConfig) validate() error {
	if t.URI != "" {
		u, err := hsm.ParseURI(t.URI)
		if err != nil {
			return fmt.Errorf("token.uri: %w", err)
		}
		if t.Label != "" || t.Serial != "" {
			return errors.New("token.uri and token.label/token.serial are exclusive: use one")
		}
		if u.Token == "" && u.Serial == "" {
			return errors.New("token.uri must name the token (token= or serial=)")
		}
	} else if t.Label == "" && t.Serial == "" {
		return errors.New("token: set label, serial or uri to choose the token")
	}
	if t.PINEnv != "" && t.PINFile != "" {
		return errors.New("token.pin_env and token.pin_file are exclusive: use one")
	}
	if _, err := hsm.ParseSealKey(t.SealAlgorithm); err != nil {
		return fmt.Errorf("token.seal_algorithm %w", err)
	}
	if t.Parallel < 0 || t.Parallel > MaxParallel {
		return fmt.Errorf("token.parallel %d must be between 1 and %d (0: the default, %d)", t.Parallel, MaxParallel, DefaultTokenParallel)
	}
	if t.SigningKey == "" {
		t.SigningKey = "keyceremony-transcript"
	}
	return nil
}

// Selector returns the module path, token label and serial the config names.
func (t *TokenConfig) selector() (module, label, serial, pinFile string) {
	module, label, serial, pinFile = t.Module, t.Label, t.Serial, t.PINFile
	if t.URI != "" {
		u, _ := hsm.ParseURI(t.URI) // validated
		label, serial = u.Token, u.Serial
		if u.ModulePath != "" && module == "" {
			module = u.ModulePath
		}
		if u.PINSource != "" && pinFile == "" {
			pinFile = u.PINSource
		}
	}
	return
}

func (k *KMSConfig) validate() error {
	if k.Region != "" && !regionRE.MatchString(k.Region) {
		return fmt.Errorf("kms.region %q must be an AWS Region such as us-east-1", k.Region)
	}
	if k.WrappingAlgorithm == "" {
		k.WrappingAlgorithm = string(wrap.RSAESOAEPSHA256)
	}
	if _, err := wrap.ParseAlgorithm(k.WrappingAlgorithm); err != nil {
		return fmt.Errorf("kms.wrapping_algorithm: %w", err)
	}
	if k.WrappingKeySpec == "" {
		k.WrappingKeySpec = "RSA_4096"
	}
	if !wrap.ValidKeySpec(k.WrappingKeySpec) {
		return fmt.Errorf("kms.wrapping_key_spec %q must be one of RSA_2048, RSA_3072, RSA_4096", k.WrappingKeySpec)
	}
	if k.AllowHostWrap && k.HostWrapAllowedBy == "" {
		k.HostWrapAllowedBy = "kms.allow_host_wrap"
	}
	if k.Parallel < 0 || k.Parallel > MaxParallel {
		return fmt.Errorf("kms.parallel %d must be between 1 and %d (0: the default, %d)", k.Parallel, MaxParallel, DefaultParallel)
	}
	return nil
}

func (k *KeyConfig) validate(path string) error {
	if !idRE.MatchString(k.Label) {
		return fmt.Errorf("%s.label %q must be 1-64 letters, digits, '.', '_' or '-' (it names files)", path, k.Label)
	}
	if k.ID != "" {
		if b, err := hex.DecodeString(k.ID); err != nil || len(b) == 0 || len(b) > 32 {
			return fmt.Errorf("%s.id %q must be 1-32 bytes of hex", path, k.ID)
		}
	}
	if k.WrappingKeySHA256 != "" {
		if b, err := hex.DecodeString(k.WrappingKeySHA256); err != nil || len(b) != 32 || k.ParamsFile == "" {
			return fmt.Errorf("%s.wrapping_key_sha256 must be 64 hex digits, with params_file", path)
		}
	}
	switch {
	case k.ParamsFile != "" && (k.KMSKeyID != "" || k.Create):
		return fmt.Errorf("%s: params_file names the KMS key; remove kms_key_id and create", path)
	case k.ParamsFile == "" && (k.KMSKeyID == "") == !k.Create:
		return fmt.Errorf("%s: set exactly one of kms_key_id (an existing EXTERNAL key), create: true, or params_file (offline)", path)
	case k.Rotate && k.KMSKeyID == "" && k.ParamsFile == "":
		return fmt.Errorf("%s: rotate: true needs kms_key_id (or offline params_file), the existing key whose material it rotates", path)
	case k.MultiRegion && !k.Create:
		return fmt.Errorf("%s: multi_region: true goes with create: true", path)
	case len(k.Replicas) > 0 && k.Create && !k.MultiRegion:
		return fmt.Errorf("%s: replicas need a multi-Region key: add multi_region: true", path)
	}
	seen := map[string]bool{}
	for i := range k.Replicas {
		if err := k.Replicas[i].validate(fmt.Sprintf("%s.replicas[%d]", path, i), k, seen); err != nil {
			return err
		}
	}
	n := 0
	if k.ValidTo != "" {
		n++
		if _, err := time.Parse(time.RFC3339, k.ValidTo); err != nil {
			return fmt.Errorf("%s.valid_to %q must be an RFC 3339 time such as 2027-06-30T00:00:00Z", path, k.ValidTo)
		}
	}
	if k.ValidFor != "" {
		n++
		if _, err := ParseValidFor(k.ValidFor); err != nil {
			return fmt.Errorf("%s.valid_for %q %w", path, k.ValidFor, err)
		}
	}
	if k.DoesNotExpire {
		n++
	}
	if n != 1 {
		return fmt.Errorf("%s: set exactly one of valid_to, valid_for and does_not_expire: true", path)
	}
	return nil
}

// validTo returns when the material should expire (nil: never), relative to now.
func (k *KeyConfig) validTo(now time.Time) (*time.Time, error) {
	switch {
	case k.DoesNotExpire:
		return nil, nil
	case k.ValidTo != "":
		t, _ := time.Parse(time.RFC3339, k.ValidTo)
		t = t.UTC().Truncate(time.Second)
		if !t.After(now) {
			return nil, fmt.Errorf("key %q: valid_to %s is in the past: choose a later time", k.Label, k.ValidTo)
		}
		if t.After(now.Add(365 * 24 * time.Hour)) {
			return nil, fmt.Errorf("key %q: valid_to %s is more than 365 days ahead, the most KMS allows", k.Label, k.ValidTo)
		}
		return &t, nil
	default:
		d, _ := ParseValidFor(k.ValidFor)
		t := now.Add(d).UTC().Truncate(time.Second)
		return &t, nil
	}
}

// MaxValidFor is the longest expiry KMS accepts for imported key material.
const MaxValidFor = 365 * 24 * time.Hour

// Errors of [ParseValidFor].
var (
	ErrValidForSyntax  = errors.New("must be a positive duration such as 90d or 2160h")
	ErrValidForTooLong = errors.New("is more than 365 days, the most KMS allows")
)

// ParseValidFor reads an expiry such as "90d" (days of 24 h) or "2160h"
// (time.ParseDuration) and checks it is positive and at most [MaxValidFor].
// A day count is bounded before it is multiplied, so a huge one cannot wrap
// around to a small duration. Errors are ErrValidForSyntax or
// ErrValidForTooLong.
func ParseValidFor(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange):
			return 0, ErrValidForTooLong
		case err != nil:
			return 0, ErrValidForSyntax
		case days > uint64(MaxValidFor/(24*time.Hour)):
			return 0, ErrValidForTooLong
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, ErrValidForSyntax
		}
	}
	switch {
	case d <= 0:
		return 0, ErrValidForSyntax
	case d > MaxValidFor:
		return 0, ErrValidForTooLong
	}
	return d, nil
}

func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// OutDir is the resolved output directory.
func (c *Config) OutDir() string { return c.path(c.Ceremony.OutDir) }

// Hash is the hex SHA-256 of the config file's bytes.
func (c *Config) Hash() string { return c.hash }

// Offline reports whether the ceremony runs without KMS: every key's import
// parameters come in as a params file and the bundles go out as files.
func (c *Config) Offline() bool {
	return len(c.Keys) > 0 && c.Keys[0].ParamsFile != ""
}

var unknownFieldRE = regexp.MustCompile(`line (\d+): field (\S+) not found in type ceremony\.(\w+)`)

// sections names config sections by their Go types, for error messages.
var sections = map[string]string{
	"Config": "the top level", "CeremonyConfig": "ceremony", "TokenConfig": "token", "KMSConfig": "kms",
	"KeyConfig": "keys[]", "EscrowConfig": "escrow", "CustodianConfig": "escrow.custodians[]",
}

// yamlError says what the YAML decoder found in the config's terms: an
// unknown field is named with its section, not a Go type.
func yamlError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
	return unknownFieldRE.ReplaceAllStringFunc(msg, func(m string) string {
		g := unknownFieldRE.FindStringSubmatch(m)
		sec, ok := sections[g[3]]
		if !ok {
			return m
		}
		return fmt.Sprintf("line %s: unknown field %q in %s (check its spelling against the README's Config section)", g[1], g[2], sec)
	})
}
