// Package events defines the data of every transcript event: one Go struct
// per event name, used both to write a transcript and to read it back
// (resume, verify, recover, escrow verify-share, upload).
//
// # Adding an event or a field
//
// An event is a struct whose pointer implements [Data] (its Step method
// returns the event name) and that is listed in [all]; an event that names
// files of the output directory also implements [FileNamer]. A field is a
// struct field with a json tag. Readers decode event data strictly (see
// internal/strictjson): a field or an event that is not declared here is
// refused, so declare it here before writing it. Never change the meaning or
// the JSON name of a field that has been written: transcripts are kept for
// years and must stay readable; add a new field instead, with omitempty when
// older transcripts lack it.
package events

import (
	"encoding/json"
	"reflect"
	"time"
)

// Data is the data of one event.
type Data interface {
	// Step is the event name, written as the event's "step".
	Step() string
}

// File is a file of the output directory with its hex SHA-256.
type File struct {
	Name   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// FileNamer is implemented by events that name files of the output
// directory with their SHA-256: verify --files checks them, and a resumed
// ceremony checks them before it uses them.
type FileNamer interface {
	Files() []File
}

// Named returns the files the event data d names, when it names any: those
// of [FileNamer] with a name.
func Named(d Data) []File {
	fn, ok := d.(FileNamer)
	if !ok {
		return nil
	}
	var out []File
	for _, f := range fn.Files() {
		if f.Name != "" {
			out = append(out, f)
		}
	}
	return out
}

// all lists every event, one value of each type.
var all = []Data{
	&OpenToken{}, &KMSKeyIntent{}, &KMSKey{}, &GenerateKeyIntent{}, &GenerateKey{}, &Escrow{}, &FetchParams{}, &Wrap{}, &Import{}, &CheckImport{},
	&SigningKey{}, &Files{}, &StepDone{}, &Failed{}, &Interrupted{}, &Checkpoint{}, &Resume{}, &Torn{}, &SetAside{}, &EscrowVoid{}, &Config{}, &Amend{}, &CustodianRecipient{},
	&Key{}, &Params{},
	&Recovery{}, &Shares{}, &RecoverKey{}, &Reimport{}, &Drill{},
	&Renew{}, &Replicate{}, &Rotate{},
}

var byStep = func() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, d := range all {
		if _, dup := m[d.Step()]; dup {
			panic("events: two types for event " + d.Step())
		}
		m[d.Step()] = reflect.TypeOf(d).Elem()
	}
	return m
}()

// New returns new, empty data for the event named step, or false when no
// event has that name.
func New(step string) (Data, bool) {
	t, ok := byStep[step]
	if !ok {
		return nil, false
	}
	return reflect.New(t).Interface().(Data), true
}

// Raw is v as JSON, for a field whose type belongs to another package
// (hsm's probe results and key facts): the events package stays free of
// them, and readers that need the value decode it themselves.
func Raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// KeyAttributes are the attributes of a generated or recovered token key, as
// events record them.
const KeyAttributes = "token,private,sensitive,extractable,no-encrypt,no-decrypt,no-sign,no-wrap,no-unwrap,no-derive"

// ---- the ceremony (keyceremony run) ----

// OpenToken: the token was opened.
type OpenToken struct {
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	Module       string `json:"module"`
	// Probe is what hsm's probe found the token can do (hsm.Capabilities).
	Probe json.RawMessage `json:"probe,omitempty"`
	// SealAlgorithmForcedBy names the config setting that chose the kind
	// of signing key ("token.seal_algorithm: rsa-3072"); empty when the
	// probe chose it.
	SealAlgorithmForcedBy string `json:"seal_algorithm_forced_by,omitempty"`
	// UnnamedSecretKeys counts the token's secret keys with neither label
	// nor CKA_ID, which the operator was told of: what a key generation cut
	// short by a crash can leave (SoftHSM writes a new object in steps).
	UnnamedSecretKeys int `json:"unnamed_secret_keys,omitempty"`
	// EmptySecretKeysDestroyed counts the secret keys with no label, id or
	// value (SoftHSM's first write of a key) destroyed before, after a run
	// that died generating keys.
	EmptySecretKeysDestroyed int `json:"empty_secret_keys_destroyed,omitempty"`
}

// Step implements Data.
func (*OpenToken) Step() string { return "open-token" }

