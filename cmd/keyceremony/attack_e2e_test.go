package main_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUploadMixedRotation: one offline ceremony makes the first material of
// a new key and a rotation of another; the operator gives both bundles to
// one upload, the new key's first. The upload is refused before anything
// changes, naming both keys: the new key stays PendingImport and the other
// keeps its material. (It imported the new key's material, then sent the
// rotation's as a first import, which KMS refused as other material, with
// a hint about the wrong escrow: the rotation never happened.) Each
// bundle's own command, as the run printed it, then does its job.
func TestUploadMixedRotation(t *testing.T) {
	a := newAirgap(t)
	work := t.TempDir()
	rot := a.firstImportOffline(work, "mix-v1", "mix-r")[0]
	before := a.material(rot)
	fresh := a.createKey()
	pr, pn := filepath.Join(work, "params-r2.json"), filepath.Join(work, "params-n.json")
	stdout, stderr, code := a.offlineRun(work, "mix-2", "out-mix2",
		offlineKey{"mix-n", pn, a.fetch(fresh, "RSAES_OAEP_SHA_1", "RSA_2048", pn), ", valid_for: 60d"},
		offlineKey{"mix-r2", pr, a.fetch(rot, "RSAES_OAEP_SHA_1", "RSA_2048", pr), ", rotate: true, valid_for: 60d"})
	if code != 0 {
		t.Fatalf("offline run exited %d:\n%s\n%s", code, stdout, stderr)
	}
	up := uploads(stdout)
	if len(up) != 2 || len(up[0]) != 9 || up[0][5] != "--fingerprint" {
		t.Fatalf("upload commands %q", up)
	}
	out := filepath.Join(work, "out-mix2")
	_, stderr, code = a.run(nil, "upload", "--bundle", filepath.Join(out, "bundle-mix-n.json"), "--bundle", filepath.Join(out, "bundle-mix-r2.json"),
		"--transcript", filepath.Join(out, "transcript.jsonl"), "--fingerprint", up[0][6], "--valid-for", "60d")
	if want := "keyceremony: error: the bundles are for keys \"mix-n\" and \"mix-r2\": upload one key's bundles at a time\n"; code != 1 || stderr != want {
		t.Errorf("upload of both: exit %d\n%s\nwant exit 1 and\n%s", code, stderr, want)
	}
	if st, m := a.keyState(fresh), a.material(rot); st != "PendingImport" || m != before {
		t.Fatalf("the refused upload changed KMS: the new key is %s, the rotated key's material %s (was %s)", st, m, before)
	}
	for _, args := range up {
		if o, e, code := a.run(nil, args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, o, e)
		}
	}
	if st, m := a.keyState(fresh), a.material(rot); st != "Enabled" || m == before {
		t.Fatalf("after the uploads the new key is %s, the rotated key's material %s (was %s)", st, m, before)
	}
}

