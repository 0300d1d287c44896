package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/transcripts"
	"github.com/keyceremony/keyceremony/transcripts/events"
	"github.com/keyceremony/keyceremony/wrap"
)

// A token on one of the two modules make test runs on, with the flags that
// select it on the command line and the token section of a config.
type vendorToken struct {
	name  string
	flags []string // --module … --init-args … --token-label …
	yaml  string
	label string
}

func softhsmToken(label string) vendorToken {
	return vendorToken{name: "softhsm", label: label, flags: []string{"--module", hsmtest.Module},
		yaml: fmt.Sprintf("  module: %s\n  label: %s\n", hsmtest.Module, label)}
}

func nssToken(t *testing.T) vendorToken {
	n := hsmtest.SetupNSS(t)
	return vendorToken{name: "nss", label: hsmtest.NSSLabel, flags: []string{"--module", n.Module, "--init-args", n.InitArgs},
		yaml: fmt.Sprintf("  module: %s\n  init_args: %q\n  label: %s\n", n.Module, n.InitArgs, hsmtest.NSSLabel)}
}

const vendorYAML = `
ceremony:
  id: %[1]s
  operator: tester
  out_dir: %[2]s
token:
%[3]s
kms:
  wrapping_algorithm: %[4]s
  wrapping_key_spec: RSA_2048
keys:
  - label: key-%[1]s
    create: true
    does_not_expire: true
escrow:
  threshold: 1
  allow_single_custodian: true
  custodians:
    - name: alice
      recipient: %[5]s
`