// KMSKey: the KMS key a key is imported into, created by the ceremony or
// named by the config or a params file.
type KMSKey struct {
	Label     string `json:"label"`
	KMSKeyARN string `json:"kms_key_arn"`
	Created   bool   `json:"created"`
	Region    string `json:"region"`
	// Source is "params file" in an offline ceremony.
	Source string `json:"source,omitempty"`
	// Endpoint is the KMS endpoint the key was created or checked at.
	Endpoint string `json:"endpoint,omitempty"`
	// Nonce is the created key's tag of its KMSKeyIntent; Adopted, when
	// set, says how the key a run that died created was found again.
	Nonce   string `json:"nonce,omitempty"`
	Adopted string `json:"adopted,omitempty"`
	// Rotation says the key's new material is meant as a rotation of this
	// KMS key (keys[].rotate): NEW_KEY_MATERIAL, then RotateKeyOnDemand. An
	// offline ceremony's upload takes the intent from here, never from
	// the bundle.
	Rotation bool `json:"rotation,omitempty"`
}

// Step implements Data.
func (*KMSKey) Step() string { return "kms-key" }

// GenerateKey: a key was generated on the token.
type GenerateKey struct {
	Label string `json:"label"`
	// ID is the hex CKA_ID.
	ID            string `json:"id"`
	KeyCheckValue string `json:"key_check_value"`
	Type          string `json:"type"`
	Attributes    string `json:"attributes"`
	// Adopted, when set, says how the key a run that died generated for
	// the GenerateKeyIntent was found again.
	Adopted string `json:"adopted,omitempty"`
	// ReplacedHalfMade says a key with this label and id that the token
	// had not generated and that held no value (what SoftHSM leaves when
	// the process dies inside C_GenerateKey) was destroyed first.
	ReplacedHalfMade bool `json:"replaced_half_made,omitempty"`
}

// Step implements Data.
func (*GenerateKey) Step() string { return "generate-key" }

// KMSKeyIntent: the ceremony is about to create a KMS key tagged with Tags
// (its ceremony ID, label and Nonce), so that a resume can find and adopt
// it if the process dies before the KMSKey event.
type KMSKeyIntent struct {
	Label string            `json:"label"`
	Nonce string            `json:"nonce"`
	Tags  map[string]string `json:"tags"`
}

// Step implements Data.
func (*KMSKeyIntent) Step() string { return "kms-key-intent" }

// GenerateKeyIntent: the ceremony is about to generate a key on the token
// with this label and CKA_ID (hex), so that a resume can find and adopt it
// if the process dies before the GenerateKey event.
type GenerateKeyIntent struct {
	Label string `json:"label"`
	ID    string `json:"id"`
}

// Step implements Data.
func (*GenerateKeyIntent) Step() string { return "generate-key-intent" }

// Escrow: the keys were escrowed M-of-N and every M-subset of the shares
// was checked.
type Escrow struct {
	Threshold     int               `json:"threshold"`
	Shares        int               `json:"shares"`
	Custodians    []EscrowCustodian `json:"custodians"`
	Group         string            `json:"group"`
	KDF           string            `json:"kdf"`
	WrapScheme    string            `json:"wrap_scheme,omitempty"`
	WrapMechanism string            `json:"wrap_mechanism"`
	// Commitments are the Feldman commitments (hex).
	Commitments   []string `json:"commitments"`
	KEKCheckValue string   `json:"kek_check_value"`
	// File is the escrow blob.
	File       string      `json:"file"`
	FileSHA256 string      `json:"file_sha256"`
	Keys       []EscrowKey `json:"keys"`
	Armor      bool        `json:"armor"`
	// ShareFormat is the format of the share files (escrow.ShareFormat,
	// "keyceremony/share/v2"); empty in transcripts written before it was
	// recorded, whose shares may be v1 or v2.
	ShareFormat string `json:"share_format,omitempty"`
	// QuorumCheck is "ok" when every M-subset recombined to the KEK.
	QuorumCheck    string `json:"quorum_check"`
	SubsetsChecked int    `json:"subsets_checked"`
}

