package main_test

import (
	"path/filepath"
	"strings"
	"testing"
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
// it.
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
		if code != 0 || !strings.Contains(o, "  1          match\n") || !strings.Contains(o, arn+": record match: key check value ") {
			t.Errorf("status --transcript %s --transcript %s: exit %d\n%s%s", order[0], order[1], code, o, e)
		}
	}
}
