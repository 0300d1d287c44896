package kmslocal

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
)

// keyIndex is the store's name for the key id in region: a multi-Region
// primary and its replicas share their key ID.
func keyIndex(region, id string) string { return region + "/" + id }

// aliasIndex is the store's name for alias name in region: aliases belong
// to a Region.
func aliasIndex(region, name string) string { return region + ":" + name }

// newMRKID returns a random multi-Region key ID: "mrk-" and 32 hex digits.
func newMRKID() string {
	var b [16]byte
	rand.Read(b[:])
	return "mrk-" + hex.EncodeToString(b[:])
}

func (k *key) isPrimary() bool { return k.MultiRegion && k.PrimaryRegion == k.Region }
func (k *key) isReplica() bool { return k.MultiRegion && k.PrimaryRegion != k.Region }

type regionalKey struct {
	Arn    string
	Region string
}

type multiRegionConfiguration struct {
	MultiRegionKeyType string
	PrimaryKey         regionalKey
	ReplicaKeys        []regionalKey
}

func (k *key) arnIn(region string) string {
	return "arn:aws:kms:" + region + ":" + Account + ":key/" + k.ID
}

// multiRegionConfig returns the MultiRegionConfiguration of DescribeKey,
// or nil for a single-Region key.
func (k *key) multiRegionConfig() *multiRegionConfiguration {
	if !k.MultiRegion {
		return nil
	}
	m := &multiRegionConfiguration{
		MultiRegionKeyType: "PRIMARY",
		PrimaryKey:         regionalKey{k.arnIn(k.PrimaryRegion), k.PrimaryRegion},
		ReplicaKeys:        []regionalKey{},
	}
	if k.isReplica() {
		m.MultiRegionKeyType = "REPLICA"
	}
	for _, r := range k.ReplicaRegions {
		m.ReplicaKeys = append(m.ReplicaKeys, regionalKey{k.arnIn(r), r})
	}
	return m
}

// related returns the other keys of k's multi-Region family (primary and
// replicas), without k.
func (s *Server) related(k *key) []*key {
	if !k.MultiRegion {
		return nil
	}
	var out []*key
	for _, r := range append([]string{k.PrimaryRegion}, k.ReplicaRegions...) {
		if o := s.st.Keys[keyIndex(r, k.ID)]; o != nil && o != k {
			out = append(out, o)
		}
	}
	return out
}

// replicas returns the replica keys of a primary key.
func (s *Server) replicas(k *key) []*key {
	if !k.isPrimary() {
		return nil
	}
	return s.related(k)
}

// replicasHave reports whether every replica of primary k has imported the
// material with ID id.
func (s *Server) replicasHave(k *key, id string) bool {
	for _, r := range s.replicas(k) {
		if v := r.version(id); v == nil || v.Material == nil {
			return false
		}
	}
	return true
}

// addPendingToReplicas associates new material id, imported into primary
// k, with each replica, where it waits to be imported.
func (s *Server) addPendingToReplicas(k *key, id string) {
	for _, r := range s.replicas(k) {
		r.Pending = &materialVersion{MaterialID: id}
	}
}

// setReplicaMaterialID associates the first material of primary k with
// each replica.
func (s *Server) setReplicaMaterialID(k *key, id string) {
	for _, r := range s.replicas(k) {
		r.MaterialID = id
	}
}

// dropPendingFromReplicas removes the pending material of primary k from
// its replicas.
func (s *Server) dropPendingFromReplicas(k *key) {
	for _, r := range s.replicas(k) {
		if r.Pending != nil {
			clear(r.Pending.Material)
			r.Pending = nil
		}
	}
}

// forgetReplica removes a deleted key's Region from its family.
func (s *Server) forgetReplica(k *key) {
	for _, o := range s.related(k) {
		o.ReplicaRegions = slices.DeleteFunc(o.ReplicaRegions, func(r string) bool { return r == k.Region })
	}
}

type replicateKeyInput struct {
	keyIDMember
	ReplicaRegion string
	Description   *string
}

type replicateKeyOutput struct {
	ReplicaKeyMetadata *keyMetadata
	ReplicaPolicy      string
}

