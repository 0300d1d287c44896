package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// verifiedEvents verifies a sealed transcript against its signing key
// beside it (and the files it names) and returns the events that count.
func verifiedEvents(t *testing.T, e *e2e, dir string) []transcripts.Event {
	t.Helper()
	tr := filepath.Join(dir, "transcript.jsonl")
	if out, errOut, code := e.run(nil, "verify", "--pubkey", filepath.Join(dir, "signing-key.pem"), "--files", dir, tr); code != 0 {
		t.Fatalf("verify exited %d\n%s\n%s", code, out, errOut)
	}
	data, err := os.ReadFile(tr)
	if err != nil {
		t.Fatal(err)
	}
	res, err := transcripts.VerifyBytes(data, transcripts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Events
}

// importsOf returns the import events of a transcript's events, by KMS key.
func importsOf(evs []transcripts.Event) map[string]*events.Import {
	out := map[string]*events.Import{}
	for _, ev := range evs {
		if d, ok := ev.Data.(*events.Import); ok {
			out[d.KMSKeyARN] = d
		}
	}
	return out
}

// TestMultiRegionOneCeremony: one ceremony creates a multi-Region primary,
// replicates it into two Regions and imports the same material into all
// three, each with its own Region's parameters; then a rotation ceremony
// imports new material into the primary (NEW_KEY_MATERIAL), the same into
// each replica (EXISTING_KEY_MATERIAL with its KeyMaterialId) and rotates
// the primary. Ciphertexts decrypt in every Region after each, through the
// real binary and kmslocal; bad replica configs are refused with one line
// and change nothing.
func TestMultiRegionOneCeremony(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	regions := []string{"eu-west-1", "us-east-1", "ap-southeast-2"}
	clients := map[string]*awskms.Client{}
	for _, r := range append(regions, "sa-east-1") {
		c, err := awskms.New(ctx, awskms.Options{Region: r})
		if err != nil {
			t.Fatal(err)
		}
		clients[r] = c
	}
	id, _ := age.GenerateX25519Identity()
	conf := func(name, keys string) string {
		return e.config(name+".yaml", fmt.Sprintf(`
ceremony: {id: %[1]s, operator: tester, out_dir: %[2]s}
token: {label: ceremony}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
%[3]s
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - {name: alice, recipient: %[4]s}
`, name, filepath.Join(e.dir, name), keys, id.Recipient()))
	}

	// Refused before anything changes: a replica in the primary's Region.
	bad := conf("mr-bad", "  - {label: global-bad, create: true, multi_region: true, replicas: [{region: eu-west-1}], valid_for: 90d}")
	_, stderr, code := e.run(pin, "run", "--config", bad)
	want := `keyceremony: error: step 3 (create or check the KMS keys): key "global-bad": replicas[0].region eu-west-1 is the Region of the key itself: a replica lives in another Region`
	if code != 1 || errorLine(stderr) != want {
		t.Errorf("replica in the primary's Region: exit %d\n%s\nwant %s", code, stderr, want)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "mr-bad", "transcript.jsonl")); err == nil {
		t.Error("a refused ceremony wrote a transcript")
	}
	// Replicas without a multi-Region key: a config error.
	bad = conf("mr-bad2", "  - {label: global-bad, create: true, replicas: [{region: us-east-1}], valid_for: 90d}")
	_, stderr, code = e.run(pin, "run", "--config", bad)
	if code != 2 && code != 1 || !strings.Contains(stderr, "keys[0]: replicas need a multi-Region key: add multi_region: true") || strings.Count(stderr, "\n") > 2 {
		t.Errorf("replicas without multi_region: exit %d\n%s", code, stderr)
	}
	for _, r := range regions {
		if n := countKeys(t, clients[r]); n != 0 {
			t.Fatalf("refused ceremonies left %d KMS keys in %s", n, r)
		}
	}

	// The ceremony: primary in eu-west-1, replicas in us-east-1 and
	// ap-southeast-2.
	cfg := conf("mr", "  - {label: global-mr, create: true, multi_region: true, replicas: [{region: us-east-1}, {region: ap-southeast-2}], valid_for: 90d}")
	stdout, stderr, code := e.run(pin, "run", "--config", cfg)
	if code != 0 {
		t.Fatalf("run exited %d\n%s\n%s", code, stdout, stderr)
	}
	evs := verifiedEvents(t, e, filepath.Join(e.dir, "mr"))
	var primary string
	replicated := 0
	for _, ev := range evs {
		switch d := ev.Data.(type) {
		case *events.KMSKey:
			primary = d.KMSKeyARN
		case *events.Replicate:
			if !d.Created || d.KMSKeyARN != primary || d.ReplicaARN != strings.Replace(primary, ":eu-west-1:", ":"+d.ReplicaRegion+":", 1) {
				t.Errorf("replicate event %+v", d)
			}
			replicated++
		}
	}
	if !strings.Contains(primary, ":eu-west-1:") || !strings.Contains(primary, ":key/mrk-") || replicated != 2 {
		t.Fatalf("primary %s, %d replicate events", primary, replicated)
	}
	arn := func(region string) string { return strings.Replace(primary, ":eu-west-1:", ":"+region+":", 1) }
	imps := importsOf(evs)
	mid := imps[primary].KeyMaterialID
	for _, r := range regions {
		imp := imps[arn(r)]
		if imp == nil || imp.KeyMaterialID != mid || mid == "" {
			t.Fatalf("import into %s: %+v (primary's material %s)", r, imp, mid)
		}
		if r != "eu-west-1" && imp.ImportType != "EXISTING_KEY_MATERIAL" {
			t.Errorf("replica import type %q", imp.ImportType)
		}
		if !strings.Contains(stdout, arn(r)) {
			t.Errorf("the result table lacks %s:\n%s", arn(r), stdout)
		}
	}
	for _, f := range []string{"params-global-mr-us-east-1.json", "bundle-global-mr-ap-southeast-2.json"} {
		if _, err := os.Stat(filepath.Join(e.dir, "mr", f)); err != nil {
			t.Errorf("per-Region evidence: %v", err)
		}
	}
	// Encrypted in each Region, decrypted in every other.
	old := map[string][]byte{}
	for _, r := range regions {
		ct, err := clients[r].Encrypt(ctx, arn(r), []byte("v1 from "+r))
		if err != nil {
			t.Fatal(err)
		}
		old[r] = ct
	}
	decryptsEverywhere := func(when string, cts map[string][]byte, prefix string) {
		t.Helper()
		for from, ct := range cts {
			for _, r := range regions {
				if pt, err := clients[r].Decrypt(ctx, arn(r), ct); err != nil || string(pt) != prefix+" from "+from {
					t.Fatalf("%s: a ciphertext made in %s does not decrypt in %s: %v", when, from, r, err)
				}
			}
		}
	}
	decryptsEverywhere("after the ceremony", old, "v1")
	stdout, stderr, code = e.run(nil, "status", "--transcript", filepath.Join(e.dir, "mr", "transcript.jsonl"), "--warn", "7d", "--json")
	var rep statusJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || len(rep.Keys) != 3 {
		t.Fatalf("status exited %d\n%s\n%s", code, stdout, stderr)
	}
	for _, k := range rep.Keys {
		if k.State != "Enabled" || k.Record != "match" || k.CurrentMaterialID != mid {
			t.Errorf("status %+v", k)
		}
	}

	// A rotation refused before anything changes: a replica Region the
	// key was never replicated into.
	bad = conf("mr-rot-bad", fmt.Sprintf("  - {label: global-v2, kms_key_id: %s, rotate: true, replicas: [{region: us-east-1}, {region: sa-east-1}], valid_for: 60d}", primary))
	_, stderr, code = e.run(pin, "run", "--config", bad)
	want = fmt.Sprintf("keyceremony: error: step 3 (create or check the KMS keys): KMS key %s has no replica in sa-east-1: a rotation imports the new material into existing replicas only; replicate it first (keyceremony replicate) or remove the Region from keys[].replicas", primary)
	if code != 1 || errorLine(stderr) != want {
		t.Errorf("rotation with a missing replica: exit %d\n%s\nwant %s", code, stderr, want)
	}
	if n := countKeys(t, clients["sa-east-1"]); n != 0 {
		t.Errorf("the refused rotation made %d keys in sa-east-1", n)
	}

	// The rotation: NEW on the primary, EXISTING on each replica, then
	// RotateKeyOnDemand on the primary.
	cfg = conf("mr-rot", fmt.Sprintf("  - {label: global-v2, kms_key_id: %s, rotate: true, replicas: [{region: us-east-1}, {region: ap-southeast-2}], valid_for: 60d}", primary))
	if stdout, stderr, code := e.run(pin, "run", "--config", cfg); code != 0 {
		t.Fatalf("rotation exited %d\n%s\n%s", code, stdout, stderr)
	}
	evs = verifiedEvents(t, e, filepath.Join(e.dir, "mr-rot"))
	imps = importsOf(evs)
	mid2 := imps[primary].KeyMaterialID
	if imps[primary].ImportType != "NEW_KEY_MATERIAL" || mid2 == mid {
		t.Fatalf("primary import of the rotation: %+v", imps[primary])
	}
	var order []string
	for _, ev := range evs {
		switch d := ev.Data.(type) {
		case *events.Import:
			order = append(order, "import "+strings.Split(d.KMSKeyARN, ":")[3])
		case *events.Rotate:
			order = append(order, "rotate "+strings.Split(d.KMSKeyARN, ":")[3])
			if d.KeyMaterialID != mid2 || d.PreviousKeyMaterialID != mid {
				t.Errorf("rotate event %+v", d)
			}
		}
	}
	if got := strings.Join(order, ", "); got != "import eu-west-1, import us-east-1, import ap-southeast-2, rotate eu-west-1" {
		t.Errorf("rotation order: %s", got)
	}
	for _, r := range regions {
		if imp := imps[arn(r)]; imp == nil || imp.KeyMaterialID != mid2 {
			t.Fatalf("rotation import into %s: %+v", r, imp)
		}
		d, err := clients[r].Describe(ctx, arn(r))
		if err != nil || d.State != "Enabled" || d.CurrentMaterialID != mid2 {
			t.Fatalf("%s after the rotation: %+v %v", r, d, err)
		}
		ms, err := clients[r].Materials(ctx, arn(r))
		if err != nil || len(ms) != 2 || ms[0].ID != mid || ms[0].State != "NON_CURRENT" || ms[1].ID != mid2 || ms[1].State != "CURRENT" {
			t.Fatalf("%s materials after the rotation: %+v %v", r, ms, err)
		}
	}
	decryptsEverywhere("after the rotation", old, "v1")
	newer := map[string][]byte{}
	for _, r := range regions {
		ct, err := clients[r].Encrypt(ctx, arn(r), []byte("v2 from "+r))
		if err != nil {
			t.Fatal(err)
		}
		newer[r] = ct
	}
	decryptsEverywhere("after the rotation", newer, "v2")
	stdout, _, code = e.run(nil, "status", "--transcript", filepath.Join(e.dir, "mr", "transcript.jsonl"), "--transcript", filepath.Join(e.dir, "mr-rot", "transcript.jsonl"), "--warn", "7d", "--json")
	rep = statusJSON{}
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || len(rep.Keys) != 3 {
		t.Fatalf("status after the rotation exited %d\n%s", code, stdout)
	}
	for _, k := range rep.Keys {
		if k.Record != "match" || k.CurrentMaterialID != mid2 || k.Rotations != 1 {
			t.Errorf("status after the rotation %+v", k)
		}
	}
}

