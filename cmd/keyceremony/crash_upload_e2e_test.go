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

	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// uploadCase is an offline ceremony of one key per kill point, its bundles
// carried out, each to be uploaded by a run of upload killed at its point.
type uploadCase struct {
	*crashCase
	arns    map[string]string   // label -> the KMS key its params were fetched for
	uploads map[string][]string // label -> the upload command the run printed
	expiry  map[string]string   // label -> its expiry in the config
	validTo string              // the valid_to of the keys that have one
}

// newUploadCase fetches parameters online for n new KMS keys (params
// fetch, pinning the wrapping key it prints), runs the offline ceremony
// (generate, escrow, wrap, seal) and takes the upload commands it prints.
func newUploadCase(t *testing.T, n int) *uploadCase {
	hsmtest.Require(t)
	conf, err := hsmtest.SetupDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	cu := newCrashCustodians(t)
	u := &uploadCase{crashCase: newShapedCase(t, conf, cu, 700, crashShape{keys: 1, parallel: 1}),
		arns: map[string]string{}, uploads: map[string][]string{}, expiry: map[string]string{},
		validTo: time.Now().Add(200 * 24 * time.Hour).UTC().Format(time.RFC3339)}
	c := u.crashCase
	c.labels = nil
	var keys strings.Builder
	for i := range n {
		label := fmt.Sprintf("up-%d", i+1)
		var created struct{ KeyMetadata struct{ Arn string } }
		if err := c.kms.call("CreateKey", map[string]any{"Origin": "EXTERNAL", "Description": "upload crash test"}, &created); err != nil {
			t.Fatal(err)
		}
		arn := created.KeyMetadata.Arn
		params := filepath.Join(c.dir, "params-in-"+label+".json")
		out, err := c.output("params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", params)
		if err != nil {
			t.Fatal(err)
		}
		_, after, ok := strings.Cut(out, "wrapping public key sha256 ")
		if !ok {
			t.Fatalf("params fetch does not print the wrapping key's hash:\n%s", out)
		}
		pin := strings.TrimSuffix(strings.Fields(after)[0], ":")
		u.expiry[label] = []string{"valid_for: 60d", "does_not_expire: true", "valid_to: " + u.validTo}[i%3]
		fmt.Fprintf(&keys, "  - {label: %s, params_file: %s, wrapping_key_sha256: %s, %s}\n", label, params, pin, u.expiry[label])
		c.labels = append(c.labels, label)
		u.arns[label] = arn
	}
	cfg := fmt.Sprintf("ceremony: {id: %s, operator: tester, out_dir: out}\ntoken: {label: %s}\nescrow:\n  threshold: 2\n  custodians:\n", c.name, c.token)
	for i, name := range cu.names {
		cfg += fmt.Sprintf("    - {name: %s, recipient: %s}\n", name, cu.recipients[i])
	}
	if err := os.WriteFile(c.cfg, []byte(cfg+"keys:\n"+keys.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.run(killPoint{line: -1, request: -1})
	if r.code != 0 {
		t.Fatalf("offline run exited %d:\n%s", r.code, r.stderr)
	}
	for _, line := range strings.Split(r.stderr, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "keyceremony upload ") {
			continue
		}
		args := strings.Fields(line)[1:]
		i := slices.Index(args, "--bundle")
		label := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(args[i+1]), "bundle-"), ".json")
		u.uploads[label] = args
	}
	if len(u.uploads) != n {
		t.Fatalf("the offline run printed %d upload commands for %d keys:\n%s", len(u.uploads), n, r.stderr)
	}
	return u
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
	if !strings.Contains(r.stderr, "imported into "+u.arns[label]) || !strings.Contains(r.stderr, "encrypt then decrypt through KMS: ok") {
		return "upload run again does not report the import and the check:\n" + r.stderr
	}
	return ""
}

