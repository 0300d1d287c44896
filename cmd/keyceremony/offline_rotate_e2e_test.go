package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/internal/kmslocal"
	"github.com/keyceremony/keyceremony/transcripts/events"
)

// offlineKey is one key of an offline config: its label, params file and
// the pin params fetch printed, and the rest of its YAML flow mapping.
type offlineKey struct {
	label, params, pin, extra string
}

// offlineRun writes an offline config (out_dir out, in work) for keys and
// runs it with no AWS environment; it returns stdout, stderr and the exit
// code.
func (a *airgap) offlineRun(work, id, out string, keys ...offlineKey) (string, string, int) {
	a.t.Helper()
	return a.offline(pin, "run", "--config", a.offlineConfig(work, id, out, keys...))
}

// offlineConfig writes the config of offlineRun and returns its path.
func (a *airgap) offlineConfig(work, id, out string, keys ...offlineKey) string {
	a.t.Helper()
	var ks strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&ks, "  - {label: %s, params_file: %s, wrapping_key_sha256: %s%s}\n", k.label, k.params, k.pin, k.extra)
	}
	cfg := filepath.Join(work, out+".yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
ceremony: {id: %s, operator: tester, out_dir: %s}
token: {label: ceremony}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
keys:
%s`, id, out, ks.String())), 0o600); err != nil {
		a.t.Fatal(err)
	}
	return cfg
}

// uploads returns the upload commands an offline run printed, as argument
// lists (after "keyceremony").
func uploads(stdout string) [][]string {
	var out [][]string
	for _, line := range strings.Split(stdout, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "keyceremony upload ") {
			out = append(out, strings.Fields(line)[1:])
		}
	}
	return out
}

// firstImportOffline makes an EXTERNAL key per label and gives each its
// first material through the air gap (params fetch, one offline ceremony
// named id, the uploads it printed); it returns the keys' ARNs.
func (a *airgap) firstImportOffline(work, id string, labels ...string) []string {
	a.t.Helper()
	var arns []string
	var keys []offlineKey
	for _, l := range labels {
		arn := a.createKey()
		p := filepath.Join(work, "params-"+l+".json")
		keys = append(keys, offlineKey{l, p, a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", p), ", valid_for: 60d"})
		arns = append(arns, arn)
	}
	stdout, stderr, code := a.offlineRun(work, id, "out-"+id, keys...)
	if code != 0 {
		a.t.Fatalf("offline run exited %d:\n%s\n%s", code, stdout, stderr)
	}
	for _, args := range uploads(stdout) {
		if out, errOut, code := a.run(nil, args...); code != 0 {
			a.t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	for _, arn := range arns {
		if d, err := a.kms.Describe(context.Background(), arn); err != nil || d.State != "Enabled" || d.CurrentMaterialID == "" {
			a.t.Fatalf("after the first upload: %+v %v", d, err)
		}
	}
	return arns
}

// material returns the current KeyMaterialId of arn.
func (a *airgap) material(arn string) string {
	a.t.Helper()
	d, err := a.kms.Describe(context.Background(), arn)
	if err != nil {
		a.t.Fatal(err)
	}
	return d.CurrentMaterialID
}

// TestOfflineRotation rotates a key's imported material across the air
// gap: params fetch of the Enabled key (online), an offline ceremony with
// rotate: true and every AWS_* variable removed, the upload it printed, as
// printed (online). The old material stays NON_CURRENT and old ciphertexts
// decrypt, new ones use the new material, status matches both ceremonies'
// transcripts, and the same upload again changes nothing and says so.
func TestOfflineRotation(t *testing.T) {
	a := newAirgap(t)
	ctx := context.Background()
	work := t.TempDir()
	arn := a.firstImportOffline(work, "rot-v1", "rot-v1")[0]
	mid1 := a.material(arn)
	old, err := a.kms.Encrypt(ctx, arn, []byte("under v1"))
	if err != nil {
		t.Fatal(err)
	}

	// params fetch of a key that has material says so, and records it.
	p2 := filepath.Join(work, "params-v2.json")
	stdout, stderr, code := a.run(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", p2)
	if code != 0 || !strings.Contains(stdout, "KMS key "+arn+" is Enabled with key material "+mid1+": KMS takes only that material again, or new material as a rotation (keys[].rotate: true with this params_file)\n") {
		t.Fatalf("params fetch of an Enabled key: exit %d\n%s%s", code, stdout, stderr)
	}
	pin2 := strings.TrimSuffix(strings.Fields(strings.SplitN(stdout, "wrapping public key sha256 ", 2)[1])[0], ":")

	// Without rotate: true, new material for a key that has some is
	// refused offline, before anything happens.
	_, stderr, code = a.offlineRun(work, "rot-bad", "out-bad", offlineKey{"rot-bad", p2, pin2, ", valid_for: 90d"})
	want := "keyceremony: error: keys[0].params_file " + p2 + " is for " + arn + ", which had key material " + mid1 + " when its parameters were fetched: KMS refuses other material for it; add rotate: true to rotate it to new material, or fetch parameters for a new key"
	if code != 1 || errorLines(stderr) != want {
		t.Errorf("new material without rotate: exit %d\n%s\nwant %s", code, errorLines(stderr), want)
	}
	if _, err := os.Stat(filepath.Join(work, "out-bad")); err == nil {
		t.Error("a refused offline run left an output directory")
	}

	stdout, stderr, code = a.offlineRun(work, "rot-v2", "out-v2", offlineKey{"rot-v2", p2, pin2, ", rotate: true, valid_for: 90d"})
	if code != 0 {
		t.Fatalf("offline rotation exited %d:\n%s\n%s", code, stdout, stderr)
	}
	out2 := filepath.Join(work, "out-v2")
	tr2 := filepath.Join(out2, "transcript.jsonl")
	if ev := eventWith(t, tr2, "kms-key", "label", "rot-v2"); ev["rotation"] != true || ev["kms_key_arn"] != arn {
		t.Errorf("the offline transcript's kms-key event %v does not record the rotation", ev)
	}
	if strings.Contains(string(mustRead(t, tr2)), `"step":"import"`) || strings.Contains(string(mustRead(t, tr2)), `"step":"rotate"`) {
		t.Error("an offline ceremony recorded an import or a rotation")
	}
	cmds := uploads(stdout)
	if len(cmds) != 1 {
		t.Fatalf("upload commands:\n%s", stdout)
	}
	if ms, _ := a.kms.Materials(ctx, arn); len(ms) != 1 {
		t.Fatalf("the offline run changed KMS: %+v", ms)
	}

	// The upload, exactly as printed.
	stdout, stderr, code = a.run(nil, cmds[0]...)
	if code != 0 {
		t.Fatalf("upload of the rotation: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("upload:\n%s", stdout)
	ms, err := a.kms.Materials(ctx, arn)
	if err != nil || len(ms) != 2 || ms[0].ID != mid1 || ms[0].State != "NON_CURRENT" || ms[1].State != "CURRENT" || ms[1].RotationDate == nil {
		t.Fatalf("materials after the upload: %+v %v", ms, err)
	}
	mid2 := ms[1].ID
	kcv2 := eventWith(t, tr2, "wrap", "label", "rot-v2")["key_check_value"].(string)
	for _, line := range []string{
		"imported into " + arn + " (kcv " + kcv2 + "): key material " + mid2 + ", NEW_KEY_MATERIAL, PENDING_ROTATION\n",
		"rotated " + arn + " (RotateKeyOnDemand): key material " + mid2 + " CURRENT, " + mid1 + " NON_CURRENT\n",
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("upload does not say %q:\n%s", line, stdout)
		}
	}
	if !strings.HasPrefix(ms[1].Description, "keyceremony kcv "+kcv2+" transcript sha256:") {
		t.Errorf("new material's description %q", ms[1].Description)
	}
	if pt, err := a.kms.Decrypt(ctx, arn, old); err != nil || string(pt) != "under v1" {
		t.Fatalf("an old ciphertext does not decrypt after the rotation: %v", err)
	}
	newer, err := a.kms.Encrypt(ctx, arn, []byte("under v2"))
	if err != nil {
		t.Fatal(err)
	}
	// kmslocal's blob names its material (bytes 18-50).
	if got := hex.EncodeToString(newer[18:50]); got != mid2 {
		t.Errorf("a new ciphertext is under material %s, not the new %s", got, mid2)
	}

	// The same upload again changes nothing and says so.
	stdout, stderr, code = a.run(nil, cmds[0]...)
	if code != 0 || !strings.Contains(stdout, "nothing to do: KMS key "+arn+" already has this material (kcv "+kcv2+") as its current key material "+mid2+", rotated by an earlier upload; nothing was imported or rotated\n") {
		t.Fatalf("upload again: exit %d\n%s%s", code, stdout, stderr)
	}
	if again, _ := a.kms.Materials(ctx, arn); len(again) != 2 || again[1].ID != mid2 || !again[1].RotationDate.Equal(*ms[1].RotationDate) {
		t.Errorf("the second upload changed KMS: %+v", again)
	}

	// Renewing the new material (wrap, upload) with an expiry sooner than
	// its own is refused, though the older material expires sooner still
	// (DescribeKey's ValidTo is the earliest of the two).
	p3 := filepath.Join(work, "params-renew.json")
	pin3 := a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", p3)
	wout, werr, code := a.offline(pin, "wrap", "--params", p3, "--wrapping-key-sha256", pin3, "--key", "rot-v2", "--token", "ceremony", "--out-dir", filepath.Join(work, "renew"))
	if code != 0 {
		t.Fatalf("wrap for a renewal: exit %d\n%s%s", code, wout, werr)
	}
	before, _ := a.kms.Materials(ctx, arn)
	_, stderr, code = a.run(nil, printed(t, wout, "upload", map[string]string{"365d": "70d"})...)
	shorter := regexp.MustCompile(`^keyceremony: error: the upload would shorten the key's expiry: KMS key ` + regexp.QuoteMeta(arn) + ` is Enabled and its material expires \S+; this upload would make it expire \S+: nothing was imported; to shorten it anyway add --allow-shorter-expiry$`)
	if code != 1 || !shorter.MatchString(errorLines(stderr)) {
		t.Errorf("a renewal shortening the new material: exit %d\n%s", code, stderr)
	}
	if after, _ := a.kms.Materials(ctx, arn); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the refused renewal changed KMS:\n%+v\nwas\n%+v", after, before)
	}

	// status, given both transcripts, matches both versions.
	tr1 := filepath.Join(work, "out-rot-v1", "transcript.jsonl")
	stdout, _, code = a.run(nil, "status", "--transcript", tr1, "--transcript", tr2, "--warn", "7d", "--json")
	var rep statusJSON
	t.Logf("status:\n%s", stdout)
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || len(rep.Keys) == 0 {
		t.Fatalf("status: exit %d: %s", code, stdout)
	}
	for _, k := range rep.Keys {
		if k.ARN != arn || k.Record != "match" || k.Rotations != 1 || k.CurrentMaterialID != mid2 || k.State != "Enabled" {
			t.Errorf("status of the rotated key: %+v (exit %d)", k, code)
		}
	}
}

