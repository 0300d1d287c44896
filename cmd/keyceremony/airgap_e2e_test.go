package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/wrap"
)

// airgap is an end-to-end bench for the air-gap commands: the real
// keyceremony and kmslocal binaries and the SoftHSM token "ceremony".
type airgap struct {
	t   *testing.T
	url string
	dir string
	kms *awskms.Client
}

func newAirgap(t *testing.T) *airgap {
	t.Helper()
	// The real binaries, built by TestMain: keyceremony, and kmslocal
	// started by newE2E with the SoftHSM token "ceremony".
	e := newE2E(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.Unsetenv("AWS_PROFILE")
	os.Unsetenv("KEYCEREMONY_PIN")
	c, err := awskms.New(context.Background(), awskms.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &airgap{t: t, url: os.Getenv("AWS_ENDPOINT_URL_KMS"), dir: e.dir, kms: c}
}

// run runs the binary online: the test's AWS environment plus extra.
func (a *airgap) run(extra []string, args ...string) (string, string, int) {
	return a.exec(append(os.Environ(), extra...), args...)
}

// offline runs the binary with no AWS environment at all, except a KMS
// endpoint on a closed port, so any attempt to reach KMS would fail.
func (a *airgap) offline(extra []string, args ...string) (string, string, int) {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1", "HOME="+a.t.TempDir())
	return a.exec(append(env, extra...), args...)
}

func (a *airgap) exec(env []string, args ...string) (string, string, int) {
	a.t.Helper()
	cmd := binary(a.t, "keyceremony", args...)
	cmd.Env = env
	return runBinary(a.t, cmd)
}

// tokenKey generates an AES key on the token and returns its check value.
func (a *airgap) tokenKey(label string) string {
	a.t.Helper()
	tok, err := hsm.Open(hsm.Config{Module: hsmtest.Module, TokenLabel: "ceremony", PIN: []byte(hsmtest.PIN)})
	if err != nil {
		a.t.Fatal(err)
	}
	defer tok.Close()
	k, err := tok.GenerateAESKey(label, []byte(label))
	if err != nil {
		a.t.Fatal(err)
	}
	kcv, err := tok.CheckValue(k)
	if err != nil {
		a.t.Fatal(err)
	}
	return string(hexs(kcv))
}

func hexs(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, digits[x>>4], digits[x&15])
	}
	return out
}

func (a *airgap) createKey() string {
	a.t.Helper()
	arn, err := a.kms.CreateKey(context.Background(), "airgap test", false)
	if err != nil {
		a.t.Fatal(err)
	}
	return arn
}

func (a *airgap) keyState(arn string) string {
	a.t.Helper()
	d, err := a.kms.Describe(context.Background(), arn)
	if err != nil {
		a.t.Fatal(err)
	}
	return d.State
}

var pin = []string{"KEYCEREMONY_PIN=" + hsmtest.PIN}

