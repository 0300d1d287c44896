package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// uploadCase is an offline ceremony of one key per kill point, its bundles
// carried out, each to be uploaded by a run of upload killed at its point.
type uploadCase struct {
	*crashCase
	cu      *crashCustodians
	arns    map[string]string   // label -> the KMS key its params were fetched for
	uploads map[string][]string // label -> the upload command the run printed
	expiry  map[string]string   // label -> its expiry in the config
	validTo string              // the valid_to of the keys that have one
	// oneExpiry gives every key valid_for: 60d: each upload then makes the
	// same KMS requests (their number depends on the old and new expiry).
	oneExpiry bool
}

// newUploadCase makes a token, a loopback KMS and custodians for offline
// ceremonies and their uploads.
func newUploadCase(t *testing.T) *uploadCase {
	conf, cu := crashStore(t)
	u := &uploadCase{crashCase: newShapedCase(t, conf, cu, 700, crashShape{keys: 1, parallel: 1}), cu: cu,
		arns: map[string]string{}, uploads: map[string][]string{}, expiry: map[string]string{},
		validTo: time.Now().Add(200 * 24 * time.Hour).UTC().Format(time.RFC3339)}
	u.labels = nil
	return u
}

// offline fetches parameters for each label's KMS key, runs an offline
// ceremony (id, out_dir out) making the keys labels, each into
// u.arns[label] (a rotation when base names the key whose KMS key it
// rotates: label is then base-v2), and takes the upload commands it prints.
func (u *uploadCase) offline(id, out, rotate string, labels []string) {
	t := u.t
	var keys strings.Builder
	for i, label := range labels {
		params := filepath.Join(u.dir, "params-in-"+label+".json")
		got, err := u.output("params", "fetch", "--key", u.arns[label], "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", params)
		if err != nil {
			t.Fatal(err)
		}
		_, after, ok := strings.Cut(got, "wrapping public key sha256 ")
		if !ok {
			t.Fatalf("params fetch does not print the wrapping key's hash:\n%s", got)
		}
		pin := strings.TrimSuffix(strings.Fields(after)[0], ":")
		u.expiry[label] = []string{"valid_for: 60d", "does_not_expire: true", "valid_to: " + u.validTo}[i%3]
		if u.oneExpiry {
			u.expiry[label] = "valid_for: 60d"
		}
		fmt.Fprintf(&keys, "  - {label: %s, params_file: %s, wrapping_key_sha256: %s, %s%s}\n", label, params, pin, u.expiry[label], rotate)
		u.labels = append(u.labels, label)
	}
	cfg := fmt.Sprintf("ceremony: {id: %s, operator: tester, out_dir: %s}\ntoken: {label: %s}\nescrow:\n  threshold: 2\n  custodians:\n", id, out, u.token)
	for i, name := range u.cu.names {
		cfg += fmt.Sprintf("    - {name: %s, recipient: %s}\n", name, u.cu.recipients[i])
	}
	path := filepath.Join(u.dir, id+".yaml")
	if err := os.WriteFile(path, []byte(cfg+"keys:\n"+keys.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := u.runArgs(killPoint{line: -1, request: -1}, "run", "--config", path)
	if r.code != 0 {
		t.Fatalf("offline run exited %d:\n%s", r.code, r.stderr)
	}
	n := 0
	for _, line := range strings.Split(r.stderr, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "keyceremony upload ") {
			continue
		}
		args := strings.Fields(line)[1:]
		i := slices.Index(args, "--bundle")
		label := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(args[i+1]), "bundle-"), ".json")
		u.uploads[label] = args
		n++
	}
	if n != len(labels) {
		t.Fatalf("the offline run printed %d upload commands for %d keys:\n%s", n, len(labels), r.stderr)
	}
}

// output runs the ordinary binary and returns its stdout.
func (c *crashCase) output(args ...string) (string, error) {
	cmd := binary(c.t, "keyceremony", args...)
	cmd.Dir, cmd.Env = c.dir, c.env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("keyceremony %s: %v: %s", args[0], err, firstErrorLine(stderr.String()))
	}
	return stdout.String(), nil
}

