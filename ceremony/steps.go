package ceremony

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
	"github.com/keyceremony/keyceremony/wrap"
)

// record appends an event to the transcript, or holds it until begin when
// the ceremony has changed nothing yet.
func (s *state) record(data events.Data) error {
	s.recorded++
	if s.tr == nil {
		s.pending = append(s.pending, pendingEvent{s.stepNo, data})
		return nil
	}
	return s.tr.AppendStep(s.stepNo, s.cfg.Ceremony.Operator, data)
}

// checkpoint signs the transcript so far (see recordChange), when it has
// a signing key.
func (s *state) checkpoint() error {
	if s.tr == nil || s.signer == nil {
		return nil
	}
	return s.tr.Checkpoint(s.stepNo, s.cfg.Ceremony.Operator, s.signer)
}

// recordChange records an event that says something changed outside the
// transcript (a KMS key created, a key generated, material imported) and
// signs a checkpoint right after it, so that a resumed ceremony knows it
// was done and does not do it again.
//
// In a batch step (eachKey) it is called with s.mu held, and waits (s.mu
// released meanwhile) for the step's group commit to sign a checkpoint.
func (s *state) recordChange(data events.Data) error {
	if err := s.record(data); err != nil {
		return err
	}
	if s.tr == nil || s.signer == nil {
		return nil
	}
	if s.commits != nil {
		return s.commits.wait(s.tr.Lines())
	}
	return s.tr.Checkpoint(s.stepNo, s.cfg.Ceremony.Operator, s.signer)
}

// writeFile writes an evidence file into the output directory and returns
// its name and SHA-256 for the transcript.
func (s *state) writeFile(name string, data []byte) (string, string, error) {
	return s.writeFileMode(name, data, 0o644)
}

// writeFileMode is writeFile with the file's mode: share files are 0600.
func (s *state) writeFileMode(name string, data []byte, mode os.FileMode) (string, string, error) {
	if err := s.begin(); err != nil {
		return "", "", err
	}
	p := filepath.Join(s.res.OutDir, name)
	if s.resumed && !s.referenced[name] {
		if _, err := os.Stat(p); err == nil {
			if err := s.setAside(name); err != nil {
				return "", "", err
			}
		}
	}
	if err := evidence.Create(p, data, mode); err != nil {
		return "", "", err
	}
	sum := evidence.Hash(data)
	s.files = append(s.files, events.File{Name: name, SHA256: sum})
	if s.referenced == nil {
		s.referenced = map[string]bool{}
	}
	s.referenced[name] = true // freshName picks another name for the next one
	return p, sum, nil
}