// checkUploads checks KMS from outside after every upload: exactly the
// ceremony's keys, each Enabled, holding the token key's material once (no
// other material, none pending), with the expiry the config asked for
// (valid_for counted from some upload run between from and to), and every
// ciphertext made still decrypting.
func (u *uploadCase) checkUploads(from, to time.Time) error {
	tokenKCV, err := u.tokenKCVs()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(u.kms.state)
	if err != nil {
		return err
	}
	var st struct {
		Keys []kmsStateKey `json:"keys"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	if len(st.Keys) != len(u.labels) {
		return fmt.Errorf("KMS holds %d keys, the test made %d", len(st.Keys), len(u.labels))
	}
	byID := map[string]kmsStateKey{}
	for _, k := range st.Keys {
		byID[k.ID] = k
	}
	for _, label := range u.labels {
		arn := u.arns[label]
		k, ok := byID[arn[strings.LastIndexByte(arn, '/')+1:]]
		switch {
		case !ok:
			return fmt.Errorf("KMS no longer holds %s (%s)", arn, label)
		case k.Material == nil:
			return fmt.Errorf("KMS key %s (%s) has no material", arn, label)
		case kcv(k.Material) != tokenKCV[label]:
			return fmt.Errorf("KMS key %s (%s) holds material with check value %s, the token key has %s", arn, label, kcv(k.Material), tokenKCV[label])
		case len(k.Previous) > 0 || k.Pending != nil || k.Rotations != 0:
			return fmt.Errorf("KMS key %s (%s) holds more than one material: %d previous, pending %v, %d rotations", arn, label, len(k.Previous), k.Pending != nil, k.Rotations)
		case !k.Enabled || k.DeletionDate != nil:
			return fmt.Errorf("KMS key %s (%s) is not Enabled", arn, label)
		}
		exp := u.expiry[label]
		switch {
		case strings.HasPrefix(exp, "does_not_expire"):
			if k.ExpirationModel != "KEY_MATERIAL_DOES_NOT_EXPIRE" || k.ValidTo != nil {
				return fmt.Errorf("KMS key %s (%s) has expiry %s %v, want KEY_MATERIAL_DOES_NOT_EXPIRE", arn, label, k.ExpirationModel, k.ValidTo)
			}
		case strings.HasPrefix(exp, "valid_to"):
			if want, _ := time.Parse(time.RFC3339, u.validTo); k.ExpirationModel != "KEY_MATERIAL_EXPIRES" || k.ValidTo == nil || !k.ValidTo.Equal(want) {
				return fmt.Errorf("KMS key %s (%s) has expiry %s %v, want valid to %s", arn, label, k.ExpirationModel, k.ValidTo, u.validTo)
			}
		default:
			d := 60 * 24 * time.Hour
			if k.ExpirationModel != "KEY_MATERIAL_EXPIRES" || k.ValidTo == nil || k.ValidTo.Before(from.Add(d).Truncate(time.Second)) || k.ValidTo.After(to.Add(d)) {
				return fmt.Errorf("KMS key %s (%s) has expiry %s %v, want 60 days after an upload between %s and %s", arn, label, k.ExpirationModel, k.ValidTo, from.Format(time.RFC3339), to.Format(time.RFC3339))
			}
		}
	}
	return u.kms.decryptAll()
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
	// A clean upload first, to learn its KMS requests.
	ops := []string{"DescribeKey", "ImportKeyMaterial", "DescribeKey", "Encrypt", "Decrypt"}
	var points [][]killPoint
	for i, op := range ops {
		points = append(points, []killPoint{requestKill(i, op, false)}, []killPoint{requestKill(i, op, true)})
	}
	// Killed after the import, then again after the import run again.
	points = append(points, []killPoint{requestKill(1, "ImportKeyMaterial", true), requestKill(1, "ImportKeyMaterial", true)})
	u := newUploadCase(t, 1+len(points))
	from := time.Now()
	first := u.labels[0]
	u.kms.mu.Lock()
	u.kms.ops = nil
	u.kms.mu.Unlock()
	if msg := u.upload(first); msg != "" {
		t.Fatalf("clean upload: %s", msg)
	}
	u.kms.mu.Lock()
	got := slices.Clone(u.kms.ops)
	u.kms.mu.Unlock()
	if !slices.Equal(got, ops) {
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