// TestCrossVendor runs a ceremony on SoftHSM2 and on NSS softokn, verifies
// each (transcript, share, drill), recovers each escrow into the other
// vendor's token (in the token, and with --host-unwrap), and uploads each
// ceremony's key to the loopback KMS with all four wrapping algorithms (in
// the HSM where the probe proved the token can, on the host where not).
func TestCrossVendor(t *testing.T) {
	e := newE2E(t)
	if err := hsmtest.InitToken(os.Getenv("SOFTHSM2_CONF"), "target"); err != nil {
		t.Fatal(err)
	}
	if err := hsmtest.InitToken(os.Getenv("SOFTHSM2_CONF"), "target2"); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := e.config("alice.key", id.String()+"\n")
	pinEnv := []string{"KEYCEREMONY_PIN=" + hsmtest.PIN}
	soft, nss := softhsmToken("ceremony"), nssToken(t)
	inHSM := map[string]map[wrap.Algorithm]bool{
		// What the probe finds (hsm.TestProbe checks it on each module).
		"softhsm": {wrap.RSAESOAEPSHA1: true, wrap.RSAAESKeyWrapSHA1: true},
		"nss":     {wrap.RSAESOAEPSHA1: true, wrap.RSAESOAEPSHA256: true, wrap.RSAAESKeyWrapSHA1: true, wrap.RSAAESKeyWrapSHA256: true},
	}
	type made struct{ dir, label, kcv, fp string }
	ceremonies := map[string]made{}
	for _, v := range []struct {
		tok vendorToken
		alg wrap.Algorithm
	}{{soft, wrap.RSAESOAEPSHA1}, {nss, wrap.RSAESOAEPSHA256}} {
		name := "x-" + v.tok.name
		out := filepath.Join(e.dir, name)
		cfg := e.config(name+".yaml", fmt.Sprintf(vendorYAML, name, out, strings.TrimRight(v.tok.yaml, "\n"), v.alg, id.Recipient()))
		stdout, stderr, code := e.run(pinEnv, "run", "--config", cfg)
		_, fp, ok := strings.Cut(stdout, "signer fingerprint: ")
		if code != 0 || !ok {
			t.Fatalf("%s ceremony: exit %d\n%s\n%s", v.tok.name, code, stdout, stderr)
		}
		fp = strings.Fields(fp)[0]
		tr := filepath.Join(out, "transcript.jsonl")
		if _, stderr, code := e.run(nil, "verify", "--pubkey", filepath.Join(out, "signing-key.pem"), tr); code != 0 {
			t.Fatalf("%s verify: %s", v.tok.name, stderr)
		}
		if _, stderr, code := e.run(nil, "escrow", "verify-share", "--share", filepath.Join(out, "share-1-alice.age"), "--identity", idFile, "--transcript", tr, "--pubkey", filepath.Join(out, "signing-key.pem")); code != 0 {
			t.Fatalf("%s verify-share: %s", v.tok.name, stderr)
		}
		blob, _ := os.ReadFile(filepath.Join(out, "escrow.json"))
		if !strings.Contains(string(blob), `"wrap_scheme": "RFC 5649"`) || strings.Contains(string(blob), "CKM_") {
			t.Errorf("%s escrow blob does not name its scheme by its standard:\n%s", v.tok.name, blob)
		}
		stdout, stderr, code = e.run(nil, "recover", "--drill", "--escrow", filepath.Join(out, "escrow.json"), "--share", filepath.Join(out, "share-1-alice.age"), "--identity", idFile, "--transcript", tr, "--fingerprint", fp, "--out", filepath.Join(e.dir, name+"-drill"))
		if code != 0 || !strings.Contains(stdout, "drill PASSED") {
			t.Fatalf("%s drill: exit %d\n%s\n%s", v.tok.name, code, stdout, stderr)
		}
		kcv := kcvOf(t, tr, "key-"+name)
		ceremonies[v.tok.name] = made{dir: out, label: "key-" + name, kcv: kcv, fp: fp}
	}

	// Cross-vendor recovery: NSS's escrow into SoftHSM, SoftHSM's into NSS
	// (a fresh NSS database), each in the token and with --host-unwrap.
	nss2 := nssToken(t)
	for _, c := range []struct {
		from   string
		target vendorToken
		host   bool
	}{
		{"nss", softhsmToken("target"), false},
		{"nss", softhsmToken("target2"), true},
		{"softhsm", nss2, false},
		{"softhsm", nss, true},
	} {
		m := ceremonies[c.from]
		out := filepath.Join(e.dir, fmt.Sprintf("rec-%s-%s-%v", c.from, c.target.label, c.host))
		args := append([]string{"recover", "--escrow", filepath.Join(m.dir, "escrow.json"), "--share", filepath.Join(m.dir, "share-1-alice.age"),
			"--identity", idFile, "--transcript", filepath.Join(m.dir, "transcript.jsonl"), "--fingerprint", m.fp, "--out", out, "--token-label", c.target.label}, c.target.flags...)
		if c.host {
			args = append(args, "--host-unwrap")
		}
		stdout, stderr, code := e.run(pinEnv, args...)
		if code != 0 || !strings.Contains(stdout, "kcv "+m.kcv+" matches") {
			t.Fatalf("recover %s escrow into %s (host %v): exit %d\n%s\n%s", c.from, c.target.name, c.host, code, stdout, stderr)
		}
		if _, stderr, code := e.run(nil, "verify", "--pubkey", filepath.Join(out, "signing-key.pem"), filepath.Join(out, "transcript.jsonl")); code != 0 {
			t.Fatalf("verify recovery transcript: %s", stderr)
		}
		unwrap := eventData(t, filepath.Join(out, "transcript.jsonl"), "shares").(*events.Shares).Unwrap
		if want := "host (recover --host-unwrap)"; c.host && unwrap != want || !c.host && (unwrap == want || unwrap == "") {
			t.Errorf("recovery of %s into %s records unwrap %v", c.from, c.target.name, unwrap)
		}
	}

	// Each ceremony's key, wrapped by its own token with every algorithm,
	// imports into the loopback KMS.
	kc, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []vendorToken{soft, nss} {
		m := ceremonies[v.name]
		for _, alg := range []wrap.Algorithm{wrap.RSAESOAEPSHA1, wrap.RSAESOAEPSHA256, wrap.RSAAESKeyWrapSHA1, wrap.RSAAESKeyWrapSHA256} {
			arn, err := kc.CreateKey(context.Background(), "cross-vendor", false)
			if err != nil {
				t.Fatal(err)
			}
			work := filepath.Join(e.dir, fmt.Sprintf("up-%s-%s", v.name, alg))
			params := work + "-params.json"
			pin := e.fetchPinned(arn, string(alg), params)
			args := append([]string{"wrap", "--params", params, "--wrapping-key-sha256", pin, "--key", m.label, "--token", v.label, "--out-dir", work}, v.flags...)
			if !inHSM[v.name][alg] {
				args = append(args, "--allow-host-wrap")
			}
			stdout, stderr, code := e.run(pinEnv, args...)
			if code != 0 {
				t.Fatalf("%s wrap %s: exit %d\n%s", v.name, alg, code, stderr)
			}
			where := "inside the HSM"
			if !inHSM[v.name][alg] {
				where = "on the host"
			}
			if !strings.Contains(stdout, where) || !strings.Contains(stdout, "kcv "+m.kcv) {
				t.Errorf("%s wrap %s: want %q and kcv %s:\n%s", v.name, alg, where, m.kcv, stdout)
			}
			_, wfp, _ := strings.Cut(stdout, "signer fingerprint:")
			wfp = strings.Fields(wfp + " -")[0]
			if _, stderr, code := e.run(nil, "upload", "--bundle", filepath.Join(work, "bundle-"+m.label+".json"), "--transcript", filepath.Join(work, "transcript.jsonl"), "--fingerprint", wfp, "--does-not-expire"); code != 0 {
				t.Fatalf("%s upload %s: %s", v.name, alg, stderr)
			}
		}
	}
}