// EscrowCustodian is one custodian's sealed share.
type EscrowCustodian struct {
	Name          string `json:"name"`
	Index         int    `json:"index"`
	RecipientType string `json:"recipient_type"`
	// Recipient is the public recipient; empty for a passphrase.
	Recipient   string `json:"recipient,omitempty"`
	File        string `json:"file"`
	FileSHA256  string `json:"file_sha256"`
	SealedCheck string `json:"sealed_check"`
	// Receipt says how the custodian confirmed receiving the share:
	// "typed by custodian NAME", "not asked (non-interactive)", or in older
	// transcripts "confirmed".
	Receipt string `json:"receipt,omitempty"`
}

// EscrowKey is one key in the escrow blob.
type EscrowKey struct {
	Label            string `json:"label"`
	ID               string `json:"id"`
	KeyCheckValue    string `json:"key_check_value"`
	WrappedKeySHA256 string `json:"wrapped_key_sha256"`
}

// Step implements Data.
func (*Escrow) Step() string { return "escrow" }

// Files implements FileNamer: the blob and every share file.
func (e *Escrow) Files() []File {
	out := []File{{e.File, e.FileSHA256}}
	for _, c := range e.Custodians {
		out = append(out, File{c.File, c.FileSHA256})
	}
	return out
}

// FetchParams: import parameters were fetched from KMS (or, offline, read
// from a params file) and written to File.
type FetchParams struct {
	Label             string    `json:"label"`
	KMSKeyARN         string    `json:"kms_key_arn"`
	WrappingAlgorithm string    `json:"wrapping_algorithm"`
	WrappingKeySpec   string    `json:"wrapping_key_spec"`
	PublicKeySHA256   string    `json:"public_key_sha256"`
	ImportTokenSHA256 string    `json:"import_token_sha256"`
	ParametersValidTo time.Time `json:"parameters_valid_to"`
	// Source is the params file an offline ceremony read.
	Source     string `json:"source,omitempty"`
	File       string `json:"file"`
	FileSHA256 string `json:"file_sha256"`
	// WrappingKeyPinned says whether the wrapping key was checked against
	// a pin (keys[].wrapping_key_sha256); when not, UnpinnedAllowedBy
	// names the option that allowed it. Nil in older transcripts.
	WrappingKeyPinned *bool  `json:"wrapping_key_pinned,omitempty"`
	UnpinnedAllowedBy string `json:"unpinned_allowed_by,omitempty"`
}

// Step implements Data.
func (*FetchParams) Step() string { return "fetch-params" }

// Files implements FileNamer.
func (e *FetchParams) Files() []File { return []File{{e.File, e.FileSHA256}} }

// Wrap: a key was wrapped for KMS and the bundle written to File.
type Wrap struct {
	Label             string `json:"label"`
	KMSKeyARN         string `json:"kms_key_arn"`
	WrappingAlgorithm string `json:"wrapping_algorithm"`
	WrappingKeySpec   string `json:"wrapping_key_spec"`
	// InHSM is false when the key was wrapped on the host, allowed by
	// HostWrapAllowedBy for the reason HostWrap.
	InHSM                      bool   `json:"in_hsm"`
	Method                     string `json:"method"`
	EncryptedKeyMaterialSHA256 string `json:"encrypted_key_material_sha256"`
	KeyCheckValue              string `json:"key_check_value"`
	HostWrap                   string `json:"host_wrap,omitempty"`
	HostWrapAllowedBy          string `json:"host_wrap_allowed_by,omitempty"`
	File                       string `json:"file"`
	FileSHA256                 string `json:"file_sha256"`
	// The air-gap wrap (keyceremony wrap) also writes the two files the
	// AWS CLI imports.
	EncryptedKeyMaterialFile       string `json:"encrypted_key_material_file,omitempty"`
	EncryptedKeyMaterialFileSHA256 string `json:"encrypted_key_material_file_sha256,omitempty"`
	ImportTokenFile                string `json:"import_token_file,omitempty"`
	ImportTokenFileSHA256          string `json:"import_token_file_sha256,omitempty"`
}

// Step implements Data.
func (*Wrap) Step() string { return "wrap" }

// Files implements FileNamer.
func (e *Wrap) Files() []File {
	out := []File{{e.File, e.FileSHA256}}
	if e.EncryptedKeyMaterialFile != "" {
		out = append(out, File{e.EncryptedKeyMaterialFile, e.EncryptedKeyMaterialFileSHA256})
	}
	if e.ImportTokenFile != "" {
		out = append(out, File{e.ImportTokenFile, e.ImportTokenFileSHA256})
	}
	return out
}