func openToken(ctx context.Context, s *state) (string, error) {
	if err := s.cfg.Token.refuseKeySelection("a ceremony makes its keys from keys[]"); err != nil {
		return "", err
	}
	tok, err := OpenToken(ctx, &s.cfg.Token, s.ui)
	if err != nil {
		return "", err
	}
	s.tok = tok
	in := tok.Info()
	if s.resumed {
		// The checkpoints the resume trusted were verified against the
		// key the header names; it must be this token's signing key.
		signer, err := tok.Signer(s.cfg.Token.SigningKey, false)
		if err != nil {
			return "", fmt.Errorf("cannot resume: %w", err)
		}
		sk, err := transcripts.NewSigningKey(s.cfg.Token.SigningKey, signer.Public())
		if err != nil {
			return "", err
		}
		if s.resumeHeaderKey == nil || s.resumeHeaderKey.Fingerprint != sk.Fingerprint {
			return "", errors.New("cannot resume: the transcript's header names another signing key than this token's: it was not begun on this token, or it was altered; start a new ceremony with a new out_dir")
		}
		s.signer = signer
	}
	// A ceremony never reuses a key: refuse before anything changes. A
	// resumed ceremony finds the keys its transcript shows generated.
	// One listing of the token's keys serves every label check, and key
	// generation below.
	destroyed := 0
	if slices.ContainsFunc(s.keys, func(k *keyState) bool { return k.intentReplayed && !k.generated }) {
		// The run that died was making keys: SoftHSM may hold the empty
		// first write of one.
		if destroyed, err = tok.DestroyEmptySecretKeys(); err != nil {
			return "", err
		}
		if destroyed > 0 {
			s.ui.Info(fmt.Sprintf("destroyed %d empty secret key object(s) on the token (no label, id or value: left by the process that died while the token created a key)", destroyed))
		}
	}
	idx, err := tok.SecretKeyIndex()
	if err != nil {
		return "", err
	}
	s.keyIndex = idx
	unnamed := idx.Unnamed()
	if unnamed > 0 {
		what := fmt.Sprintf("%d secret keys", unnamed)
		if unnamed == 1 {
			what = "1 secret key"
		}
		s.ui.Info(fmt.Sprintf("token %q holds %s with no label and no id: a key generation cut short (the process died while the token wrote the key) leaves such an object; this ceremony does not use it: check and destroy it with the token's own tools (the open-token event records the count)", in.Label, what))
	}
	for _, k := range s.keys {
		if k.generated {
			if err := s.findGenerated(k); err != nil {
				return "", err
			}
			continue
		}
		if err := s.checkTokenLabel(k); err != nil {
			return "", err
		}
		if err := s.checkTokenID(k); err != nil {
			return "", err
		}
	}
	caps, err := checkToken(s)
	if err != nil {
		return "", err
	}
	forced := ""
	if s.cfg.Token.SealAlgorithm != "" {
		forced = "token.seal_algorithm: " + s.cfg.Token.SealAlgorithm
	}
	if err := s.record(&events.OpenToken{Label: in.Label, Serial: in.Serial, Manufacturer: in.Manufacturer, Model: in.Model, Module: in.Module, Probe: events.Raw(caps), SealAlgorithmForcedBy: forced, UnnamedSecretKeys: unnamed, EmptySecretKeysDestroyed: destroyed}); err != nil {
		return "", err
	}
	return fmt.Sprintf("token %q (serial %s, %s %s)", in.Label, in.Serial, in.Manufacturer, in.Model), nil
}

func kmsKeys(ctx context.Context, s *state) (string, error) {
	if s.cfg.Offline() {
		return offlineKMSKeys(s)
	}
	c, err := awskms.New(ctx, awskms.Options{Region: s.cfg.KMS.Region, Profile: s.cfg.KMS.Profile})
	if err != nil {
		return "", err
	}
	s.kms = c
	endpoint, err := c.Endpoint(ctx)
	if err != nil {
		return "", err
	}
	s.ui.Info(fmt.Sprintf("KMS: endpoint %s, Region %s", endpoint, c.Region()))
	if err := s.checkReplicaRegions(c.Region()); err != nil {
		return "", err
	}
	// Check every existing key before changing anything. Two keys[] may
	// name one KMS key in forms the config cannot compare (an alias and
	// an ARN): the second import would fail after the first bound its
	// material to the key for good.
	named := map[string]int{}
	for i, k := range s.keys {
		if k.cfg.Create || k.kmsRecorded {
			continue
		}
		d, err := c.Describe(ctx, k.cfg.KMSKeyID)
		if err != nil {
			return "", err
		}
		if j, ok := named[d.ARN]; ok {
			return "", fmt.Errorf("keys[%d].kms_key_id %q is KMS key %s, which keys[%d].kms_key_id %q names too: each key needs its own KMS key", i, k.cfg.KMSKeyID, d.ARN, j, s.keys[j].cfg.KMSKeyID)
		}
		named[d.ARN] = i
		if d.Origin != "EXTERNAL" {
			return "", fmt.Errorf("KMS key %s has origin %s: key material can only be imported into a key with Origin EXTERNAL; create one (keys[].create: true)", d.ARN, d.Origin)
		}
		switch {
		case k.cfg.Rotate && d.State != "Enabled":
			return "", fmt.Errorf("KMS key %s is %s: rotation imports new material into an Enabled key that has material; renew or re-import its material first", d.ARN, d.State)
		case !k.cfg.Rotate && d.State != "PendingImport":
			return "", fmt.Errorf("KMS key %s is %s, not PendingImport: a new ceremony makes new material, which KMS refuses for a key that has had material; use a new key (keys[].create: true), rotate it (keys[].rotate: true), or recover the escrowed material to re-import", d.ARN, d.State)
		}
		k.arn = d.ARN
		if k.cfg.Rotate {
			// Nothing of this ceremony is in KMS yet (kmsRecorded is not
			// set): refuse other material pending rotation and a key at
			// the rotation limit before anything changes.
			if _, err := checkRotationMaterials(ctx, c, d.ARN, ""); err != nil {
				return "", err
			}
		}
		// The endpoint must offer the configured wrapping algorithm and
		// key spec: ask it now, while nothing has changed.
		if err := getParams(ctx, s, k); err != nil {
			return "", err
		}
		if len(k.replicas) > 0 {
			if err := s.checkReplicas(ctx, k, d); err != nil {
				return "", err
			}
		}
	}
	// The transcript and its signing key are made just before the first
	// change (createKMSKey), or later when every key exists already.
	var todo []*keyState
	for _, k := range s.keys {
		k.res.KMSKeyARN = k.arn
		if !k.kmsRecorded {
			todo = append(todo, k)
		}
	}
	err = s.eachKey(ctx, "kms-keys", todo, func(ctx context.Context, k *keyState) error {
		data := &events.KMSKey{Label: k.cfg.Label, Created: k.cfg.Create, Region: c.Region(), Endpoint: endpoint, Rotation: k.cfg.Rotate}
		if k.cfg.Create {
			adopted, err := s.createKMSKey(ctx, c, k)
			if err != nil {
				return err
			}
			data.Nonce, data.Adopted = k.nonce, adopted
		}
		return s.locked(func() error {
			data.KMSKeyARN = k.arn
			k.res.KMSKeyARN = k.arn
			return s.recordChange(data)
		})
	})
	if err != nil {
		return "", err
	}
	// Then each multi-Region key's replicas (keys[].replicas).
	todo = nil
	for _, k := range s.keys {
		if slices.ContainsFunc(k.replicas, func(r *replicaState) bool { return !r.replicated }) {
			todo = append(todo, k)
		}
	}
	if err := s.eachKey(ctx, "kms-keys", todo, s.replicateKey); err != nil {
		return "", err
	}
	var names []string
	for _, k := range s.keys {
		names = append(names, k.arns()...)
	}
	return summarizeList(names), nil
}