// TestFrozenEscrowOtherVendor: the escrow frozen from main at 5aa1006
// (escrow/testdata/v1, made on SoftHSM before the blob named its scheme by
// its standard) recovers into NSS softokn, and with --host-unwrap
// (TestFrozenV1Drill drills it on SoftHSM).
func TestFrozenEscrowOtherVendor(t *testing.T) {
	e := newE2E(t)
	abs := func(f string) string { p, _ := filepath.Abs(filepath.Join(v1, f)); return p }
	common := []string{"recover", "--escrow", abs("escrow.json"), "--share", abs("share-1-alice.age"), "--share", abs("share-4-dave.age"),
		"--identity", abs("identities/alice.key"), "--identity", abs("identities/dave_rsa"), "--transcript", abs("transcript.jsonl"), "--fingerprint", v1Fp}
	nss := nssToken(t)
	for _, c := range []struct {
		name  string
		extra []string
	}{
		{"nss", append([]string{"--token-label", nss.label}, nss.flags...)},
		{"softhsm-host", []string{"--token-label", "ceremony", "--host-unwrap"}},
	} {
		out := filepath.Join(e.dir, "frozen-"+c.name)
		stdout, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + hsmtest.PIN}, append(append(append([]string(nil), common...), "--out", out), c.extra...)...)
		if code != 0 || strings.Count(stdout, "recovered into the token, kcv") != 2 {
			t.Fatalf("%s: exit %d\n%s\n%s", c.name, code, stdout, stderr)
		}
	}
}