// Import: a key's material was imported into KMS.
type Import struct {
	Label           string     `json:"label"`
	KMSKeyARN       string     `json:"kms_key_arn"`
	ExpirationModel string     `json:"expiration_model"`
	KeyCheckValue   string     `json:"key_check_value"`
	ValidTo         *time.Time `json:"valid_to,omitempty"`
	// Confirmation says how the import was confirmed: "typed by operator
	// NAME" or "not asked (non-interactive)"; empty in older transcripts.
	Confirmation string `json:"confirmation,omitempty"`
	// KeyMaterialID is the id KMS derived for the material (from key and
	// material) and KeyMaterialDescription what was sent with it; empty in
	// older transcripts.
	KeyMaterialID          string `json:"key_material_id,omitempty"`
	KeyMaterialDescription string `json:"key_material_description,omitempty"`
	// ImportType is NEW_KEY_MATERIAL for a rotation's import (a Rotate
	// event follows), EXISTING_KEY_MATERIAL for a multi-Region key's
	// replica (KeyMaterialID is the primary's) or a rotation's new
	// material found again (Adopted says how); empty for KMS's default, a
	// key's first material.
	ImportType string `json:"import_type,omitempty"`
	Adopted    string `json:"adopted,omitempty"`
}

// Step implements Data.
func (*Import) Step() string { return "import" }

// Rotate: a key's KMS key was rotated on demand (RotateKeyOnDemand) to the
// material the key's Import brought as NEW_KEY_MATERIAL, after KMS listed it
// as pending rotation; PreviousKeyMaterialID was current before.
type Rotate struct {
	Label                 string `json:"label"`
	KMSKeyARN             string `json:"kms_key_arn"`
	KeyMaterialID         string `json:"key_material_id"`
	PreviousKeyMaterialID string `json:"previous_key_material_id"`
	RotationType          string `json:"rotation_type"`
	// Adopted, when set, says the rotation was found done (a run that
	// died made it before recording it).
	Adopted string `json:"adopted,omitempty"`
}

// Step implements Data.
func (*Rotate) Step() string { return "rotate" }

// CheckImport: the imported key is Enabled in KMS and encrypts and
// decrypts.
type CheckImport struct {
	Label           string     `json:"label"`
	KMSKeyARN       string     `json:"kms_key_arn"`
	KeyState        string     `json:"key_state"`
	ExpirationModel string     `json:"expiration_model"`
	EncryptDecrypt  string     `json:"encrypt_decrypt"`
	ValidTo         *time.Time `json:"valid_to,omitempty"`
}

// Step implements Data.
func (*CheckImport) Step() string { return "check-import" }

// SigningKey: the transcript signing key's public key was written to File.
type SigningKey struct {
	Label      string `json:"label"`
	File       string `json:"file"`
	FileSHA256 string `json:"file_sha256"`
	// Scratch is set by a recovery: true for a drill's scratch token.
	Scratch *bool `json:"scratch,omitempty"`
}

// Step implements Data.
func (*SigningKey) Step() string { return "signing-key" }

// Files implements FileNamer.
func (e *SigningKey) Files() []File { return []File{{e.File, e.FileSHA256}} }

// Files: every file the ceremony wrote, just before the seal.
type Files struct {
	List []File `json:"files"`
}

// Step implements Data.
func (*Files) Step() string { return "files" }

// Files implements FileNamer.
func (e *Files) Files() []File { return e.List }

// StepDone: a script step that recorded nothing else was done.
type StepDone struct {
	ID      string `json:"id"`
	Summary string `json:"summary"`
}

// Step implements Data.
func (*StepDone) Step() string { return "step-done" }

// Failed: a step failed; the transcript stays unsealed.
type Failed struct {
	// StepID is the script step that failed.
	StepID string `json:"step"`
	Error  string `json:"error"`
}

// Step implements Data.
func (*Failed) Step() string { return "failed" }

// Checkpoint: a signature by the header's signing key over the transcript
// so far (see transcripts.CheckpointPayload): the lines before it, the
// last of which hashes to LastLineSHA256.
type Checkpoint struct {
	Lines          int    `json:"lines"`
	LastLineSHA256 string `json:"last_line_sha256"`
	// Signature is the seal key's signature (transcripts.SealECDSAP256 or
	// transcripts.SealRSA3072).
	Signature []byte `json:"signature"`
}