func generateKeys(ctx context.Context, s *state) (string, error) {
	if err := s.begin(); err != nil {
		return "", err
	}
	// Every key's intent first, all signed by one checkpoint before the
	// first key is made, so that a resume knows each key that may be on
	// the token; then the keys, whose events the step's checkpoint signs (a
	// key made but not yet covered by a checkpoint is found again by its
	// intent's label and CKA_ID). Two signatures and flushes for the
	// batch, not two per key.
	for _, k := range s.keys {
		if !k.generated && !k.genIntent {
			if err := s.recordGenerateIntent(k); err != nil {
				return "", err
			}
		}
	}
	if err := s.checkpoint(); err != nil {
		return "", err
	}
	// Several keys at once, each in a session of its own (token.parallel):
	// a key made but not yet recorded when the process dies is adopted by
	// its signed intent's label and CKA_ID, however many were being made.
	var todo []*keyState
	for _, k := range s.keys {
		if !k.generated {
			todo = append(todo, k)
		}
	}
	mk := s.tok.KeyMaker(min(s.tokenParallel(), len(todo)))
	defer mk.Close()
	// The keys' events are recorded in the config's order, whichever
	// session finishes first, so that a transcript's lines do not depend on
	// timing. Guarded by s.mu.
	finished := map[*keyState]bool{}
	adopted := map[*keyState]string{}
	replacedHalfMade := map[*keyState]bool{}
	next := 0
	recordMade := func() error {
		for ; next < len(todo) && finished[todo[next]]; next++ {
			k := todo[next]
			how, ok := adopted[k]
			if !ok {
				continue // it failed
			}
			data := &events.GenerateKey{Label: k.cfg.Label, ID: k.res.ID, KeyCheckValue: k.kcv, Type: "AES-256", Attributes: events.KeyAttributes, Adopted: how, ReplacedHalfMade: replacedHalfMade[k]}
			if err := s.record(data); err != nil {
				return err
			}
			what := "generated on the token,"
			if how != "" {
				what = "adopted: " + how + ";"
			}
			s.ui.Info(fmt.Sprintf("key %q %s key check value %s", k.cfg.Label, what, k.kcv))
		}
		return nil
	}
	err := s.eachKeyN(ctx, "generate-keys", mk.Sessions(), todo, nil, func(ctx context.Context, k *keyState) error {
		key, how, replaced, err := s.generateKey(mk, k)
		var kcv []byte
		if err == nil {
			kcv, err = s.tok.CheckValue(key)
		}
		return s.locked(func() error {
			finished[k] = true
			if err == nil {
				k.key, k.kcv, k.generated = key, hex.EncodeToString(kcv), true
				k.res.Label, k.res.ID, k.res.KeyCheckValue = k.cfg.Label, hex.EncodeToString(k.id), k.kcv
				adopted[k] = how
				if replaced {
					replacedHalfMade[k] = true
				}
			}
			if rerr := recordMade(); err == nil {
				err = rerr
			}
			return err
		})
	})
	if err != nil {
		return "", err
	}
	var out []string
	for _, k := range s.keys {
		out = append(out, fmt.Sprintf("%s kcv %s", k.cfg.Label, k.kcv))
	}
	return strings.Join(out, ", "), nil
}