// eventData returns the data of the first event of step in a transcript.
func eventData(t *testing.T, path, step string) events.Data {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := transcripts.Verify(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range res.Events {
		if ev.Step == step {
			return ev.Data
		}
	}
	t.Fatalf("%s has no %s event", path, step)
	return nil
}

// kcvOf returns the key check value a ceremony transcript recorded for label.
func kcvOf(t *testing.T, path, label string) string {
	t.Helper()
	data, _ := os.ReadFile(path)
	res, err := transcripts.Verify(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range res.Events {
		if g, ok := ev.Data.(*events.GenerateKey); ok && g.Label == label {
			return g.KeyCheckValue
		}
	}
	t.Fatalf("%s has no generate-key event for %s", path, label)
	return ""
}

// TestProbeCommand runs keyceremony probe on both modules: it prints what
// each AES key-wrap mechanism computes, and exits 3 naming what is missing
// when a ceremony with the asked algorithm could not run.
func TestProbeCommand(t *testing.T) {
	e := newE2E(t)
	pinEnv := []string{"KEYCEREMONY_PIN=" + hsmtest.PIN}
	nss := nssToken(t)
	for _, c := range []struct {
		tok   vendorToken
		alg   string
		code  int
		wants []string
	}{
		{softhsmToken("ceremony"), "RSAES_OAEP_SHA_1", 0, []string{"CKM_AES_KEY_WRAP_PAD                         wraps RFC 5649; unwraps RFC 5649", "a ceremony can run on this token",
			"transcript signing key:                ECDSA P-256\n    ECDSA P-256 (made, signed, verified): ok\n    RSA 3072 (made, signed, verified):    ok\n"}},
		{softhsmToken("ceremony"), "RSAES_OAEP_SHA_256", 3, []string{`keyceremony: error: a ceremony cannot run on token "ceremony": it lacks wrapping for KMS with RSAES_OAEP_SHA_256 inside the HSM`}},
		{nss, "RSA_AES_KEY_WRAP_SHA_256", 0, []string{"CKM_AES_KEY_WRAP_PAD                         wraps PKCS#7 + RFC 3394; unwraps PKCS#7 + RFC 3394", "key check value:                       computed"}},
	} {
		stdout, stderr, code := e.run(pinEnv, append([]string{"probe", "--token", c.tok.label, "--algorithm", c.alg}, c.tok.flags...)...)
		if code != c.code {
			t.Errorf("probe %s %s: exit %d, want %d\n%s%s", c.tok.name, c.alg, code, c.code, stdout, stderr)
		}
		for _, w := range c.wants {
			if !strings.Contains(stdout+stderr, w) {
				t.Errorf("probe %s %s lacks %q:\n%s%s", c.tok.name, c.alg, w, stdout, stderr)
			}
		}
	}
	// Without its initialisation parameters NSS does not load; the error says
	// where they go.
	_, stderr, code := e.run(pinEnv, "probe", "--token", nss.label, "--module", nss.flags[1])
	if code != 1 || !strings.Contains(stderr, "token.init_args") {
		t.Errorf("probe without init args: exit %d: %s", code, stderr)
	}
}

// fetchPinned runs params fetch into out and returns the wrapping key's
// SHA-256 it printed.
func (e *e2e) fetchPinned(arn, alg, out string) string {
	e.t.Helper()
	stdout, stderr, code := e.run(nil, "params", "fetch", "--key", arn, "--algorithm", alg, "--key-spec", "RSA_3072", "--out", out)
	_, after, ok := strings.Cut(stdout, "wrapping public key sha256 ")
	if code != 0 || !ok {
		e.t.Fatalf("params fetch: %s%s", stdout, stderr)
	}
	return strings.TrimSuffix(strings.Fields(after)[0], ":")
}

// TestWrapForeignKeys: wrap judges a key it did not make by its attributes
// (made here with pkcs11-tool, as an operator would), chooses keys by CKA_ID
// and lists the candidates when a label names several.
func TestWrapForeignKeys(t *testing.T) {
	e := newE2E(t)
	keygen := func(typ, label, id string, extra ...string) {
		args := append([]string{"--module", hsmtest.Module, "--login", "--pin", hsmtest.PIN, "--token-label", "ceremony", "--keygen", "--key-type", typ, "--label", label, "--id", id}, extra...)
		if out, err := exec.Command("pkcs11-tool", args...).CombinedOutput(); err != nil {
			t.Fatalf("pkcs11-tool: %v: %s", err, out)
		}
	}
	keygen("AES:16", "small", "0a", "--extractable", "--sensitive")
	keygen("AES:32", "loose", "0b", "--extractable", "--usage-decrypt")
	keygen("AES:32", "stuck", "0c", "--sensitive")
	keygen("AES:32", "twin", "0d", "--extractable", "--sensitive")
	keygen("AES:32", "twin", "0e", "--extractable", "--sensitive")
	keygen("AES:32", "hidden-twin", "1d", "--extractable", "--sensitive", "--private")
	keygen("AES:32", "hidden-twin", "1e", "--extractable", "--sensitive", "--private")
	kc, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	arn, err := kc.CreateKey(context.Background(), "foreign", false)
	if err != nil {
		t.Fatal(err)
	}
	params := filepath.Join(e.dir, "params.json")
	pin := e.fetchPinned(arn, "RSAES_OAEP_SHA_1", params)
	pinEnv := []string{"KEYCEREMONY_PIN=" + hsmtest.PIN}
	n := 0
	wrapKey := func(code int, want string, key ...string) string {
		t.Helper()
		n++
		out := filepath.Join(e.dir, fmt.Sprintf("w%d", n))
		args := []string{"wrap", "--params", params, "--wrapping-key-sha256", pin, "--out-dir", out}
		if !strings.Contains(strings.Join(key, " "), "--token-uri") {
			args = append(args, "--token", "ceremony")
		}
		stdout, stderr, got := e.run(pinEnv, append(args, key...)...)
		if got != code || !strings.Contains(stdout+stderr, want) {
			t.Errorf("wrap %v: exit %d, want %d and %q:\n%s%s", key, got, code, want, stdout, stderr)
		}
		if code != 0 {
			if _, err := os.Stat(out); err == nil {
				t.Errorf("wrap %v failed but wrote %s", key, out)
			}
		}
		return out
	}
	wrapKey(1, `key "small" on token "ceremony" is AES of 128 bits; KMS imports only AES-256`, "--key", "small")
	wrapKey(1, `is not extractable (CKA_EXTRACTABLE false): it can never leave the token`, "--key", "stuck")
	wrapKey(1, `key "loose" on token "ceremony" is not sensitive (CKA_SENSITIVE false: its value can be read), allows encrypt (CKA_ENCRYPT), allows decrypt (CKA_DECRYPT), allows sign (CKA_SIGN): it may have been used outside KMS; if you know why, accept it with --accept-key-usage`, "--key", "loose")
	wrapKey(1, `2 secret keys with label "twin" on token "ceremony" (seen before login; nothing was logged in to): "twin" (id 0d), "twin" (id 0e); choose one with --key-id`, "--key", "twin")
	wrapKey(0, "key twin (kcv", "--key-id", "0e", "--accept-key-usage")
	// Keys the token shows without a login (CKA_PRIVATE false) are told
	// apart before it: a wrong PIN is never tried. Private ones are seen only
	// after the login, and refused then, before anything changes.
	for _, c := range []struct {
		key, pin string
		want     string
	}{
		{"twin", "0000", `keyceremony: error: the selection matches several: 2 secret keys with label "twin" on token "ceremony" (seen before login; nothing was logged in to): "twin" (id 0d), "twin" (id 0e); choose one with --key-id (or id= in the URI)`},
		{"hidden-twin", "0000", `keyceremony: error: wrong PIN for token "ceremony": nothing was changed; try again with the user PIN`},
		{"hidden-twin", hsmtest.PIN, `keyceremony: error: the selection matches several: 2 secret keys with label "hidden-twin" on token "ceremony": "hidden-twin" (id 1d), "hidden-twin" (id 1e); choose one with --key-id (or id= in the URI)`},
	} {
		out := filepath.Join(e.dir, "w-"+c.key+c.pin)
		_, stderr, code := e.run([]string{"KEYCEREMONY_PIN=" + c.pin}, "wrap", "--params", params, "--wrapping-key-sha256", pin, "--out-dir", out, "--token", "ceremony", "--key", c.key)
		if first, _, _ := strings.Cut(stderr, "\n"); code != 1 || first != c.want {
			t.Errorf("wrap --key %s with PIN %s: exit %d\n%s\nwant %s", c.key, c.pin, code, stderr, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("wrap --key %s failed but wrote %s", c.key, out)
		}
	}
	out := wrapKey(0, "key loose (kcv", "--key", "loose", "--accept-key-usage")
	ev := eventData(t, filepath.Join(out, "transcript.jsonl"), "key").(*events.Key)
	if ev.UsageAcceptedBy != "--accept-key-usage" || ev.Usage == nil {
		t.Errorf("the transcript does not record the accepted usage: %v", ev)
	}
	wrapKey(0, "key twin (kcv", "--key-id", "0d", "--token-uri", "pkcs11:token=ceremony;object=twin;type=secret-key", "--accept-key-usage")
	wrapKey(1, `the URI's id=0d and --key-id 0e name different keys`, "--key-id", "0e", "--token-uri", "pkcs11:token=ceremony;id=%0D")
	wrapKey(1, `type=private, but wrap wraps a secret key`, "--token-uri", "pkcs11:token=ceremony;object=twin;type=private")
}

// TestTokenURIFlags: a --token-uri that RFC 7512 does not allow, or whose
// key attributes the command would not use, is refused in one line naming
// the flag, the attribute and the fix, and never repeats a pin-value.
func TestTokenURIFlags(t *testing.T) {
	e := &e2e{t: t, dir: t.TempDir()}
	const attrs = "token, serial, manufacturer, model, slot-id, slot-description, slot-manufacturer, library-manufacturer, library-description, library-version, object, id, type"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "--token-uri", "pkcs11:token=ceremony;tokn=x"}, `--token-uri: pkcs11 URI: unknown path attribute "tokn": remove it, or use one RFC 7512 defines (` + attrs + `)`},
		{[]string{"probe", "--token-uri", "pkcs11:token=ceremony?pin=secret-4711"}, `--token-uri: pkcs11 URI: unknown query attribute "pin…" (not repeated: it may hold a PIN): remove it; keyceremony takes module-path and pin-source after the ?`},
		{[]string{"probe", "--token-uri", "pkcs11:token=ceremony;pin-value=secret-4711"}, `--token-uri: pkcs11 URI contains pin-value: never put a PIN in a URI; use a PIN file, the PIN environment variable or the prompt`},
		{[]string{"probe", "--token-uri", "pkcs11:token=ceremony;object=k1"}, `--token-uri: object, id and type choose a key, but probe chooses no key: drop them from the URI`},
		{[]string{"recover", "--share", "s.age", "--out", "o", "--token-uri", "pkcs11:token=ceremony;id=%01"}, `--token-uri: object, id and type choose a key, but a recovery makes its keys from the escrow's labels: drop them from the URI`},
		{[]string{"wrap", "--params", "p.json", "--wrapping-key-sha256", strings.Repeat("0", 64), "--out-dir", "o", "--token-uri", "pkcs11:token=ceremony;slot=1"}, `--token-uri: pkcs11 URI: unknown path attribute "slot": remove it`},
	} {
		stdout, stderr, code := e.run(nil, c.args...)
		if code != 2 || !strings.HasPrefix(stderr, "keyceremony: error: "+c.want) || strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "secret-4711") || stdout != "" {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q\nwant %q", c.args, code, stdout, stderr, c.want)
		}
	}
}