// Step implements Data.
func (*Checkpoint) Step() string { return "checkpoint" }

// Resume: the ceremony was run again after its process died or failed. The
// events after the last checkpoint, VoidFirst to VoidLast (sequence
// numbers), count for nothing: their work is done again (see
// transcripts.Void).
type Resume struct {
	// EventsBefore is the number of events before this one, EventsTrusted
	// the number covered by the last checkpoint.
	EventsBefore  int `json:"events_before"`
	EventsTrusted int `json:"events_trusted"`
	// EventsNotCovered is EventsBefore-EventsTrusted, when not 0.
	EventsNotCovered int `json:"events_not_covered_by_a_checkpoint,omitempty"`
	VoidFirst        int `json:"void_first_seq,omitempty"`
	VoidLast         int `json:"void_last_seq,omitempty"`
	// TornLineBytes and TornLineSHA256 are set in transcripts written
	// before the Torn event existed.
	TornLineBytes  int    `json:"torn_line_bytes,omitempty"`
	TornLineSHA256 string `json:"torn_line_sha256,omitempty"`
	// Keys says how far each key got.
	Keys []string `json:"keys"`
}

// Step implements Data.
func (*Resume) Step() string { return "resume" }

// Torn: the transcript ended in an incomplete line (the process died while
// writing it), which was cut off when it was reopened: Line holds its
// bytes (a transcript line holds no secret, nor does a part of one).
type Torn struct {
	Length int    `json:"bytes"`
	SHA256 string `json:"sha256"`
	Line   []byte `json:"line"`
}

// Step implements Data.
func (*Torn) Step() string { return "torn-line" }

// Config: a copy of the config the ceremony begins with was written to
// File.
type Config struct {
	ConfigSHA256 string `json:"config_sha256"`
	File         string `json:"file"`
	FileSHA256   string `json:"file_sha256"`
}

// Step implements Data.
func (*Config) Step() string { return "config" }

// Files implements FileNamer.
func (e *Config) Files() []File { return []File{{e.File, e.FileSHA256}} }

// Amend: a resume took a changed config that contradicts nothing done;
// File is a copy of the new config.
type Amend struct {
	OldConfigSHA256 string   `json:"old_config_sha256"`
	NewConfigSHA256 string   `json:"new_config_sha256"`
	Changes         []string `json:"changes"`
	File            string   `json:"file"`
	FileSHA256      string   `json:"file_sha256"`
}

// Step implements Data.
func (*Amend) Step() string { return "amend" }

// Files implements FileNamer.
func (e *Amend) Files() []File { return []File{{e.File, e.FileSHA256}} }

// CustodianRecipient: a custodian gave their recipient at the keyboard; a
// resume uses it instead of asking again.
type CustodianRecipient struct {
	Name      string `json:"name"`
	Recipient string `json:"recipient"`
	Given     string `json:"given"`
}

// Step implements Data.
func (*CustodianRecipient) Step() string { return "custodian-recipient" }

// EscrowVoid: an escrow attempt stopped after writing files, before its
// Escrow event: its files and shares belong to no recorded escrow and are
// void (a resume moves the files aside and escrows again). The files are
// not named as evidence (no "file" keys).
type EscrowVoid struct {
	VoidFiles     []VoidFile `json:"void_files"`
	SharesTakenBy []string   `json:"shares_taken_by"`
	Reason        string     `json:"reason"`
}

// VoidFile is a file of a void escrow attempt and the SHA-256 of its
// content.
type VoidFile struct {
	Name          string `json:"name"`
	ContentSHA256 string `json:"content_sha256"`
}

// Step implements Data.
func (*EscrowVoid) Step() string { return "escrow-void" }

// Interrupted: the operator stopped the ceremony at script step
// StoppedStep; Keys says how far each key got. Began says whether that
// step had begun (the stop came between its keys or at its question) or
// not (the stop came before it); transcripts written before it was
// recorded lack it (nil).
type Interrupted struct {
	StoppedStep string   `json:"stopped_step"`
	Title       string   `json:"title"`
	Began       *bool    `json:"began,omitempty"`
	Keys        []string `json:"keys"`
	Reason      string   `json:"reason"`
}

// Step implements Data.
func (*Interrupted) Step() string { return "interrupted" }