// TestStatusTranscriptOrder: after a rotation across the air gap, status
// is given the key's two transcripts (first import, rotation) in either
// order: both say the key holds recorded material (exit 0, match). Given
// the rotation's transcript first, status took the key check value of the
// last transcript given as the one the current material must have, and
// reported a mismatch (exit 3) for a key exactly as its ceremonies left
// it. The note names the transcript the current material's description
// cites by its path (both are transcript.jsonl).
func TestStatusTranscriptOrder(t *testing.T) {
	a := newAirgap(t)
	work := t.TempDir()
	arn := a.firstImportOffline(work, "ord-v1", "ord-v1")[0]
	p := filepath.Join(work, "params-v2.json")
	stdout, stderr, code := a.offlineRun(work, "ord-v2", "out-ord-v2", offlineKey{"ord-v2", p, a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", p), ", rotate: true, valid_for: 60d"})
	if code != 0 {
		t.Fatalf("offline run exited %d:\n%s\n%s", code, stdout, stderr)
	}
	for _, args := range uploads(stdout) {
		if o, e, code := a.run(nil, args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, o, e)
		}
	}
	tr1, tr2 := filepath.Join(work, "out-ord-v1", "transcript.jsonl"), filepath.Join(work, "out-ord-v2", "transcript.jsonl")
	for _, order := range [][]string{{tr1, tr2}, {tr2, tr1}} {
		o, e, code := a.run(nil, "status", "--transcript", order[0], "--transcript", order[1], "--warn", "7d")
		if code != 0 || !strings.Contains(o, "  1          match\n") || !strings.Contains(o, arn+": record match: key check value ") ||
			!strings.Contains(o, " as recorded; description cites "+tr2+"\n") {
			t.Errorf("status --transcript %s --transcript %s: exit %d\n%s%s", order[0], order[1], code, o, e)
		}
	}
}

// TestOfflineKeyMaterialDeleted: a key whose imported material was deleted
// (or expired) is PendingImport and takes only that material again. params
// fetch says so, and an offline ceremony for it is refused before anything
// changes, with or without rotate: true, naming the way that works. Before,
// params fetch and the refusal without rotate said to add rotate: true,
// and the refusal with it said to remove it.
func TestOfflineKeyMaterialDeleted(t *testing.T) {
	a := newAirgap(t)
	work := t.TempDir()
	arn := a.firstImportOffline(work, "del-v1", "del-v1")[0]
	mid := a.material(arn)
	if err := a.kms.DeleteMaterial(context.Background(), arn, ""); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(work, "params-v2.json")
	stdout, stderr, code := a.run(nil, "params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--key-spec", "RSA_2048", "--out", p)
	if want := "\nKMS key " + arn + " is PendingImport with key material " + mid + " (expired or deleted): KMS takes only that material again (keyceremony renew, or recover --reimport); these parameters serve that, and a rotation only once it is Enabled again\n"; code != 0 || !strings.Contains(stdout, want) {
		t.Fatalf("params fetch: exit %d\n%s%s\nwant the line %q", code, stdout, stderr, want)
	}
	_, after, _ := strings.Cut(stdout, "wrapping public key sha256 ")
	pin := strings.TrimSuffix(strings.Fields(after)[0], ":")
	want := "keyceremony: error: keys[0].params_file " + p + " is for " + arn + ", which was PendingImport with key material " + mid +
		" when its parameters were fetched (expired or deleted): KMS takes only that material again; import it again (keyceremony renew, or recover --reimport), then fetch parameters for a rotation, or fetch parameters for a new key\n"
	for _, extra := range []string{", valid_for: 60d", ", rotate: true, valid_for: 60d"} {
		_, stderr, code := a.offlineRun(work, "del-v2", "out-del-v2", offlineKey{"del-v2", p, pin, extra})
		if code != 1 || stderr != want {
			t.Errorf("keys[0]%s: exit %d\n%s\nwant exit 1 and\n%s", extra, code, stderr, want)
		}
		if _, err := os.Stat(filepath.Join(work, "out-del-v2")); err == nil {
			t.Fatalf("the refused run (keys[0]%s) left an output directory", extra)
		}
	}
}

// TestUploadExpiredRotationBundle: the rotation bundle of an offline
// ceremony reaches the online machine after its import token expired. The
// refusal says what works: a new offline rotation. It said to fetch new
// parameters and run keyceremony wrap: wrap's transcript records no
// rotation, so upload then sent the material as a first import, which KMS
// refused ("check you recovered the right escrow"), a dead end.
func TestUploadExpiredRotationBundle(t *testing.T) {
	a := newAirgap(t)
	work := t.TempDir()
	arn := a.firstImportOffline(work, "exp-v1", "exp-v1")[0]
	before := a.material(arn)
	p := filepath.Join(work, "params-v2.json")
	pin := a.fetch(arn, "RSAES_OAEP_SHA_1", "RSA_2048", p)
	// The parameters end in a few seconds (a params file's own claim;
	// KMS's import token would end later).
	var params map[string]any
	if err := json.Unmarshal(mustRead(t, p), &params); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(8 * time.Second).UTC().Truncate(time.Second)
	params["parameters_valid_to"] = end.Format(time.RFC3339)
	data, _ := json.Marshal(params)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := a.offlineRun(work, "exp-v2", "out-exp-v2", offlineKey{"exp-v2", p, pin, ", rotate: true, valid_for: 60d"})
	if code != 0 {
		t.Fatalf("offline run exited %d:\n%s\n%s", code, stdout, stderr)
	}
	time.Sleep(time.Until(end) + time.Second)
	_, stderr, code = a.run(nil, uploads(stdout)[0]...)
	hint := "keyceremony: hint: fetch new parameters online with: keyceremony params fetch --key " + arn + " --algorithm RSAES_OAEP_SHA_1 --key-spec RSA_2048 --out params-new.json, for the new ceremony's keys[].params_file\n"
	want := "keyceremony: error: import parameters expired: the import token in the bundle for " + arn + " expired at " + end.Format(time.RFC3339) +
		"; a rotation cannot be wrapped again with keyceremony wrap (its transcript records no rotation, and KMS refuses the material as a first import): run the offline ceremony with keys[].rotate: true again with new parameters, and upload its bundles before they expire\n" + hint
	if code != 1 || stderr != want {
		t.Errorf("upload of the expired rotation bundle: exit %d\n%s\nwant exit 1 and\n%s", code, stderr, want)
	}
	if m := a.material(arn); m != before {
		t.Fatalf("the refused upload changed the key's material")
	}
}