// TestOfflineRotationRefusals: what upload refuses of an offline rotation,
// each with its one-line error and exit code, KMS unchanged: a key that went
// PendingImport after the parameters were fetched, a key at the rotation
// limit, a bundle changed to name another key, and a transcript whose
// rotation intent was changed.
func TestOfflineRotationRefusals(t *testing.T) {
	a := newAirgap(t)
	ctx := context.Background()
	work := t.TempDir()
	arns := a.firstImportOffline(work, "first", "ref-a", "ref-b")
	ka, kb := arns[0], arns[1]
	for range 25 { // the limit AWS documents
		rotateBehindItsBack(t, a.kms, kb)
	}
	var keys []offlineKey
	for i, l := range []string{"ref-a2", "ref-b2"} {
		p := filepath.Join(work, "params-"+l+".json")
		keys = append(keys, offlineKey{l, p, a.fetch(arns[i], "RSAES_OAEP_SHA_1", "RSA_2048", p), ", rotate: true, valid_for: 90d"})
	}
	stdout, stderr, code := a.offlineRun(work, "rot", "out-rot", keys...)
	if code != 0 {
		t.Fatalf("offline rotation exited %d:\n%s\n%s", code, stdout, stderr)
	}
	cmds := uploads(stdout)
	if len(cmds) != 2 {
		t.Fatalf("upload commands:\n%s", stdout)
	}
	out := filepath.Join(work, "out-rot")
	tr := filepath.Join(out, "transcript.jsonl")
	if err := a.kms.DeleteMaterial(ctx, ka, ""); err != nil { // ka: PendingImport now
		t.Fatal(err)
	}
	kmsNow := func() string {
		var b strings.Builder
		for _, arn := range arns {
			d, err := a.kms.Describe(ctx, arn)
			ms, err2 := a.kms.Materials(ctx, arn)
			if err != nil || err2 != nil {
				t.Fatal(err, err2)
			}
			fmt.Fprintf(&b, "%s %s %s %+v\n", arn, d.State, d.CurrentMaterialID, ms)
		}
		return b.String()
	}
	before := kmsNow()
	refused := func(what string, args []string, wantCode int, want string) {
		t.Helper()
		_, stderr, code := a.run(nil, args...)
		if code != wantCode || !regexp.MustCompile("^"+want+"$").MatchString(errorLines(stderr)) {
			t.Errorf("%s: exit %d, error lines:\n%s\nwant exit %d:\n%s", what, code, errorLines(stderr), wantCode, want)
		}
		if after := kmsNow(); after != before {
			t.Errorf("%s changed KMS:\n%s\nwas:\n%s", what, after, before)
		}
	}
	refused("a rotation of a key that is PendingImport", cmds[0], 1, regexp.QuoteMeta(
		"keyceremony: error: KMS key "+ka+" is PendingImport: a rotation adds new material to a key that has its material; re-import its current material first (keyceremony renew or recover --reimport), then upload again"))
	refused("a rotation of a key at the rotation limit", cmds[1], 1, regexp.QuoteMeta(
		"keyceremony: error: KMS key "+kb+" has had 25 on-demand rotations, the limit KMS allows: it takes no new material; create a new key for new material; nothing was imported"))

	// A's bundle changed to name B: not the bundle the transcript records.
	data := mustRead(t, filepath.Join(out, "bundle-ref-a2.json"))
	replayed := filepath.Join(work, "replayed.json")
	if err := os.WriteFile(replayed, []byte(strings.Replace(string(data), ka, kb, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(mustRead(t, replayed))
	args := append([]string{}, cmds[1]...)
	args[2] = replayed
	refused("a's bundle replayed against b", args, 3, regexp.QuoteMeta(
		"keyceremony: error: "+replayed+": the bundle (sha256 "+hex.EncodeToString(sum[:8])+"…) is not one the transcript of ceremony rot recorded: it was changed or swapped on its way out; upload the bundle the ceremony wrote"))

	// The rotation intent changed in the transcript: the seal no longer
	// verifies.
	tampered := filepath.Join(work, "tampered.jsonl")
	trData := string(mustRead(t, tr))
	if !strings.Contains(trData, `"rotation":true`) {
		t.Fatalf("the transcript does not record the rotation:\n%s", trData)
	}
	if err := os.WriteFile(tampered, []byte(strings.Replace(trData, `"rotation":true`, `"rotation":false`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	args = append([]string{}, cmds[1]...)
	args[4] = tampered
	refused("a transcript with its rotation intent changed", args, 3,
		"keyceremony: error: "+regexp.QuoteMeta(args[2])+`: transcript line 5: field "prev": does not match the hash of line 4: line 4 was changed, or lines were removed, inserted or reordered here \(expected [0-9a-f]{16}…, found [0-9a-f]{16}…\)`)
}

// TestMultiRegionOfflineRotation rotates a two-Region key across the air
// gap: params fetched for the primary and its replica (each in its
// Region), one offline ceremony with rotate: true and every AWS_* variable
// removed, and the one upload it printed with both Regions' bundles.
// Given only the primary's bundle, upload refuses (exit 2) with the whole
// command, before anything changes. After it, both Regions hold the old
// material NON_CURRENT and the new CURRENT, and old and new ciphertexts
// decrypt in both.
func TestMultiRegionOfflineRotation(t *testing.T) {
	a := newAirgap(t)
	ctx := context.Background()
	work := t.TempDir()
	primary, err := a.kms.CreateKey(ctx, "multi-Region rotation", true)
	if err != nil {
		t.Fatal(err)
	}
	replica, err := a.kms.Replicate(ctx, primary, "us-east-1", "replica")
	if err != nil {
		t.Fatal(err)
	}
	east := a.kms.In("us-east-1")
	fetchBoth := func(v string) offlineKey {
		pp, rp := filepath.Join(work, "params-p-"+v+".json"), filepath.Join(work, "params-r-"+v+".json")
		ppin, rpin := a.fetch(primary, "RSAES_OAEP_SHA_1", "RSA_2048", pp), a.fetch(replica, "RSAES_OAEP_SHA_1", "RSA_2048", rp)
		return offlineKey{"mr-" + v, pp, ppin, fmt.Sprintf(", valid_for: 60d, replicas: [{params_file: %s, wrapping_key_sha256: %s}]", rp, rpin)}
	}
	stdout, stderr, code := a.offlineRun(work, "mr-v1", "out-v1", fetchBoth("v1"))
	if code != 0 || len(uploads(stdout)) != 1 {
		t.Fatalf("offline run exited %d:\n%s\n%s", code, stdout, stderr)
	}
	if out, errOut, code := a.run(nil, uploads(stdout)[0]...); code != 0 {
		t.Fatalf("first upload: exit %d\n%s%s", code, out, errOut)
	}
	mid1 := a.material(primary)
	oldWest, err := a.kms.Encrypt(ctx, primary, []byte("v1 west"))
	if err != nil {
		t.Fatal(err)
	}
	oldEast, err := east.Encrypt(ctx, replica, []byte("v1 east"))
	if err != nil {
		t.Fatal(err)
	}

	k := fetchBoth("v2")
	// Without the replica's params file: refused in the room, before
	// anything happens (the params file says the key has a replica).
	_, stderr, code = a.offlineRun(work, "mr-bad", "out-bad", offlineKey{k.label, k.params, k.pin, ", rotate: true, valid_for: 90d"})
	want := "keyceremony: error: keys[0]: KMS key " + primary + " had a replica " + replica + " when its parameters were fetched, and keys[].replicas has no params file for it: a rotation needs the new material in every replica; fetch its parameters (keyceremony params fetch --key " + replica + ") and add it to keys[].replicas"
	if code != 1 || errorLines(stderr) != want {
		t.Errorf("a rotation without the replica: exit %d\n%s\nwant %s", code, errorLines(stderr), want)
	}
	if _, err := os.Stat(filepath.Join(work, "out-bad")); err == nil {
		t.Error("a refused offline run left an output directory")
	}
	k.extra = strings.Replace(k.extra, "valid_for: 60d", "rotate: true, valid_for: 90d", 1)
	stdout, stderr, code = a.offlineRun(work, "mr-v2", "out-v2", k)
	if code != 0 {
		t.Fatalf("offline rotation exited %d:\n%s\n%s", code, stdout, stderr)
	}
	cmds := uploads(stdout)
	out := filepath.Join(work, "out-v2")
	pb, rb := filepath.Join(out, "bundle-mr-v2.json"), filepath.Join(out, "bundle-mr-v2-us-east-1.json")
	if len(cmds) != 1 || cmds[0][1] != "--bundle" || cmds[0][2] != pb || cmds[0][3] != "--bundle" || cmds[0][4] != rb {
		t.Fatalf("upload commands (one, both bundles):\n%s", stdout)
	}
	materials := func() string {
		var b strings.Builder
		for _, r := range []struct {
			arn string
			c   *awskms.Client
		}{{primary, a.kms}, {replica, east}} { // in one order: a map's changes run to run
			arn := r.arn
			ms, err := r.c.Materials(ctx, arn)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %+v\n", arn, ms)
		}
		return b.String()
	}
	before := materials()
	// Only the primary's bundle: refused, naming the whole command.
	partial := append([]string{"upload", "--bundle", pb}, cmds[0][5:]...)
	_, stderr, code = a.run(nil, partial...)
	want = "keyceremony: error: the transcript of ceremony mr-v2 records the rotation of key \"mr-v2\" with 2 bundles (its multi-Region primary and each replica): give them all to one upload, in any order: keyceremony " + strings.Join(cmds[0], " ")
	if code != 2 || errorLines(stderr) != want {
		t.Errorf("upload of the primary's bundle alone: exit %d\n%s\nwant\n%s", code, errorLines(stderr), want)
	}
	if after := materials(); after != before {
		t.Errorf("the refused upload changed KMS:\n%s\nwas\n%s", after, before)
	}

	// The command as printed (here with the bundles in the other order).
	swapped := append([]string{"upload", "--bundle", rb, "--bundle", pb}, cmds[0][5:]...)
	stdout, stderr, code = a.run(nil, swapped...)
	if code != 0 {
		t.Fatalf("upload: exit %d\n%s%s", code, stdout, stderr)
	}
	mid2 := a.material(primary)
	if !strings.Contains(stdout, "imported into replica "+replica+": the same key material "+mid2+" (EXISTING_KEY_MATERIAL)\n") {
		t.Errorf("upload says:\n%s", stdout)
	}
	for arn, c := range map[string]*awskms.Client{primary: a.kms, replica: east} {
		ms, err := c.Materials(ctx, arn)
		if err != nil || len(ms) != 2 || ms[0].ID != mid1 || ms[0].State != "NON_CURRENT" || ms[1].ID != mid2 || ms[1].State != "CURRENT" {
			t.Fatalf("%s materials after the rotation: %+v %v", arn, ms, err)
		}
		for _, ct := range [][]byte{oldWest, oldEast} {
			if pt, err := c.Decrypt(ctx, arn, ct); err != nil || !strings.HasPrefix(string(pt), "v1 ") {
				t.Fatalf("an old ciphertext does not decrypt with %s: %v", arn, err)
			}
		}
	}
	ct, err := east.Encrypt(ctx, replica, []byte("v2 east"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := a.kms.Decrypt(ctx, primary, ct); err != nil || string(pt) != "v2 east" || hex.EncodeToString(ct[18:50]) != mid2 {
		t.Fatalf("a new ciphertext of the replica with the primary: %v", err)
	}
}

// importCounter records the ImportType of every ImportKeyMaterial request
// before the crash tests' kmsTap handles it.
type importCounter struct {
	next  http.Handler
	mu    sync.Mutex
	types []string
}

func (c *importCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") == "TrentService.ImportKeyMaterial" {
		body, _ := io.ReadAll(r.Body)
		var in struct{ ImportType string }
		_ = json.Unmarshal(body, &in)
		c.mu.Lock()
		c.types = append(c.types, in.ImportType)
		c.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	c.next.ServeHTTP(w, r)
}

func (c *importCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.types
	c.types = nil
	return out
}

// TestUploadRotationKilled kills the real upload of an offline rotation
// with SIGKILL right after KMS took the new material (before the
// rotation), runs it again and kills it right after RotateKeyOnDemand, then
// runs it a third and a fourth time: the material goes in exactly once as
// NEW_KEY_MATERIAL (the second run finds it by its key check value and
// imports it again as that material), the key is rotated once, the last
// runs change nothing and say so, and old ciphertexts decrypt.
func TestUploadRotationKilled(t *testing.T) {
	a := newAirgap(t)
	ctx := context.Background()
	work := t.TempDir()
	srv, err := kmslocal.Open(kmslocal.Options{PoolSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	tap := &kmsTap{srv: srv, killAt: -1, opCount: map[string]int{}}
	counter := &importCounter{next: tap}
	hs := httptest.NewServer(counter)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	t.Setenv("AWS_ENDPOINT_URL_KMS", hs.URL)
	if a.kms, err = awskms.New(ctx, awskms.Options{}); err != nil {
		t.Fatal(err)
	}
	tap.transcript = filepath.Join(work, "out-first", "transcript.jsonl")
	arn := a.firstImportOffline(work, "first", "kill-v1")[0]
	mid1 := a.material(arn)
	old, err := a.kms.Encrypt(ctx, arn, []byte("under v1"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(work, "params-v2.json")
	stdout, stderr, code := a.offlineRun(work, "kill", "out-kill", offlineKey{"kill-v2", p, a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", p), ", rotate: true, valid_for: 90d"})
	if code != 0 || len(uploads(stdout)) != 1 {
		t.Fatalf("offline rotation exited %d:\n%s\n%s", code, stdout, stderr)
	}
	upload := uploads(stdout)[0]
	tap.transcript = filepath.Join(work, "out-kill", "transcript.jsonl")
	counter.take()

	killedRun := func(op string) {
		t.Helper()
		cmd := binary(t, "keyceremony", upload...)
		cmd.Env = os.Environ()
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		exited := make(chan struct{})
		tap.mu.Lock()
		tap.killOp, tap.killOpN, tap.after, tap.exited, tap.opCount = op, 1, true, exited, map[string]int{}
		if err := cmd.Start(); err != nil {
			tap.mu.Unlock()
			t.Fatal(err)
		}
		tap.victim = cmd.Process
		tap.mu.Unlock()
		err := cmd.Wait()
		close(exited)
		tap.mu.Lock()
		tap.killOp, tap.victim = "", nil
		tap.mu.Unlock()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("upload was not killed after %s: %v\n%s%s", op, err, o.String(), e.String())
		}
	}
	killedRun("ImportKeyMaterial")
	ms, _ := a.kms.Materials(ctx, arn)
	if len(ms) != 2 || ms[1].State != "PENDING_ROTATION" {
		t.Fatalf("after the kill after the import: %+v", ms)
	}
	mid2 := ms[1].ID
	killedRun("RotateKeyOnDemand")
	if got := a.material(arn); got != mid2 {
		t.Fatalf("after the kill after the rotation the current material is %s, not %s", got, mid2)
	}
	if types := counter.take(); strings.Join(types, " ") != "NEW_KEY_MATERIAL EXISTING_KEY_MATERIAL" {
		t.Errorf("imports of the killed runs: %v, want one NEW_KEY_MATERIAL, then the same material again as EXISTING_KEY_MATERIAL", types)
	}
	for range 2 {
		stdout, stderr, code := a.run(nil, upload...)
		if code != 0 || !strings.Contains(stdout, "nothing to do: KMS key "+arn+" already has this material") {
			t.Fatalf("upload after the kills: exit %d\n%s%s", code, stdout, stderr)
		}
	}
	if types := counter.take(); len(types) != 0 {
		t.Errorf("the runs after the rotation imported: %v", types)
	}
	ms, err = a.kms.Materials(ctx, arn)
	if err != nil || len(ms) != 2 || ms[0].ID != mid1 || ms[0].State != "NON_CURRENT" || ms[1].ID != mid2 || ms[1].State != "CURRENT" {
		t.Fatalf("materials at the end: %+v %v", ms, err)
	}
	if pt, err := a.kms.Decrypt(ctx, arn, old); err != nil || string(pt) != "under v1" {
		t.Fatalf("an old ciphertext does not decrypt: %v", err)
	}
	if len(tap.problems) > 0 {
		t.Errorf("KMS saw: %v", tap.problems)
	}
}

// TestOfflineRotationResumed kills an offline rotation ceremony (the real
// binary, no AWS environment) at several transcript lines and runs it again
// each time: the resumed transcript verifies with one rotation intent that
// counts, and the upload it prints rotates the key.
func TestOfflineRotationResumed(t *testing.T) {
	a := newAirgap(t)
	ctx := context.Background()
	work := t.TempDir()
	arn := a.firstImportOffline(work, "first", "res-v1")[0]
	mid1 := a.material(arn)
	p := filepath.Join(work, "params-v2.json")
	cfg := a.offlineConfig(work, "res", "out-res", offlineKey{"res-v2", p, a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", p), ", rotate: true, valid_for: 90d"})
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1", pin[0])
	kills := 0
	for _, line := range []int{4, 7, 10, 14} {
		cmd := binary(t, "keyceremony-crashtest", "run", "--config", cfg)
		cmd.Env = append(slices.Clone(env), "HOME="+t.TempDir(), "KEYCEREMONY_CRASHTEST_KILL_AT_LINE="+strconv.Itoa(line))
		_, stderr, code := runBinary(t, cmd)
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			kills++
			continue
		}
		t.Fatalf("the run to be killed at line %d exited %d: %s", line, code, stderr)
	}
	stdout, stderr, code := a.offline(pin, "run", "--config", cfg)
	if code != 0 || kills != 4 {
		t.Fatalf("the resumed offline rotation exited %d after %d kills:\n%s\n%s", code, kills, stdout, stderr)
	}
	intents := 0
	for _, ev := range verifiedEvents(t, &e2e{t: t, dir: work}, filepath.Join(work, "out-res")) {
		if d, ok := ev.Data.(*events.KMSKey); ok && d.Rotation && d.KMSKeyARN == arn {
			intents++
		}
	}
	if intents != 1 {
		t.Fatalf("the resumed transcript counts %d rotation intents for %s, want 1", intents, arn)
	}
	if out, errOut, code := a.run(nil, uploads(stdout)[0]...); code != 0 {
		t.Fatalf("upload: exit %d\n%s%s", code, out, errOut)
	}
	if ms, err := a.kms.Materials(ctx, arn); err != nil || len(ms) != 2 || ms[0].ID != mid1 || ms[0].State != "NON_CURRENT" || ms[1].State != "CURRENT" {
		t.Fatalf("materials after the upload: %+v %v", ms, err)
	}
}