// SetAside: a file the transcript did not name (written just before the
// process died) was moved aside, never overwritten or deleted.
type SetAside struct {
	Name    string `json:"name"`
	MovedTo string `json:"moved_to"`
	SHA256  string `json:"sha256"`
	Reason  string `json:"reason"`
}

// Step implements Data.
func (*SetAside) Step() string { return "set-aside" }

// ---- the air-gap wrap (keyceremony wrap) ----

// Key: the existing token key an air-gap wrap wraps.
type Key struct {
	Label         string `json:"label"`
	ID            string `json:"id"`
	KeyCheckValue string `json:"key_check_value"`
	// Attributes are the key's facts (hsm.KeyFacts); Usage, when set,
	// the usages it allows beyond wrapping, accepted by UsageAcceptedBy.
	Attributes      json.RawMessage `json:"attributes,omitempty"`
	Usage           []string        `json:"usage,omitempty"`
	UsageAcceptedBy string          `json:"usage_accepted_by,omitempty"`
}

// Step implements Data.
func (*Key) Step() string { return "key" }

// Params: the params file an air-gap wrap read (FileSHA256 is its SHA-256;
// it is not copied into the output directory).
type Params struct {
	Source            string    `json:"source"`
	FileSHA256        string    `json:"file_sha256"`
	KMSKeyARN         string    `json:"kms_key_arn"`
	Region            string    `json:"region"`
	WrappingAlgorithm string    `json:"wrapping_algorithm"`
	WrappingKeySpec   string    `json:"wrapping_key_spec"`
	PublicKeySHA256   string    `json:"public_key_sha256"`
	ImportTokenSHA256 string    `json:"import_token_sha256"`
	ParametersValidTo time.Time `json:"parameters_valid_to"`
	// As in FetchParams.
	WrappingKeyPinned *bool  `json:"wrapping_key_pinned,omitempty"`
	UnpinnedAllowedBy string `json:"unpinned_allowed_by,omitempty"`
}

// Step implements Data.
func (*Params) Step() string { return "params" }

// ---- recovery (keyceremony recover) ----

// Recovery: the first event of a recovery transcript.
type Recovery struct {
	// Mode is "recover" or "drill".
	Mode               string   `json:"mode"`
	EscrowFile         string   `json:"escrow_file"`
	EscrowSHA256       string   `json:"escrow_sha256"`
	OriginalCeremonyID string   `json:"original_ceremony_id"`
	Threshold          int      `json:"threshold"`
	Shares             int      `json:"shares"`
	Commitments        []string `json:"commitments"`
	// The original transcript, when given.
	OriginalTranscript       string `json:"original_transcript,omitempty"`
	OriginalTranscriptSHA256 string `json:"original_transcript_sha256,omitempty"`
	OriginalSigner           string `json:"original_signer,omitempty"`
	// PinnedBy says how the original transcript's signer was pinned, and
	// PinConfirmed whether out of band (nil in older transcripts, which
	// record OriginalTranscriptPinned instead).
	PinnedBy                 string `json:"pinned_by,omitempty"`
	PinConfirmed             *bool  `json:"pin_confirmed,omitempty"`
	OriginalTranscriptPinned *bool  `json:"original_transcript_pinned,omitempty"`
}

// Step implements Data.
func (*Recovery) Step() string { return "recovery" }

// Shares: the shares a recovery used, checked against the commitments.
type Shares struct {
	Used          []ShareUsed `json:"used"`
	KEKCheckValue string      `json:"kek_check_value"`
	FeldmanCheck  string      `json:"feldman_check"`
	Token         TokenRef    `json:"token"`
	// EscrowSHA256 is the escrow blob the shares were recombined for.
	EscrowSHA256 string `json:"escrow_sha256,omitempty"`
	// WrapScheme is the blob's key wrapping scheme, Unwrap the mechanism
	// (or the host) that unwrapped the keys.
	WrapScheme string `json:"wrap_scheme,omitempty"`
	Unwrap     string `json:"unwrap,omitempty"`
	HostUnwrap bool   `json:"host_unwrap,omitempty"`
}

// ShareUsed is one share a recovery used.
type ShareUsed struct {
	Custodian string `json:"custodian"`
	Index     int    `json:"index"`
	File      string `json:"file"`
	// OpenedBy is the kind of identity that opened the share, OpenedByKey
	// its public key (empty for a passphrase, and in older transcripts).
	OpenedBy    string `json:"opened_by,omitempty"`
	OpenedByKey string `json:"opened_by_key,omitempty"`
}