// TestAirGapFlow runs params fetch → wrap (offline) → upload → check-key
// through the real binary, once per wrapping algorithm, across the three
// wrapping key sizes; SHA-256 takes the host path on SoftHSM.
func TestAirGapFlow(t *testing.T) {
	a := newAirgap(t)
	tests := []struct {
		alg   wrap.Algorithm
		spec  string
		inHSM bool
	}{
		{wrap.RSAESOAEPSHA1, "RSA_2048", true},
		{wrap.RSAAESKeyWrapSHA1, "RSA_4096", true},
		{wrap.RSAESOAEPSHA256, "RSA_3072", false},
		{wrap.RSAAESKeyWrapSHA256, "RSA_2048", false},
	}
	for i, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			label := "k" + string(rune('0'+i))
			kcv := a.tokenKey(label)
			arn := a.createKey()
			work := t.TempDir()
			params := filepath.Join(work, "params.json")
			out, errOut, code := a.run(nil, "params", "fetch", "--key", arn, "--algorithm", string(tt.alg), "--key-spec", tt.spec, "--out", params)
			if code != 0 {
				t.Fatalf("params fetch: exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, "valid until") {
				t.Errorf("params fetch output: %s", out)
			}
			// The wrap command params fetch printed, as printed.
			outDir := filepath.Join(work, "out")
			args := printed(t, out, "wrap", map[string]string{"LABEL": label, "TOKEN": "ceremony", "DIR": outDir})
			if !tt.inHSM {
				args = append(args, "--allow-host-wrap")
			}
			out, errOut, code = a.offline(pin, args...)
			if code != 0 {
				t.Fatalf("wrap: exit %d: %s", code, errOut)
			}
			where := "inside the HSM"
			if !tt.inHSM {
				where = "on the host"
			}
			if !strings.Contains(out, where) || !strings.Contains(out, "kcv "+kcv) {
				t.Errorf("wrap output lacks %q / kcv %s:\n%s", where, kcv, out)
			}
			// The transcript verifies and records the wrap and how it was done.
			if _, errOut, code := a.offline(nil, "verify", "--pubkey", filepath.Join(outDir, "signing-key.pem"), filepath.Join(outDir, "transcript.jsonl")); code != 0 {
				t.Fatalf("verify: exit %d: %s", code, errOut)
			}
			ev := wrapEvent(t, filepath.Join(outDir, "transcript.jsonl"))
			if ev["in_hsm"] != tt.inHSM {
				t.Errorf("wrap event in_hsm = %v, want %v", ev["in_hsm"], tt.inHSM)
			}
			if _, ok := ev["host_wrap"]; ok == tt.inHSM {
				t.Errorf("wrap event host_wrap present = %v, want %v (%v)", ok, !tt.inHSM, ev)
			}
			bundleData, err := os.ReadFile(filepath.Join(outDir, "bundle-"+label+".json"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := wrap.ParseBundle(bundleData)
			if err != nil {
				t.Fatal(err)
			}
			ekm, _ := os.ReadFile(filepath.Join(outDir, "EncryptedKeyMaterial.bin"))
			if !bytes.Equal(ekm, b.EncryptedKeyMaterial) || b.KeyCheckValue != kcv || b.TranscriptHash == "" {
				t.Errorf("bundle and EncryptedKeyMaterial.bin disagree, or kcv %s != %s", b.KeyCheckValue, kcv)
			}
			// The upload command wrap printed, as printed.
			out, errOut, code = a.run(nil, printed(t, out, "upload", nil)...)
			if code != 0 {
				t.Fatalf("upload: exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, "encrypt then decrypt through KMS: ok") {
				t.Errorf("upload output: %s", out)
			}
			if _, errOut, code := a.run(nil, "check-key", "--key", arn); code != 0 {
				t.Fatalf("check-key: exit %d: %s", code, errOut)
			}
		})
	}
}

func wrapEvent(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		var ev struct {
			Step string         `json:"step"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Step == "wrap" {
			return ev.Data
		}
	}
	t.Fatalf("no wrap event in %s", path)
	return nil
}

// TestAirGapRefusals: each bad input gets a one-line error naming the fix
// and changes nothing.
func TestAirGapRefusals(t *testing.T) {
	a := newAirgap(t)
	a.tokenKey("k")
	arn := a.createKey()
	work := t.TempDir()
	params := filepath.Join(work, "params.json")
	ph := a.fetch(arn, "RSAES_OAEP_SHA_256", "RSA_2048", params)
	other := filepath.Join(work, "other.json")
	otherHash := a.fetch(arn, "RSAES_OAEP_SHA_256", "RSA_2048", other)
	data, _ := os.ReadFile(params)
	p, err := wrap.ParseParams(data)
	if err != nil {
		t.Fatal(err)
	}
	p.ValidTo = time.Now().Add(-time.Minute).UTC()
	expired, _ := p.Marshal()
	expiredFile := filepath.Join(work, "expired.json")
	os.WriteFile(expiredFile, expired, 0o644)
	unknown := filepath.Join(work, "unknown.json")
	os.WriteFile(unknown, bytes.Replace(data, []byte(`"format"`), []byte(`"extra": 1, "format"`), 1), 0o644)
	outDir := filepath.Join(work, "out")

	tests := []struct {
		name    string
		offline bool
		env     []string
		args    []string
		code    int
		want    []string
	}{
		{"SHA-256 without host permission", true, pin, []string{"wrap", "--params", params, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir}, 1,
			[]string{"inside the HSM it can do: RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_1", "--allow-host-wrap"}},
		// No PIN in the environment: the expiry check must come first.
		{"expired params", true, nil, []string{"wrap", "--params", expiredFile, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir, "--allow-host-wrap"}, 1,
			[]string{"expired", "hint: fetch new parameters online with: keyceremony params fetch --key " + arn + " --algorithm RSAES_OAEP_SHA_256 --key-spec RSA_2048"}},
		{"unknown field", true, pin, []string{"wrap", "--params", unknown, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir}, 1, []string{`unknown field "extra"`}},
		{"unknown key", true, pin, []string{"wrap", "--params", params, "--wrapping-key-sha256", ph, "--key", "nope", "--token", "ceremony", "--out-dir", outDir, "--allow-host-wrap"}, 1, []string{`no secret key with label "nope"`}},
		{"two params sources", true, pin, []string{"wrap", "--params", params, "--aws-params", params, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir}, 2, []string{"exactly one of --params"}},
		{"aws params without algorithm", true, pin, []string{"wrap", "--aws-params", params, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir}, 2, []string{"--aws-params needs --algorithm"}},
		// The wrapping key is pinned on every path.
		{"wrap without a pin", true, pin, []string{"wrap", "--params", params, "--key", "k", "--token", "ceremony", "--out-dir", outDir, "--allow-host-wrap"}, 2,
			[]string{"keyceremony: error: wrap needs --wrapping-key-sha256 HEX, the wrapping public key's SHA-256 that params fetch printed online: a params file swapped on its way in would otherwise get the key\n"}},
		{"swapped params file", true, pin, []string{"wrap", "--params", other, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir, "--allow-host-wrap"}, 1,
			[]string{"keyceremony: error: wrapping key is not the pinned one: the wrapping key of the import parameters has sha256 " + otherHash[:16] + "…, not the pinned " + ph[:16] + "…: they are not what params fetch wrote, or the pin was mistyped; fetch the parameters again\n"}},
		{"bad pin", true, pin, []string{"wrap", "--params", params, "--wrapping-key-sha256", ph[:40], "--key", "k", "--token", "ceremony", "--out-dir", outDir}, 2, []string{"must be 64 hex digits"}},
		{"operator with an escape", true, pin, []string{"wrap", "--params", params, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir, "--operator", "eve\x1b[8m"}, 1,
			[]string{"keyceremony: error: operator \"eve\\x1b[8m\" must be printable text on one line: it is printed in the evidence\n"}},
		{"pin and no pin", true, pin, []string{"wrap", "--params", params, "--wrapping-key-sha256", ph, "--insecure-unpinned-wrapping-key", "--key", "k", "--token", "ceremony", "--out-dir", outDir}, 2, []string{"are exclusive"}},
		{"params out exists", false, nil, []string{"params", "fetch", "--key", arn, "--algorithm", "RSAES_OAEP_SHA_1", "--out", params}, 1, []string{"already exists"}},
		{"pkcs1", false, nil, []string{"params", "fetch", "--key", arn, "--algorithm", "RSAES_PKCS1_V1_5", "--out", filepath.Join(work, "p2.json")}, 2, []string{"no longer accepted"}},
		{"upload without expiry", false, nil, []string{"upload", "--bundle", params}, 2, []string{"exactly one of --valid-for"}},
		{"upload a params file", false, nil, []string{"upload", "--bundle", params, "--does-not-expire", "--insecure-unverified-bundle"}, 1, []string{"invalid bundle file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut string
			var code int
			if tt.offline {
				_, errOut, code = a.offline(tt.env, tt.args...)
			} else {
				_, errOut, code = a.run(tt.env, tt.args...)
			}
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 1 || !strings.HasPrefix(errOut, "keyceremony: error: ") {
				t.Errorf("error is not one error line plus an optional hint:\n%s", errOut)
			}
			if _, err := os.Stat(outDir); err == nil {
				t.Fatalf("%s was created", outDir)
			}
		})
	}
	if s := a.keyState(arn); s != "PendingImport" {
		t.Fatalf("key is %s after refusals, want PendingImport", s)
	}

	// An expired bundle is refused before KMS is called.
	if _, errOut, code := a.offline(pin, "wrap", "--params", params, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir, "--allow-host-wrap"); code != 0 {
		t.Fatalf("wrap: %s", errOut)
	}
	bdata, _ := os.ReadFile(filepath.Join(outDir, "bundle-k.json"))
	b, err := wrap.ParseBundle(bdata)
	if err != nil {
		t.Fatal(err)
	}
	b.ParamsValidTo = time.Now().Add(-time.Second).UTC()
	old, _ := b.Marshal()
	oldFile := filepath.Join(work, "old-bundle.json")
	os.WriteFile(oldFile, old, 0o644)
	_, errOut, code := a.run(nil, "upload", "--bundle", oldFile, "--valid-for", "30d", "--insecure-unverified-bundle")
	if code != 1 || !strings.Contains(errOut, "expired") || !strings.Contains(errOut, "keyceremony params fetch --key "+arn) {
		t.Fatalf("upload of an expired bundle: exit %d: %s", code, errOut)
	}
	if s := a.keyState(arn); s != "PendingImport" {
		t.Fatalf("key is %s after an expired upload, want PendingImport", s)
	}
	// Wrapping again into the same directory never overwrites evidence.
	_, errOut, code = a.offline(pin, "wrap", "--params", params, "--wrapping-key-sha256", ph, "--key", "k", "--token", "ceremony", "--out-dir", outDir, "--allow-host-wrap")
	if code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("second wrap into the same directory: exit %d: %s", code, errOut)
	}

	// With --config, the token, PIN file and host permission come from the
	// ceremony config, and the transcript names kms.allow_host_wrap.
	pinFile := filepath.Join(work, "pin")
	os.WriteFile(pinFile, []byte(hsmtest.PIN+"\n"), 0o600)
	cfg := filepath.Join(work, "ceremony.yaml")
	os.WriteFile(cfg, []byte("ceremony: {id: cfg-wrap, operator: bob, out_dir: unused}\ntoken: {label: ceremony, pin_file: "+pinFile+"}\n"+
		"kms: {wrapping_algorithm: RSAES_OAEP_SHA_256, allow_host_wrap: true}\nkeys:\n  - {label: k, kms_key_id: "+arn+", does_not_expire: true}\n"), 0o644)
	cfgOut := filepath.Join(work, "cfg-out")
	out, errOut, code := a.offline(nil, "wrap", "--config", cfg, "--params", params, "--wrapping-key-sha256", ph, "--out-dir", cfgOut)
	if code != 0 || !strings.Contains(out, "on the host") {
		t.Fatalf("wrap --config: exit %d: %s%s", code, out, errOut)
	}
	if ev := wrapEvent(t, filepath.Join(cfgOut, "transcript.jsonl")); ev["host_wrap_allowed_by"] != "kms.allow_host_wrap" {
		t.Fatalf("wrap event: %v", ev)
	}
}

// TestAWSCLIInterop follows AWS's documented CLI flow around keyceremony
// wrap: get-parameters-for-import (its JSON, and the .bin files of the
// guide) in, EncryptedKeyMaterial.bin and ImportToken.bin out to
// import-key-material. It uses the real aws command when installed.
func TestAWSCLIInterop(t *testing.T) {
	a := newAirgap(t)
	awsCLI, _ := exec.LookPath("aws")
	for i, alg := range []wrap.Algorithm{wrap.RSAAESKeyWrapSHA1, wrap.RSAESOAEPSHA1} {
		label := "cli" + string(rune('0'+i))
		a.tokenKey(label)
		arn := a.createKey()
		work := t.TempDir()
		paramsJSON := filepath.Join(work, "params.json")
		if awsCLI != "" {
			out, err := exec.Command(awsCLI, "kms", "get-parameters-for-import", "--endpoint-url", a.url, "--region", "eu-west-1",
				"--key-id", arn, "--wrapping-algorithm", string(alg), "--wrapping-key-spec", "RSA_2048", "--output", "json").Output()
			if err != nil {
				t.Fatalf("aws kms get-parameters-for-import: %v", err)
			}
			os.WriteFile(paramsJSON, out, 0o644)
		} else {
			t.Log("aws CLI not installed: writing its get-parameters-for-import output shape from the SDK's answer")
			p, err := a.kms.GetParameters(context.Background(), arn, alg, "RSA_2048")
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.MarshalIndent(map[string]any{"KeyId": p.KeyARN, "ImportToken": base64.StdEncoding.EncodeToString(p.ImportToken),
				"PublicKey": base64.StdEncoding.EncodeToString(p.PublicKey), "ParametersValidTo": p.ValidTo.Format("2006-01-02T15:04:05.000000-07:00")}, "", "    ")
			os.WriteFile(paramsJSON, out, 0o644)
		}
		outDir := filepath.Join(work, "out")
		var args []string
		if i == 0 {
			args = []string{"wrap", "--aws-params", paramsJSON, "--algorithm", string(alg)}
		} else {
			// The guide's files: PublicKey.bin and ImportToken.bin, decoded
			// from the same output.
			var raw struct {
				KeyId, ImportToken, PublicKey string
				ParametersValidTo             any
			}
			data, _ := os.ReadFile(paramsJSON)
			if err := json.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			pub, _ := base64.StdEncoding.DecodeString(raw.PublicKey)
			tok, _ := base64.StdEncoding.DecodeString(raw.ImportToken)
			os.WriteFile(filepath.Join(work, "PublicKey.bin"), pub, 0o644)
			os.WriteFile(filepath.Join(work, "ImportToken.bin"), tok, 0o644)
			// AWS CLI v1 prints epoch seconds, v2 ISO 8601.
			var vt time.Time
			switch v := raw.ParametersValidTo.(type) {
			case float64:
				vt = time.Unix(int64(v), 0)
			case string:
				var err error
				if vt, err = time.Parse(time.RFC3339Nano, v); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("ParametersValidTo is %T", v)
			}
			args = []string{"wrap", "--public-key", filepath.Join(work, "PublicKey.bin"), "--import-token", filepath.Join(work, "ImportToken.bin"),
				"--key-arn", raw.KeyId, "--algorithm", string(alg), "--params-valid-to", vt.UTC().Format(time.RFC3339)}
		}
		// The pin as AWS's flow gives it: the SHA-256 of PublicKey.bin.
		var raw struct{ PublicKey string }
		data, _ := os.ReadFile(paramsJSON)
		if err := json.Unmarshal(data, &raw); err != nil {
			t.Fatal(err)
		}
		der, _ := base64.StdEncoding.DecodeString(raw.PublicKey)
		sum := sha256.Sum256(der)
		args = append(args, "--wrapping-key-sha256", hex.EncodeToString(sum[:]), "--key", label, "--token", "ceremony", "--out-dir", outDir)
		if _, errOut, code := a.offline(pin, args...); code != 0 {
			t.Fatalf("%s: wrap: exit %d: %s", alg, code, errOut)
		}
		ekm, itok := filepath.Join(outDir, "EncryptedKeyMaterial.bin"), filepath.Join(outDir, "ImportToken.bin")
		if awsCLI != "" {
			out, err := exec.Command(awsCLI, "kms", "import-key-material", "--endpoint-url", a.url, "--region", "eu-west-1", "--key-id", arn,
				"--encrypted-key-material", "fileb://"+ekm, "--import-token", "fileb://"+itok, "--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE").CombinedOutput()
			if err != nil {
				t.Fatalf("%s: aws kms import-key-material: %v: %s", alg, err, out)
			}
		} else {
			e, _ := os.ReadFile(ekm)
			it, _ := os.ReadFile(itok)
			if _, err := a.kms.ImportMaterial(context.Background(), awskms.ImportRequest{Bundle: &wrap.Bundle{KeyARN: arn, ImportToken: it, EncryptedKeyMaterial: e}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, errOut, code := a.run(nil, "check-key", "--key", arn); code != 0 {
			t.Fatalf("%s: check-key: exit %d: %s", alg, code, errOut)
		}
	}
}

// printed returns the arguments of the command that out prints after
// "run keyceremony NAME" (or at the start of a line), with each
// placeholder replaced: the test then runs it exactly as printed.
func printed(t *testing.T, out, name string, subst map[string]string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, "keyceremony "+name+" ")
		if i < 0 {
			continue
		}
		args := strings.Fields(line[i+len("keyceremony "):])
		for j, a := range args {
			if v, ok := subst[a]; ok {
				args[j] = v
			}
		}
		return args
	}
	t.Fatalf("no keyceremony %s command in:\n%s", name, out)
	return nil
}

// fetch runs params fetch and returns the wrapping key's SHA-256 it printed.
func (a *airgap) fetch(arn, alg, spec, out string) string {
	a.t.Helper()
	stdout, errOut, code := a.run(nil, "params", "fetch", "--key", arn, "--algorithm", alg, "--key-spec", spec, "--out", out)
	if code != 0 {
		a.t.Fatalf("params fetch: exit %d: %s", code, errOut)
	}
	_, after, ok := strings.Cut(stdout, "wrapping public key sha256 ")
	if !ok {
		a.t.Fatalf("params fetch does not print the wrapping key's hash:\n%s", stdout)
	}
	return strings.TrimSuffix(strings.Fields(after)[0], ":")
}