// errorLine is the one error line a failed command printed (after its
// progress lines), or all of stderr when it printed none or more.
func errorLine(stderr string) string {
	var found []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "keyceremony: error: ") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		return stderr
	}
	return found[0]
}

// countKeys counts the KMS keys in c's Region.
func countKeys(t *testing.T, c *awskms.Client) int {
	t.Helper()
	found, err := c.FindTagged(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(found)
}

// TestMultiRegionOffline: the air-gap split for a multi-Region key. Online,
// params fetch for the primary and for its replica (each from its own
// Region); offline, one ceremony wraps the material once per Region with no
// AWS configuration; online, the upload commands it printed, as printed,
// primary first, and the ciphertexts decrypt in both Regions. A replica's
// params file for another key is refused before anything changes.
func TestMultiRegionOffline(t *testing.T) {
	a := newAirgap(t)
	ctx := context.Background()
	work := t.TempDir()
	primary, err := a.kms.CreateKey(ctx, "multi-Region air gap test", true)
	if err != nil {
		t.Fatal(err)
	}
	replica, err := a.kms.Replicate(ctx, primary, "us-east-1", "replica")
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.kms.CreateKey(ctx, "another key", true)
	if err != nil {
		t.Fatal(err)
	}
	otherReplica, err := a.kms.Replicate(ctx, other, "us-east-1", "replica")
	if err != nil {
		t.Fatal(err)
	}
	pp, rp, op := filepath.Join(work, "params-primary.json"), filepath.Join(work, "params-replica.json"), filepath.Join(work, "params-other.json")
	ppin := a.fetch(primary, "RSAES_OAEP_SHA_1", "RSA_2048", pp)
	rpin := a.fetch(replica, "RSAES_OAEP_SHA_1", "RSA_2048", rp)
	opin := a.fetch(otherReplica, "RSAES_OAEP_SHA_1", "RSA_2048", op)
	conf := func(out, replicaParams, replicaPin string) string {
		cfg := filepath.Join(work, out+".yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`
ceremony: {id: mr-offline, operator: tester, out_dir: %s}
token: {label: ceremony}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
keys:
  - label: global-off
    params_file: %s
    wrapping_key_sha256: %s
    valid_for: 30d
    replicas: [{params_file: %s, wrapping_key_sha256: %s}]
`, out, pp, ppin, replicaParams, replicaPin)), 0o600)
		return cfg
	}

	// Another key's replica: refused before anything changes.
	_, stderr, code := a.offline(pin, "run", "--config", conf("out-bad", op, opin))
	want := fmt.Sprintf("keyceremony: error: keys[0].replicas[0].params_file %s is for %s, which is not a replica of %s (a multi-Region key's replica has its key ID in another Region): fetch the parameters of the replica", op, otherReplica, primary)
	if code != 1 || errorLine(stderr) != want {
		t.Errorf("another key's replica params: exit %d\n%s\nwant %s", code, stderr, want)
	}
	if _, err := os.Stat(filepath.Join(work, "out-bad")); err == nil {
		t.Error("a refused offline run left an output directory")
	}

	stdout, stderr, code := a.offline(pin, "run", "--config", conf("out", rp, rpin))
	if code != 0 {
		t.Fatalf("offline run exited %d:\n%s\n%s", code, stdout, stderr)
	}
	out := filepath.Join(work, "out")
	evs := verifiedEvents(t, &e2e{t: t, dir: work}, out)
	wraps := map[string]string{}
	for _, ev := range evs {
		if d, ok := ev.Data.(*events.Wrap); ok {
			wraps[d.KMSKeyARN] = d.File
		}
	}
	if wraps[primary] != "bundle-global-off.json" || wraps[replica] != "bundle-global-off-us-east-1.json" {
		t.Fatalf("wraps %v", wraps)
	}
	var uploads []string
	for _, line := range strings.Split(stdout, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "keyceremony upload ") {
			uploads = append(uploads, line)
		}
	}
	if len(uploads) != 1 || !strings.Contains(uploads[0], "--bundle "+filepath.Join(out, "bundle-global-off.json")+" --bundle "+filepath.Join(out, "bundle-global-off-us-east-1.json")+" ") {
		t.Fatalf("upload commands (one, with both Regions' bundles):\n%s", stdout)
	}
	uout, uerr, code := a.run(nil, strings.Fields(uploads[0])[1:]...)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", uploads[0], code, uout, uerr)
	}
	// The replica took its primary's material: not a renewal.
	d, _ := a.kms.Describe(ctx, primary)
	if !strings.Contains(uout, "imported into "+replica+" (kcv ") || !strings.Contains(uout, "multi-Region replica: the key material "+d.CurrentMaterialID+" of its primary (EXISTING_KEY_MATERIAL), KMS reports the same KeyMaterialId\n") || strings.Contains(uout, "same key material as before") {
		t.Errorf("upload of the two Regions says:\n%s", uout)
	}
	east, err := awskms.New(ctx, awskms.Options{Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := a.kms.Encrypt(ctx, primary, []byte("from eu-west-1"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := east.Decrypt(ctx, replica, ct); err != nil || string(pt) != "from eu-west-1" {
		t.Fatalf("decrypt in us-east-1: %v", err)
	}
	ct, err = east.Encrypt(ctx, replica, []byte("from us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := a.kms.Decrypt(ctx, primary, ct); err != nil || string(pt) != "from us-east-1" {
		t.Fatalf("decrypt in eu-west-1: %v", err)
	}
}

// TestCrashRotation kills the real binary at the boundaries of a rotation
// of a multi-Region key (after KMS took the new material into the primary,
// after it took it into the replica, after RotateKeyOnDemand: each time
// before the transcript records it) and runs the same command again each
// time: the resumed ceremony finishes the rotation without importing the
// material twice as new, the transcript verifies, each KMS key holds
// exactly the old and the new material, and old ciphertexts decrypt in
// both Regions.
func TestCrashRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and resumes ceremonies")
	}
	hsmtest.Require(t)
	conf, err := hsmtest.SetupDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	cu := newCrashCustodians(t)
	c := newCrashCase(t, conf, cu, 950)
	for _, kv := range c.env {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, v)
		}
	}
	ctx := context.Background()
	west, err := awskms.New(ctx, awskms.Options{Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	east := west.In("us-east-1")
	yaml := func(out, key string) string {
		return fmt.Sprintf(`
ceremony: {id: %s-%s, operator: tester, out_dir: %s}
token: {label: %s}
kms: {wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys:
  - %s
escrow:
  threshold: 2
  custodians:
    - {name: alice, recipient: %s}
    - {name: bob, recipient: %s}
    - {name: carol, recipient: %s}
`, c.name, out, out, c.token, key, cu.recipients[0], cu.recipients[1], cu.recipients[2])
	}
	write := func(name, body string) string {
		p := filepath.Join(c.dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c.cfg = write("first.yaml", yaml("out", "{label: global, create: true, multi_region: true, replicas: [{region: us-east-1}], valid_for: 90d}"))
	if r := c.run(killPoint{line: -1, request: -1}); r.code != 0 {
		t.Fatalf("first ceremony exited %d: %s", r.code, r.stderr)
	}
	var primary, mid1 string
	for _, ev := range verifiedEvents(t, &e2e{t: t, dir: c.dir, env: c.env}, c.out) {
		if d, ok := ev.Data.(*events.Import); ok && strings.Contains(d.KMSKeyARN, ":eu-west-1:") {
			primary, mid1 = d.KMSKeyARN, d.KeyMaterialID
		}
	}
	replica := replicaOf(primary, "us-east-1")
	oldWest, err := west.Encrypt(ctx, primary, []byte("v1 west"))
	if err != nil {
		t.Fatal(err)
	}
	oldEast, err := east.Encrypt(ctx, replica, []byte("v1 east"))
	if err != nil {
		t.Fatal(err)
	}

	rot := filepath.Join(c.dir, "rot")
	c.cfg = write("rotate.yaml", yaml("rot", fmt.Sprintf("{label: global-v2, kms_key_id: %s, rotate: true, replicas: [{region: us-east-1}], valid_for: 60d}", primary)))
	c.kms.transcript = filepath.Join(rot, "transcript.jsonl")
	for _, p := range []killPoint{
		{line: -1, request: -1, op: "ImportKeyMaterial", nth: 1, after: true, name: "after the primary took the new material"},
		{line: -1, request: -1, op: "ImportKeyMaterial", nth: 2, after: true, name: "after the replica took it"},
		{line: -1, request: -1, op: "RotateKeyOnDemand", nth: 1, after: true, name: "after RotateKeyOnDemand"},
	} {
		if r := c.run(p); !r.killed {
			t.Fatalf("killed %s: the run was not killed (exit %d): %s", p.name, r.code, r.stderr)
		}
	}
	if r := c.run(killPoint{line: -1, request: -1}); r.code != 0 {
		t.Fatalf("the resumed rotation exited %d: %s", r.code, r.stderr)
	}
	if len(c.kms.problems) > 0 {
		t.Fatalf("KMS saw: %v", c.kms.problems)
	}
	var mid2 string
	adopted := 0
	for _, ev := range verifiedEvents(t, &e2e{t: t, dir: c.dir, env: c.env}, rot) {
		switch d := ev.Data.(type) {
		case *events.Import:
			if d.KMSKeyARN == primary {
				mid2 = d.KeyMaterialID
			}
			if d.Adopted != "" {
				adopted++
			}
		case *events.Rotate:
			if d.Adopted != "" {
				adopted++
			}
		}
	}
	if mid2 == "" || mid2 == mid1 || adopted != 2 {
		t.Fatalf("rotation transcript: new material %q (old %s), %d adopted events (want the import and the rotation)", mid2, mid1, adopted)
	}
	for arn, cl := range map[string]*awskms.Client{primary: west, replica: east} {
		ms, err := cl.Materials(ctx, arn)
		if err != nil || len(ms) != 2 || ms[0].ID != mid1 || ms[0].State != "NON_CURRENT" || ms[1].ID != mid2 || ms[1].State != "CURRENT" {
			t.Fatalf("%s materials after the resumed rotation: %+v %v", arn, ms, err)
		}
	}
	for _, ct := range [][]byte{oldWest, oldEast} {
		for arn, cl := range map[string]*awskms.Client{primary: west, replica: east} {
			if pt, err := cl.Decrypt(ctx, arn, ct); err != nil || !strings.HasPrefix(string(pt), "v1 ") {
				t.Fatalf("an old ciphertext does not decrypt with %s: %v", arn, err)
			}
		}
	}
}

// replicaOf is the ARN of the replica in region of the multi-Region key arn.
func replicaOf(arn, region string) string {
	parts := strings.SplitN(arn, ":", 6)
	parts[3] = region
	return strings.Join(parts, ":")
}