// TokenRef names the token a recovery wrote to.
type TokenRef struct {
	Label   string `json:"label"`
	Serial  string `json:"serial"`
	Model   string `json:"model"`
	Scratch bool   `json:"scratch"`
}

// Step implements Data.
func (*Shares) Step() string { return "shares" }

// RecoverKey: a key was unwrapped from the escrow onto the token.
type RecoverKey struct {
	Label             string   `json:"label"`
	ID                string   `json:"id"`
	KeyCheckValue     string   `json:"key_check_value"`
	KMSKeyARNs        []string `json:"kms_key_arns"`
	MatchesEscrow     bool     `json:"matches_escrow"`
	MatchesTranscript bool     `json:"matches_transcript,omitempty"`
	TokenKey          string   `json:"token_key"`
}

// Step implements Data.
func (*RecoverKey) Step() string { return "recover-key" }

// Reimport: a recovered key was imported into KMS again.
type Reimport struct {
	Label             string     `json:"label"`
	KMSKeyARN         string     `json:"kms_key_arn"`
	WrappingAlgorithm string     `json:"wrapping_algorithm"`
	InHSM             bool       `json:"in_hsm"`
	Method            string     `json:"method"`
	KeyCheckValue     string     `json:"key_check_value"`
	File              string     `json:"file"`
	FileSHA256        string     `json:"file_sha256"`
	KeyState          string     `json:"key_state"`
	ExpirationModel   string     `json:"expiration_model"`
	ValidTo           *time.Time `json:"valid_to,omitempty"`
	// WrappingKeySpec, HostReason (why the host wrapped, when it did) and
	// the key material: the id KMS reported after the import, the one the
	// key had before (empty for its first material) and the description
	// sent. Empty in older transcripts.
	WrappingKeySpec        string `json:"wrapping_key_spec,omitempty"`
	HostReason             string `json:"host_reason,omitempty"`
	KeyMaterialID          string `json:"key_material_id,omitempty"`
	KeyMaterialIDBefore    string `json:"key_material_id_before,omitempty"`
	KeyMaterialDescription string `json:"key_material_description,omitempty"`
}

// Step implements Data.
func (*Reimport) Step() string { return "reimport" }

// Files implements FileNamer.
func (e *Reimport) Files() []File { return []File{{e.File, e.FileSHA256}} }

// Drill: a recovery drill passed or failed.
type Drill struct {
	// Result is "pass", "fail", or what a drill not rooted in a pinned
	// transcript could not tell.
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	Keys   int    `json:"keys,omitempty"`
}

// Step implements Data.
func (*Drill) Step() string { return "drill" }

// ---- renewal (keyceremony renew) ----

// Renew: the first event of a renewal transcript: the token key whose
// material is imported again, unchanged, into KMSKeyARNs with a new expiry
// (each import is a Reimport event).
type Renew struct {
	Label             string   `json:"label"`
	KeyCheckValue     string   `json:"key_check_value"`
	KMSKeyARNs        []string `json:"kms_key_arns"`
	WrappingAlgorithm string   `json:"wrapping_algorithm"`
	WrappingKeySpec   string   `json:"wrapping_key_spec"`
	AllowHostWrap     bool     `json:"allow_host_wrap"`
	Token             TokenRef `json:"token"`
}

// Step implements Data.
func (*Renew) Step() string { return "renew" }

// Replicate: the multi-Region primary KMSKeyARN has a replica ReplicaARN in
// ReplicaRegion, made now (Created) or found; a ceremony (keys[].replicas)
// or keyceremony replicate imports the key's material there too.
type Replicate struct {
	Label         string `json:"label"`
	KMSKeyARN     string `json:"kms_key_arn"`
	ReplicaRegion string `json:"replica_region"`
	ReplicaARN    string `json:"replica_arn"`
	Created       bool   `json:"created"`
	// Adopted, when set, says how a replica that a run that died made was
	// found again; Source is "params file" in an offline ceremony, which
	// takes the replica from its params file.
	Adopted string `json:"adopted,omitempty"`
	Source  string `json:"source,omitempty"`
}

// Step implements Data.
func (*Replicate) Step() string { return "replicate" }