// replicateKey implements ReplicateKey: a replica of a multi-Region
// primary in ReplicaRegion, with the same key ID. The replica of an
// EXTERNAL key has no material (KMS never copies imported material): it
// starts PendingImport and takes only the primary's materials, each
// imported with its own import parameters.
func (s *Server) replicateKey(c *call) (any, error) {
	var in replicateKeyInput
	k, err := s.keyInput(c, &in, func() error {
		if in.ReplicaRegion == "" {
			return requiredError("replicaRegion")
		}
		if !regionRE.MatchString(in.ReplicaRegion) {
			return validationError("Value '%s' at 'replicaRegion' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([a-z]+-){2,3}\\d+$", in.ReplicaRegion)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case !k.MultiRegion:
		return nil, newError(excUnsupportedOperation, "%s is not a multi-Region key; create it with MultiRegion=true.", k.arn())
	case k.isReplica():
		return nil, newError(excUnsupportedOperation, "%s is a replica key; replicate the primary key in %s.", k.arn(), k.PrimaryRegion)
	case k.state() == statePendingDeletion:
		return nil, newError(excInvalidState, "%s is pending deletion.", k.arn())
	case in.ReplicaRegion == k.Region:
		return nil, validationError("ReplicaRegion %s is the Region of the primary key", in.ReplicaRegion)
	case s.st.Keys[keyIndex(in.ReplicaRegion, k.ID)] != nil:
		return nil, newError(excAlreadyExists, "A replica of %s already exists in %s.", k.arn(), in.ReplicaRegion)
	}
	r := &key{
		ID:             k.ID,
		Region:         in.ReplicaRegion,
		Created:        c.now.UTC().Truncate(1e6),
		Description:    k.Description,
		Origin:         k.Origin,
		KeySpec:        k.KeySpec,
		KeyUsage:       k.KeyUsage,
		MultiRegion:    true,
		Enabled:        true,
		PrimaryRegion:  k.Region,
		ReplicaRegions: append(slices.Clone(k.ReplicaRegions), in.ReplicaRegion),
	}
	if in.Description != nil {
		r.Description = *in.Description
	}
	// Same material IDs as the primary; material only where KMS would copy
	// it (AWS_KMS origin).
	for _, v := range k.Previous {
		r.Previous = append(r.Previous, replicaVersion(k, v))
	}
	r.materialVersion = *replicaVersion(k, &k.materialVersion)
	if k.Pending != nil {
		r.Pending = replicaVersion(k, k.Pending)
	}
	r.OnDemandRotations = k.OnDemandRotations
	for _, o := range append([]*key{k}, s.related(k)...) {
		o.ReplicaRegions = slices.Clone(r.ReplicaRegions)
	}
	s.st.Keys[keyIndex(r.Region, r.ID)] = r
	s.st.Order = append(s.st.Order, keyIndex(r.Region, r.ID))
	s.dirty = true
	return &replicateKeyOutput{ReplicaKeyMetadata: r.metadata(), ReplicaPolicy: defaultPolicy}, nil
}

// replicaVersion is the copy of version v of primary k that a new replica
// starts with.
func replicaVersion(k *key, v *materialVersion) *materialVersion {
	out := &materialVersion{MaterialID: v.MaterialID, RotationDate: v.RotationDate}
	if k.Origin == originAWSKMS && v.Material != nil {
		out.Material = slices.Clone(v.Material)
		out.ExpirationModel, out.ValidTo = v.ExpirationModel, v.ValidTo
	}
	return out
}

// defaultPolicy is the key policy ReplicateKey reports; kmslocal does not
// evaluate policies.
const defaultPolicy = `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + Account + `:root"},"Action":"kms:*","Resource":"*"}]}`

type listAliasesInput struct {
	KeyId  string
	Limit  *int
	Marker string
}

type aliasListEntry struct {
	AliasName   string
	AliasArn    string
	TargetKeyId string
}

type listAliasesOutput struct {
	Aliases    []aliasListEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

// listAliases implements ListAliases: the aliases of the request's Region,
// sorted by name, optionally only those of one key.
func (s *Server) listAliases(c *call) (any, error) {
	var in listAliasesInput
	if err := decodeInput(c.body, &in); err != nil {
		return nil, err
	}
	limit, err := checkLimit(in.Limit, 100, 1000)
	if err != nil {
		return nil, err
	}
	target := ""
	if in.KeyId != "" {
		k, err := s.lookupKey(c, "keyId", in.KeyId, false)
		if err != nil {
			return nil, err
		}
		target = k.ID
	}
	prefix := c.region + ":"
	var entries []aliasListEntry
	for idx, id := range s.st.Aliases {
		name, ok := strings.CutPrefix(idx, prefix)
		if ok && (target == "" || id == target) {
			entries = append(entries, aliasListEntry{AliasName: name, AliasArn: aliasARN(c.region, name), TargetKeyId: id})
		}
	}
	slices.SortFunc(entries, func(a, b aliasListEntry) int { return strings.Compare(a.AliasName, b.AliasName) })
	aliases, next, err := page(entries, func(e aliasListEntry) string { return e.AliasName }, in.Marker, limit)
	if err != nil {
		return nil, err
	}
	return &listAliasesOutput{Aliases: aliases, NextMarker: next, Truncated: next != ""}, nil
}
