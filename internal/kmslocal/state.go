package kmslocal

import (
	"github.com/keyceremony/keyceremony/internal/strictjson"

	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// stateFormat versions the state file.
const stateFormat = "kmslocal/state/v1"

// stateWarning is written into every state file for whoever opens it.
const stateWarning = "kmslocal TEST AND DEMO state: key material and private wrapping keys are stored here in the clear. Never use it for real keys."

// store is everything the server knows. The caller must hold Server.mu.
type store struct {
	Secret  []byte                  // HMAC key authenticating import tokens
	Keys    map[string]*key         // by keyIndex (Region and key ID)
	Order   []string                // keyIndex values in creation order, for ListKeys
	Aliases map[string]string       // aliasIndex (Region and "alias/...") -> key ID
	Tokens  map[string]*importToken // by token ID (hex)
}

func newStore() *store {
	secret := make([]byte, 32)
	rand.Read(secret)
	return &store{
		Secret:  secret,
		Keys:    map[string]*key{},
		Aliases: map[string]string{},
		Tokens:  map[string]*importToken{},
	}
}

// stateFile is the JSON form of a store.
type stateFile struct {
	Format  string            `json:"format"`
	Warning string            `json:"warning"`
	Secret  []byte            `json:"tokenSecret"`
	Keys    []*key            `json:"keys"`
	Aliases map[string]string `json:"aliases"`
	Tokens  []*importToken    `json:"importTokens"`
}

// StateError reports a state file that cannot be read, parsed or written.
type StateError struct {
	Path string // the state file
	Err  error  // what went wrong
}

// Error returns the path and the cause.
func (e *StateError) Error() string { return "kmslocal state file " + e.Path + ": " + e.Err.Error() }

// Unwrap returns e.Err.
func (e *StateError) Unwrap() error { return e.Err }

// loadState reads the state file at path. An empty path or a missing file
// gives a fresh, empty store. Decoding is strict: unknown fields, trailing
// data and inconsistent contents are errors.
func loadState(path string) (*store, error) {
	if path == "" {
		return newStore(), nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newStore(), nil
	}
	if err != nil {
		return nil, &StateError{path, err}
	}
	st, err := parseState(data)
	if err != nil {
		return nil, &StateError{path, err}
	}
	return st, nil
}

func parseState(data []byte) (*store, error) {
	var f stateFile
	if err := strictjson.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Format != stateFormat {
		return nil, fmt.Errorf("format is %q, want %q", f.Format, stateFormat)
	}
	if len(f.Secret) != 32 {
		return nil, fmt.Errorf("tokenSecret is %d bytes, want 32", len(f.Secret))
	}
	st := &store{
		Secret:  f.Secret,
		Keys:    map[string]*key{},
		Aliases: map[string]string{},
		Tokens:  map[string]*importToken{},
	}
	for i, k := range f.Keys {
		if err := checkStoredKey(k); err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		idx := keyIndex(k.Region, k.ID)
		if st.Keys[idx] != nil {
			return nil, fmt.Errorf("keys[%d]: duplicate key ID %s in %s", i, k.ID, k.Region)
		}
		st.Keys[idx] = k
		st.Order = append(st.Order, idx)
	}
	for idx, target := range f.Aliases {
		region, name, ok := strings.Cut(idx, ":")
		if !ok || !regionRE.MatchString(region) || !aliasRE.MatchString(name) {
			return nil, fmt.Errorf("aliases: %q is not a Region, a colon and an alias name", idx)
		}
		if st.Keys[keyIndex(region, target)] == nil {
			return nil, fmt.Errorf("aliases: %s points to unknown key %s", idx, target)
		}
		st.Aliases[idx] = target
	}
	for i, t := range f.Tokens {
		if err := checkStoredToken(st, t); err != nil {
			return nil, fmt.Errorf("importTokens[%d]: %w", i, err)
		}
		st.Tokens[t.ID] = t
	}
	return st, nil
}

func checkStoredKey(k *key) error {
	switch {
	case k == nil:
		return errors.New("null key")
	case !isKeyID(k.ID):
		return fmt.Errorf("id %q is not a key ID", k.ID)
	case !regionRE.MatchString(k.Region):
		return fmt.Errorf("region %q is not valid", k.Region)
	case k.Origin != originAWSKMS && k.Origin != originExternal:
		return fmt.Errorf("origin %q is not AWS_KMS or EXTERNAL", k.Origin)
	case k.KeySpec != specSymmetric || k.KeyUsage != usageEncrypt:
		return fmt.Errorf("key spec %q, usage %q: only SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT are supported", k.KeySpec, k.KeyUsage)
	case k.Material == nil && k.Origin == originAWSKMS:
		return errors.New("AWS_KMS key without material")
	case (k.DeletionDate != nil) != (k.PendingWindowInDays != 0):
		return errors.New("deletionDate and pendingWindowInDays must be set together")
	case k.MultiRegion != mrkRE.MatchString(k.ID):
		return errors.New("multi-Region keys and only they have mrk- key IDs")
	case k.MultiRegion && !regionRE.MatchString(k.PrimaryRegion):
		return fmt.Errorf("primaryRegion %q is not valid", k.PrimaryRegion)
	}
	for _, v := range k.versions() {
		if err := checkStoredVersion(k, v); err != nil {
			return fmt.Errorf("material %s: %w", v.MaterialID, err)
		}
	}
	return nil
}

func checkStoredVersion(k *key, v *materialVersion) error {
	switch {
	case v == nil:
		return errors.New("null material")
	case v.Material != nil && len(v.Material) != materialSize:
		return fmt.Errorf("material is %d bytes, want %d", len(v.Material), materialSize)
	case v.Material != nil && v.MaterialID != materialID(k.ID, v.Material):
		return errors.New("materialId does not match the material")
	case v.ExpirationModel != "" && v.ExpirationModel != expires && v.ExpirationModel != doesNotExpire:
		return fmt.Errorf("expirationModel %q is not valid", v.ExpirationModel)
	case (v.ExpirationModel == expires) != (v.ValidTo != nil):
		return errors.New("validTo must be set exactly when expirationModel is KEY_MATERIAL_EXPIRES")
	}
	return nil
}

func checkStoredToken(st *store, t *importToken) error {
	if t == nil {
		return errors.New("null token")
	}
	if len(t.ID) != 32 {
		return fmt.Errorf("id %q is not 16 bytes in hex", t.ID)
	}
	if st.Keys[keyIndex(t.Region, t.KeyID)] == nil {
		return fmt.Errorf("token %s is for unknown key %s", t.ID, t.KeyID)
	}
	if _, ok := wrappingAlgorithmCode[t.Algorithm]; !ok {
		return fmt.Errorf("token %s: unknown wrapping algorithm %q", t.ID, t.Algorithm)
	}
	bits, ok := wrappingKeyBits[t.KeySpec]
	if !ok {
		return fmt.Errorf("token %s: unknown wrapping key spec %q", t.ID, t.KeySpec)
	}
	priv, err := x509.ParsePKCS8PrivateKey(t.PrivateKey)
	if err != nil {
		return fmt.Errorf("token %s: private key: %w", t.ID, err)
	}
	rsaPriv, ok := priv.(*rsa.PrivateKey)
	if !ok || rsaPriv.N.BitLen() != bits {
		return fmt.Errorf("token %s: private key is not RSA-%d", t.ID, bits)
	}
	t.priv = rsaPriv
	return nil
}

// marshal encodes the store as the state file's JSON.
func (st *store) marshal() ([]byte, error) {
	f := stateFile{
		Format:  stateFormat,
		Warning: stateWarning,
		Secret:  st.Secret,
		Keys:    make([]*key, 0, len(st.Order)),
		Aliases: st.Aliases,
		Tokens:  make([]*importToken, 0, len(st.Tokens)),
	}
	for _, id := range st.Order {
		f.Keys = append(f.Keys, st.Keys[id])
	}
	for _, t := range st.Tokens {
		f.Tokens = append(f.Tokens, t)
	}
	slices.SortFunc(f.Tokens, func(a, b *importToken) int { return strings.Compare(a.ID, b.ID) })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// saveLocked writes the store to the state file: to a temporary file in
// the same directory (mode 0600), synced, then renamed over the old one, so
// a crash leaves either the old or the new state. The caller must hold s.mu.
func (s *Server) saveLocked() error {
	path := s.opts.StateFile
	data, err := s.st.marshal()
	if err != nil {
		return &StateError{path, err}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kmslocal-state-*")
	if err != nil {
		return &StateError{path, err}
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return &StateError{path, err}
	}
	return nil
}