// upload runs label's upload command as printed, killed at each of points
// in turn, then once more to the end, and checks its output.
func (u *uploadCase) upload(label string, points ...killPoint) string {
	for _, p := range points {
		// Every point is on the upload's way: it must be killed there.
		if r := u.runArgs(p, u.uploads[label]...); !r.killed {
			return fmt.Sprintf("upload to be killed at %s was not (exit %d): %s", p, r.code, firstErrorLine(r.stderr))
		}
	}
	r := u.runArgs(killPoint{line: -1, request: -1}, u.uploads[label]...)
	if r.code != 0 || r.killed {
		return fmt.Sprintf("upload run again exited %d: %s", r.code, firstErrorLine(r.stderr))
	}
	if !strings.Contains(r.stderr, u.arns[label]) || !strings.Contains(r.stderr, "encrypt then decrypt through KMS") {
		return "upload run again does not report the import and the check:\n" + r.stderr
	}
	return ""
}

// state returns the token keys' check values (checking the token holds
// no other key) and the loopback KMS's keys by key ID, checking it holds
// n keys.
func (u *uploadCase) state(n int) (map[string]string, map[string]kmsStateKey, error) {
	kcvs, err := u.tokenKCVs()
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(u.kms.state)
	if err != nil {
		return nil, nil, err
	}
	var st struct {
		Keys []kmsStateKey `json:"keys"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, nil, err
	}
	if len(st.Keys) != n {
		return nil, nil, fmt.Errorf("KMS holds %d keys, the test made %d", len(st.Keys), n)
	}
	out := map[string]kmsStateKey{}
	for _, k := range st.Keys {
		out[k.ID] = k
	}
	return kcvs, out, nil
}

// key is the state of label's KMS key, checked Enabled and holding the
// token key's material (kcvs) as its current material, with the expiry
// the config asked for (valid_for counted from an upload between from and
// to).
func (u *uploadCase) key(st map[string]kmsStateKey, label string, kcvs map[string]string, from, to time.Time) (kmsStateKey, error) {
	arn := u.arns[label]
	k, ok := st[arn[strings.LastIndexByte(arn, '/')+1:]]
	switch {
	case !ok:
		return k, fmt.Errorf("KMS no longer holds %s (%s)", arn, label)
	case k.Material == nil:
		return k, fmt.Errorf("KMS key %s (%s) has no material", arn, label)
	case kcv(k.Material) != kcvs[label]:
		return k, fmt.Errorf("KMS key %s holds material with check value %s, the token key %s has %s", arn, kcv(k.Material), label, kcvs[label])
	case !k.Enabled || k.DeletionDate != nil:
		return k, fmt.Errorf("KMS key %s (%s) is not Enabled", arn, label)
	}
	exp := u.expiry[label]
	switch {
	case strings.HasPrefix(exp, "does_not_expire"):
		if k.ExpirationModel != "KEY_MATERIAL_DOES_NOT_EXPIRE" || k.ValidTo != nil {
			return k, fmt.Errorf("KMS key %s (%s) has expiry %s %v, want KEY_MATERIAL_DOES_NOT_EXPIRE", arn, label, k.ExpirationModel, k.ValidTo)
		}
	case strings.HasPrefix(exp, "valid_to"):
		if want, _ := time.Parse(time.RFC3339, u.validTo); k.ExpirationModel != "KEY_MATERIAL_EXPIRES" || k.ValidTo == nil || !k.ValidTo.Equal(want) {
			return k, fmt.Errorf("KMS key %s (%s) has expiry %s %v, want valid to %s", arn, label, k.ExpirationModel, k.ValidTo, u.validTo)
		}
	default:
		d := 60 * 24 * time.Hour
		if k.ExpirationModel != "KEY_MATERIAL_EXPIRES" || k.ValidTo == nil || k.ValidTo.Before(from.Add(d).Truncate(time.Second)) || k.ValidTo.After(to.Add(d)) {
			return k, fmt.Errorf("KMS key %s (%s) has expiry %s %v, want 60 days after an upload between %s and %s", arn, label, k.ExpirationModel, k.ValidTo, from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
	}
	return k, nil
}

// checkUploads checks KMS from outside after every first upload: exactly
// the test's keys, each Enabled, holding the token key's material once (no
// other material, none pending), with the expiry the config asked for,
// and every ciphertext made still decrypting.
func (u *uploadCase) checkUploads(from, to time.Time) error {
	kcvs, st, err := u.state(len(u.labels))
	if err != nil {
		return err
	}
	for _, label := range u.labels {
		k, err := u.key(st, label, kcvs, from, to)
		if err != nil {
			return err
		}
		if len(k.Previous) > 0 || k.Pending != nil || k.Rotations != 0 {
			return fmt.Errorf("KMS key %s (%s) holds more than one material: %d previous, pending %v, %d rotations", u.arns[label], label, len(k.Previous), k.Pending != nil, k.Rotations)
		}
	}
	return u.kms.decryptAll()
}

// uploadPoints are the kill points of an upload whose clean run made the
// KMS requests ops: just before and just after each, and twice after each
// op in twice (the run again killed at the same point).
func uploadPoints(ops []string, twice ...string) [][]killPoint {
	var points [][]killPoint
	for i, op := range ops {
		points = append(points, []killPoint{requestKill(i, op, false)}, []killPoint{requestKill(i, op, true)})
		if slices.Contains(twice, op) {
			points = append(points, []killPoint{requestKill(i, op, true), requestKill(i, op, true)})
		}
	}
	return points
}

// cleanUpload uploads label's bundle once, not killed, and returns the KMS
// requests it made.
func (u *uploadCase) cleanUpload(label string) []string {
	u.kms.mu.Lock()
	u.kms.ops = nil
	u.kms.mu.Unlock()
	if msg := u.upload(label); msg != "" {
		u.t.Fatalf("clean upload: %s", msg)
	}
	u.kms.mu.Lock()
	defer u.kms.mu.Unlock()
	return slices.Clone(u.kms.ops)
}

// TestCrashUpload kills upload (online, across the air gap) just before
// and just after each of its KMS requests, and once more while it runs
// again after a kill after its import, then runs the upload command the
// offline ceremony printed, as printed, to the end: it exits 0 and says
// so, and KMS holds each key's material once, Enabled, with the expiry
// asked for, and every ciphertext made decrypts.
func TestCrashUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("crash sweep")
	}
	ops := []string{"DescribeKey", "ImportKeyMaterial", "DescribeKey", "Encrypt", "Decrypt"}
	points := uploadPoints(ops, "ImportKeyMaterial")
	u := newUploadCase(t)
	u.offline(u.name, "out", "", u.createKeys("up", 1+len(points)))
	from := time.Now()
	if got := u.cleanUpload(u.labels[0]); !slices.Equal(got, ops) {
		t.Fatalf("a clean upload made the KMS requests %v, this test kills at %v: update it", got, ops)
	}
	failed := 0
	for i, ps := range points {
		if msg := u.upload(u.labels[i+1], ps...); msg != "" {
			t.Errorf("upload killed at %v: %s", ps, msg)
			failed++
		}
	}
	if err := u.checkUploads(from, time.Now()); err != nil {
		t.Error(err)
		failed = len(points)
	}
	t.Logf("crash upload: %d kill points tried, %d passed", len(points), len(points)-failed)
}

// TestCrashUploadRotation kills the upload of an offline rotation
// (NEW_KEY_MATERIAL, the PENDING_ROTATION check, RotateKeyOnDemand, the
// checks after) just before and just after each of its KMS requests, and
// twice after the import and after the rotation, then runs the printed
// upload command, as printed, to the end: it exits 0, and each KMS key
// holds the old material NON_CURRENT and the new one CURRENT (the token
// keys' check values), rotated once, nothing pending, the new material
// imported as new at most once, Enabled with the expiry asked for, and
// every ciphertext made under either material decrypts. make test tries
// the points around the import and the rotation, make crash all.
func TestCrashUploadRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("crash sweep")
	}
	u := newUploadCase(t)
	u.oneExpiry = true
	from := time.Now()
	// One key, rotated by a clean upload, to learn the requests.
	first := u.createKeys("learn", 1)
	u.offline(u.name, "out", "", first)
	u.cleanUpload(first[0])
	u.rotate("learn-rot", first)
	ops := u.cleanUpload(first[0] + "-v2")
	if !slices.Contains(ops, "ImportKeyMaterial") || !slices.Contains(ops, "RotateKeyOnDemand") {
		t.Fatalf("a clean rotation upload made the KMS requests %v: no import or no rotation", ops)
	}
	points := uploadPoints(ops, "ImportKeyMaterial", "RotateKeyOnDemand")
	if os.Getenv("CRASH_SWEEP") == "" {
		// make test: around the import and the rotation only.
		points = slices.DeleteFunc(points, func(ps []killPoint) bool {
			return !strings.Contains(ps[0].name, "ImportKeyMaterial") && !strings.Contains(ps[0].name, "RotateKeyOnDemand")
		})
	}
	labels := u.createKeys("rot", len(points))
	u.offline(u.name+"-first", "out-first", "", labels)
	for _, l := range labels {
		u.cleanUpload(l)
		// A ciphertext under the first material, to decrypt at the end.
		var out struct{ CiphertextBlob []byte }
		plain := []byte("under the first material of " + l)
		if err := u.kms.call("Encrypt", map[string]any{"KeyId": u.arns[l], "Plaintext": plain}, &out); err != nil {
			t.Fatal(err)
		}
		u.kms.mu.Lock()
		u.kms.encrypted = append(u.kms.encrypted, ciphertext{u.arns[l], plain, out.CiphertextBlob})
		u.kms.imports = nil
		u.kms.mu.Unlock()
	}
	u.rotate("rot", labels)
	failed := 0
	for i, ps := range points {
		if msg := u.upload(labels[i]+"-v2", ps...); msg != "" {
			t.Errorf("rotation upload killed at %v: %s", ps, msg)
			failed++
		}
	}
	if err := u.checkRotations(append(first, labels...), from, time.Now()); err != nil {
		t.Error(err)
		failed = len(points)
	}
	t.Logf("crash upload rotation: %d kill points tried, %d passed (%v)", len(points), len(points)-failed, ops)
}

// createKeys makes n EXTERNAL KMS keys for labels prefix-1…prefix-n.
func (u *uploadCase) createKeys(prefix string, n int) []string {
	var labels []string
	for i := range n {
		label := fmt.Sprintf("%s-%d", prefix, i+1)
		var created struct{ KeyMetadata struct{ Arn string } }
		if err := u.kms.call("CreateKey", map[string]any{"Origin": "EXTERNAL", "Description": "upload crash test"}, &created); err != nil {
			u.t.Fatal(err)
		}
		u.arns[label] = created.KeyMetadata.Arn
		labels = append(labels, label)
	}
	return labels
}

// rotate runs an offline ceremony (id) that rotates each label's KMS key
// to new material, the token key label-v2.
func (u *uploadCase) rotate(id string, labels []string) {
	var v2 []string
	for _, l := range labels {
		u.arns[l+"-v2"] = u.arns[l]
		v2 = append(v2, l+"-v2")
	}
	u.offline(u.name+"-"+id, "out-"+id, ", rotate: true", v2)
}

// checkRotations checks each label's KMS key after its rotation upload:
// the material of label-v2 CURRENT (Enabled, the expiry asked for), that
// of label the one previous, nothing pending, one rotation, the new
// material accepted as NEW_KEY_MATERIAL at most once, no key but the
// test's, and every ciphertext made decrypting.
func (u *uploadCase) checkRotations(labels []string, from, to time.Time) error {
	kcvs, st, err := u.state(len(labels))
	if err != nil {
		return err
	}
	u.kms.mu.Lock()
	news := map[string]int{}
	for _, im := range u.kms.imports {
		if im.typ == "NEW_KEY_MATERIAL" {
			news[im.key]++
		}
	}
	u.kms.mu.Unlock()
	for _, l := range labels {
		k, err := u.key(st, l+"-v2", kcvs, from, to)
		if err != nil {
			return err
		}
		arn := u.arns[l]
		switch {
		case len(k.Previous) != 1 || k.Pending != nil || k.Rotations != 1:
			return fmt.Errorf("KMS key %s (%s) has %d previous materials, pending %v, %d rotations; want the first material, nothing pending, one rotation", arn, l, len(k.Previous), k.Pending != nil, k.Rotations)
		case kcv(k.Previous[0].Material) != kcvs[l]:
			return fmt.Errorf("KMS key %s keeps previous material with check value %s, the first token key %s has %s", arn, kcv(k.Previous[0].Material), l, kcvs[l])
		case news[arn]+news[k.ID] > 1:
			return fmt.Errorf("KMS key %s (%s) took new material %d times (NEW_KEY_MATERIAL)", arn, l, news[arn]+news[k.ID])
		}
	}
	return u.kms.decryptAll()
}