func fetchParams(ctx context.Context, s *state) (string, error) {
	if s.cfg.Offline() {
		return offlineParams(s)
	}
	alg, _ := wrap.ParseAlgorithm(s.cfg.KMS.WrappingAlgorithm)
	var todo []*keyState
	need := func(k *keyState) bool {
		// Parameters fetched before a restart serve while they are valid
		// for another hour; an imported key needs none.
		return !(k.imported || k.paramsRecorded && k.params.Algorithm == alg && k.params.KeySpec == s.cfg.KMS.WrappingKeySpec &&
			k.params.CheckValid(testOnlyNow().Add(time.Hour)) == nil)
	}
	for _, k := range s.keys {
		if need(k) || slices.ContainsFunc(k.replicas, s.replicaNeedsParams) {
			todo = append(todo, k)
		}
	}
	err := s.eachKey(ctx, "fetch-params", todo, func(ctx context.Context, k *keyState) error {
		if need(k) {
			if err := s.fetchParamsFor(ctx, k); err != nil {
				return err
			}
		}
		for _, r := range k.replicas {
			if s.replicaNeedsParams(r) {
				if err := s.fetchReplicaParams(ctx, k, r); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	until := "already imported"
	if p := s.keys[0].params; p != nil {
		until = "valid until " + p.ValidTo.Format(time.RFC3339)
	}
	return fmt.Sprintf("%s with %s, %s", alg, s.cfg.KMS.WrappingKeySpec, until), nil
}

// getParams fetches import parameters for k with the configured wrapping
// algorithm and key spec, without recording them (see fetchParamsFor).
func getParams(ctx context.Context, s *state, k *keyState) error {
	p, err := s.newParams(ctx, s.kms, k.arn)
	if err != nil {
		return err
	}
	k.params, k.paramsRecorded, k.bundle = p, false, nil
	return nil
}

// newParams fetches import parameters for the KMS key arn through c (its
// Region's client) with the configured wrapping algorithm and key spec,
// and checks they are valid.
func (s *state) newParams(ctx context.Context, c *awskms.Client, arn string) (*wrap.Params, error) {
	alg, _ := wrap.ParseAlgorithm(s.cfg.KMS.WrappingAlgorithm)
	p, err := c.GetParameters(ctx, arn, alg, s.cfg.KMS.WrappingKeySpec)
	if err != nil {
		return nil, err
	}
	if err := p.CheckValid(testOnlyNow()); err != nil {
		return nil, err
	}
	return p, nil
}

// fetchParamsFor writes and records k's import parameters: those fetched
// when the endpoint was checked, if still valid for an hour, else new ones.
func (s *state) fetchParamsFor(ctx context.Context, k *keyState) error {
	if k.paramsRecorded || k.params == nil || k.params.CheckValid(testOnlyNow().Add(time.Hour)) != nil {
		if err := getParams(ctx, s, k); err != nil {
			return err
		}
	}
	return s.locked(func() error { return s.recordParams(k) })
}

// recordParams writes k's import parameters to a file and records them.
func (s *state) recordParams(k *keyState) error {
	if err := s.writeParams(k.cfg.Label, k.params, "params-"+k.cfg.Label+".json"); err != nil {
		return err
	}
	k.paramsRecorded = true
	return nil
}

// writeParams writes import parameters p of key label to a file named
// base (or a fresh variant of it) and records them.
func (s *state) writeParams(label string, p *wrap.Params, base string) error {
	data, err := p.Marshal()
	if err != nil {
		return err
	}
	name, sum, err := s.writeFile(s.freshName(base), data)
	if err != nil {
		return err
	}
	return s.record(&events.FetchParams{Label: label, KMSKeyARN: p.KeyARN, WrappingAlgorithm: string(p.Algorithm), WrappingKeySpec: p.KeySpec,
		PublicKeySHA256: evidence.Hash(p.PublicKey), ImportTokenSHA256: evidence.Hash(p.ImportToken), ParametersValidTo: p.ValidTo, File: filepath.Base(name), FileSHA256: sum})
}

func seal(ctx context.Context, s *state) (string, error) {
	if s.signer == nil {
		// A resumed ceremony: the header names the key; Seal checks it.
		signer, err := s.tok.Signer(s.cfg.Token.SigningKey, false)
		if err != nil {
			return "", err
		}
		s.signer = signer
	}
	signer := s.signer
	pubPath := filepath.Join(s.res.OutDir, "signing-key.pem")
	if !s.signingKeyWritten {
		pemBytes, err := hsm.PublicKeyPEM(signer.Public())
		if err != nil {
			return "", err
		}
		_, pubSum, err := s.writeFile("signing-key.pem", pemBytes)
		if err != nil {
			return "", err
		}
		if err := s.record(&events.SigningKey{Label: s.cfg.Token.SigningKey, File: "signing-key.pem", FileSHA256: pubSum}); err != nil {
			return "", err
		}
	}
	// Name every file the ceremony wrote, with its SHA-256.
	if err := s.record(&events.Files{List: s.files}); err != nil {
		return "", err
	}
	seal, err := s.tr.Seal(signer)
	if err != nil {
		return "", err
	}
	// The payload and the DER signature, for openssl and the witnesses.
	payloadPath := filepath.Join(s.res.OutDir, SealPayloadFile)
	sigPath := filepath.Join(s.res.OutDir, SealSignatureFile)
	if err := evidence.Create(payloadPath, s.tr.SealPayload(), 0o644); err != nil {
		return "", err
	}
	if err := evidence.Create(sigPath, seal.Signature, 0o644); err != nil {
		return "", err
	}
	// Read back what is on disk and verify it, and the files it names,
	// against the token's key.
	data, err := evidence.ReadFile(s.res.Transcript, transcripts.MaxSize)
	if err != nil {
		return "", err
	}
	if _, err := transcripts.VerifyBytes(data, transcripts.Options{Fingerprint: seal.Fingerprint, Files: os.DirFS(s.res.OutDir)}); err != nil {
		return "", fmt.Errorf("the sealed transcript does not verify: %w", err)
	}
	s.res.PublicKey = pubPath
	s.res.SealHash, s.res.Fingerprint = evidence.Hash(data), seal.Fingerprint
	s.res.SealWords = seal.Words
	s.res.SealPayload, s.res.SealSignature = payloadPath, sigPath
	s.ui.Info("seal words, to read aloud and write down: " + seal.Words)
	return "sealed by key " + seal.Fingerprint[:16] + "…, verified", nil
}

// findGenerated finds on the token a key the transcript of a resumed
// ceremony shows generated, and checks it is that key.
func (s *state) findGenerated(k *keyState) error {
	key, err := s.tok.FindAESKey(k.cfg.Label, k.id)
	if err != nil {
		return fmt.Errorf("the transcript shows key %q generated, but the token does not hold it: %w", k.cfg.Label, err)
	}
	kcv, err := s.tok.CheckValue(key)
	if err != nil {
		return err
	}
	if hex.EncodeToString(kcv) != k.kcv {
		return fmt.Errorf("key %q on the token has check value %x, but the transcript recorded %s: this is not the key the ceremony generated", k.cfg.Label, kcv, k.kcv)
	}
	k.key = key
	k.res.Label, k.res.ID, k.res.KeyCheckValue, k.res.KMSKeyARN = k.cfg.Label, hex.EncodeToString(k.id), k.kcv, k.arn
	return nil
}
