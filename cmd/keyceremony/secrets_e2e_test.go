package main_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/keyceremony/keyceremony/escrow"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
)

// Every run of a keyceremony binary in these tests is made by binary and
// checked for secrets: TestEveryRunIsChecked fails if a test execs the
// binary another way. A check fails the test when a secret of the test
// shows in the run's stdout or stderr, or in a file of the directories it
// writes (out_dir of its --config, --out-dir, --out, --transcript) other
// than the sealed share files. The secrets of a test are the tokens' PINs
// (hsmtest.PIN and SOPIN), any age or PEM private key, the values of the
// run's environment variables whose names say PIN, PASS or SECRET (and of
// the config's pin_env and passphrase_env), the contents of the files
// given with --passphrase-file, --identity and the config's pin_file and
// passphrase_file, and what the test adds with keepSecret (key material,
// shares, passphrases typed at a terminal).
//
// runBinary checks at once; every command binary made is checked again when
// the test ends, with every secret known by then and the stdout and stderr
// it collected in a *bytes.Buffer, so a run the test starts, watches or
// kills itself is checked too.

// secretKeyRE matches private keys in any of the forms keyceremony reads.
var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

var secretKeyRE = regexp.MustCompile(`AGE-SECRET-KEY-[0-9A-Z-]{10,}|AGE-PLUGIN-[0-9A-Z-]{10,}|PRIVATE KEY-----`)

// secretNameRE matches the names of environment variables that hold a
// secret; AWS's test credentials are not keyceremony's secrets.
var secretNameRE = regexp.MustCompile(`(?i)pin|pass|secret`)

// shareFileRE matches sealed share files, also when moved aside.
var shareFileRE = regexp.MustCompile(`(^|-)share-[0-9]+-[^/]*\.age$`)

type secretSet struct {
	mu      sync.Mutex
	secrets map[string]map[string][]byte // test name → what → value
	runs    map[string][]*exec.Cmd       // test name → commands made by binary
}

var known = &secretSet{secrets: map[string]map[string][]byte{}, runs: map[string][]*exec.Cmd{}}

// keepSecret adds a secret of t (and of its subtests) that no run of the
// binary may show: a text secret as it is, binary ones (key material,
// shares) in every encoding keyceremony writes bytes in.
func keepSecret(t testing.TB, what string, value []byte, binary bool) {
	t.Helper()
	if len(value) == 0 {
		t.Fatalf("keepSecret %s: empty", what)
	}
	value = bytes.Clone(value) // the caller may clear its copy
	known.mu.Lock()
	defer known.mu.Unlock()
	m := known.secrets[t.Name()]
	if m == nil {
		m = map[string][]byte{}
		known.secrets[t.Name()] = m
	}
	if !binary {
		m[what] = value
		return
	}
	for form, b := range encodings(value) {
		m[what+" ("+form+")"] = b
	}
}

// secretsOf returns the secrets kept for t and the tests it is a subtest of.
func secretsOf(t testing.TB) map[string][]byte {
	known.mu.Lock()
	defer known.mu.Unlock()
	out := map[string][]byte{"PIN": []byte(hsmtest.PIN), "SO PIN": []byte(hsmtest.SOPIN)}
	for name, m := range known.secrets {
		if t.Name() == name || strings.HasPrefix(t.Name(), name+"/") {
			for what, v := range m {
				out[what] = v
			}
		}
	}
	return out
}

// binary returns the command that runs name (keyceremony, or the crash
// tests' keyceremony-crashtest) from binDir with args. Its environment is
// empty until the caller sets it. The test checks it for secrets when it
// ends.
func binary(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	known.mu.Lock()
	first := len(known.runs[t.Name()]) == 0
	known.runs[t.Name()] = append(known.runs[t.Name()], cmd)
	known.mu.Unlock()
	if first {
		t.Cleanup(func() {
			known.mu.Lock()
			cmds := known.runs[t.Name()]
			delete(known.runs, t.Name())
			known.mu.Unlock()
			for what, v := range shareValues(cmds) {
				keepSecret(t, what, v, true)
			}
			for _, c := range cmds {
				if c.ProcessState != nil {
					checkRun(t, c, buffered(c.Stdout), buffered(c.Stderr))
				}
			}
		})
	}
	return cmd
}

// shareValues opens the share files the runs wrote with the identity
// files any of them was given (age, and SSH keys without a passphrase;
// passphrase shares are left out, as each costs an scrypt) and returns
// each share's value: no run may show a share in clear.
func shareValues(cmds []*exec.Cmd) map[string][]byte {
	var ids []age.Identity
	var dirs []string
	for _, c := range cmds {
		for i, a := range c.Args[:len(c.Args)-1] {
			if a != "--identity" {
				continue
			}
			b, err := os.ReadFile(resolve(c, c.Args[i+1]))
			if err != nil {
				continue
			}
			if parsed, err := escrow.ParseIdentities(b, nil); err == nil {
				for _, id := range parsed {
					ids = append(ids, id)
				}
			}
		}
		dirs = append(dirs, writtenPaths(c)...)
	}
	out := map[string][]byte{}
	if len(ids) == 0 {
		return out
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() || !shareFileRE.MatchString(e.Name()) || seen[path] {
				return nil
			}
			seen[path] = true
			data, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			if sh, err := escrow.OpenShare(data, path, ids...); err == nil {
				if v, err := hex.DecodeString(sh.Value); err == nil {
					out["share value of "+e.Name()] = v
				}
			}
			return nil
		})
	}
	return out
}

func buffered(w any) string {
	if b, ok := w.(*bytes.Buffer); ok {
		return b.String()
	}
	return ""
}

// runBinary runs cmd (made by binary), checks it for secrets at once, and
// returns its output and exit code (-1 when a signal ended it).
func runBinary(t testing.TB, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", strings.Join(cmd.Args, " "), err)
	}
	checkRun(t, cmd, o.String(), e.String())
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// checkRun fails t if a secret of the run cmd shows in outputs or in a file
// it may have written.
func checkRun(t testing.TB, cmd *exec.Cmd, outputs ...string) {
	t.Helper()
	secrets := secretsOf(t)
	for what, v := range runSecrets(cmd) {
		secrets[what] = v
	}
	name := filepath.Base(cmd.Args[0]) + " " + strings.Join(cmd.Args[1:min(len(cmd.Args), 3)], " ")
	for i, o := range outputs {
		if what := leak([]byte(o), secrets); what != "" {
			t.Errorf("%s: its %s shows %s", name, []string{"stdout", "stderr"}[min(i, 1)], what)
		}
	}
	for _, p := range writtenPaths(cmd) {
		_ = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !d.Type().IsRegular() || shareFileRE.MatchString(d.Name()) {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			if what := leak(b, secrets); what != "" {
				t.Errorf("%s: %s shows %s", name, path, what)
			}
			return nil
		})
	}
}

// leak names the first secret that shows in b, or returns "". A secret
// shorter than 12 bytes (a PIN) counts only standing alone, not inside a
// longer run of letters and digits (a hash, a port number) or a UUID (a
// KMS key id, whose second group is the test PIN 1234 once in 65,536
// keys: a crash sweep makes hundreds).
func leak(b []byte, secrets map[string][]byte) string {
	if m := secretKeyRE.Find(b); m != nil {
		return "a private key (" + string(m[:min(len(m), 20)]) + "…)"
	}
	noUUID := uuidRE.ReplaceAll(b, []byte("UUID"))
	for what, s := range secrets {
		rest := b
		if len(s) < 12 {
			rest = noUUID
		}
		for {
			i := bytes.Index(rest, s)
			if i < 0 {
				break
			}
			if len(s) >= 12 || (!alnumAt(rest, i-1) && !alnumAt(rest, i+len(s))) {
				return "the " + what
			}
			rest = rest[i+1:]
		}
	}
	return ""
}

func alnumAt(b []byte, i int) bool {
	if i < 0 || i >= len(b) {
		return false
	}
	c := b[i]
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// runSecrets are the secrets a run is given: environment variables, and
// the passphrase, PIN and identity files named by its flags and config.
func runSecrets(cmd *exec.Cmd) map[string][]byte {
	out := map[string][]byte{}
	env := map[string]string{}
	for _, kv := range cmd.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
		if v != "" && secretNameRE.MatchString(k) && !strings.HasPrefix(k, "AWS_") && k != "KEYCEREMONY_CONTROL" {
			out["$"+k] = []byte(v)
		}
	}
	file := func(what, p string) {
		b, err := os.ReadFile(resolve(cmd, p))
		if err != nil {
			return
		}
		for i, l := range strings.Split(string(b), "\n") {
			l = strings.TrimRight(l, "\r")
			if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "-----") {
				out[fmt.Sprintf("%s %s (line %d)", what, filepath.Base(p), i+1)] = []byte(l)
			}
		}
	}
	for i, a := range cmd.Args[:len(cmd.Args)-1] {
		switch a {
		case "--passphrase-file", "--pin-file":
			file(a, cmd.Args[i+1])
		case "--identity":
			// age identities are caught by secretKeyRE; an OpenSSH one
			// also holds its public key, which may show: only its private
			// part counts.
			if priv := sshPrivate(resolve(cmd, cmd.Args[i+1])); priv != nil {
				for form, b := range encodings(priv) {
					out["--identity "+filepath.Base(cmd.Args[i+1])+" ("+form+")"] = b
				}
			}
		case "--config":
			cfg := resolve(cmd, cmd.Args[i+1])
			b, _ := os.ReadFile(cfg)
			for _, m := range configFileRE.FindAllStringSubmatch(string(b), -1) {
				file(m[1], filepath.Join(filepath.Dir(cfg), unquote(m[2])))
			}
			for _, m := range configEnvRE.FindAllStringSubmatch(string(b), -1) {
				if v := env[unquote(m[2])]; v != "" {
					out["$"+unquote(m[2])] = []byte(v)
				}
			}
		}
	}
	return out
}

// sshPrivate returns the private part of the unencrypted OpenSSH key in
// file p (an Ed25519 seed, an RSA or ECDSA private exponent), or nil.
func sshPrivate(p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	k, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil
	}
	switch k := k.(type) {
	case *ed25519.PrivateKey:
		return k.Seed()
	case ed25519.PrivateKey:
		return k.Seed()
	case *rsa.PrivateKey:
		return k.D.Bytes()
	case *ecdsa.PrivateKey:
		b, _ := k.Bytes()
		return b
	}
	return nil
}

var (
	configFileRE = regexp.MustCompile(`(pin_file|passphrase_file):\s*([^\s,}]+)`)
	configEnvRE  = regexp.MustCompile(`(pin_env|passphrase_env):\s*([^\s,}]+)`)
	configOutRE  = regexp.MustCompile(`out_dir:\s*([^\s,}]+)`)
)

func unquote(s string) string { return strings.Trim(s, `"'`) }

// writtenPaths are the files and directories a run may write: its
// --out-dir, --out and --transcript, and its config's out_dir.
func writtenPaths(cmd *exec.Cmd) []string {
	var out []string
	for i, a := range cmd.Args[:len(cmd.Args)-1] {
		switch a {
		case "--out-dir", "--out", "--transcript":
			out = append(out, resolve(cmd, cmd.Args[i+1]))
		case "--config":
			cfg := resolve(cmd, cmd.Args[i+1])
			b, _ := os.ReadFile(cfg)
			if m := configOutRE.FindStringSubmatch(string(b)); m != nil {
				out = append(out, filepath.Join(filepath.Dir(cfg), unquote(m[1])))
			}
		}
	}
	return out
}

// resolve makes p, as cmd sees it, a path for the test.
func resolve(cmd *exec.Cmd, p string) string {
	if filepath.IsAbs(p) || cmd.Dir == "" {
		return p
	}
	return filepath.Join(cmd.Dir, p)
}

// TestLeakCheck: the check finds each kind of secret where a run shows it,
// and a PIN only where it stands alone.
func TestLeakCheck(t *testing.T) {
	secrets := map[string][]byte{"PIN": []byte("1234"), "passphrase": []byte("a long passphrase")}
	for in, want := range map[string]string{
		"wrong PIN 1234 for token": "the PIN",
		"pin=1234\n":               "the PIN",
		"hash 9f1234ab, port 127.0.0.1:41234, at 12:34:56.1234Z": "",
		"passphrase: a long passphrase!":                         "the passphrase",
		"AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ":     "a private key (AGE-SECRET-KEY-1QQQQ…)",
		"-----BEGIN OPENSSH PRIVATE KEY-----":                    "a private key (PRIVATE KEY-----…)",
		"paste your recipient, never an AGE-SECRET-KEY-1…":       "",
	} {
		if got := leak([]byte(in), secrets); got != want {
			t.Errorf("leak(%q) = %q, want %q", in, got, want)
		}
	}
	dir := t.TempDir()
	pass := filepath.Join(dir, "p.pass")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(pass, []byte("from a file\n"), 0o600)
	os.WriteFile(cfg, []byte("escrow: {custodians: [{name: c, passphrase: true, passphrase_env: MY_CODE}, {name: d, passphrase_file: p.pass}]}\nceremony: {out_dir: \"out\"}\n"), 0o600)
	cmd := exec.Command("keyceremony", "run", "--config", cfg)
	cmd.Env = []string{"KEYCEREMONY_PIN=4321", "MY_CODE=typed code", "AWS_SECRET_ACCESS_KEY=test"}
	got := runSecrets(cmd)
	for _, want := range []string{"4321", "typed code", "from a file"} {
		found := false
		for _, v := range got {
			found = found || string(v) == want
		}
		if !found {
			t.Errorf("runSecrets misses %q: %q", want, got)
		}
	}
	if w := writtenPaths(cmd); len(w) != 1 || w[0] != filepath.Join(dir, "out") {
		t.Errorf("writtenPaths = %q", w)
	}
	// The frozen v2 escrow: alice's identity opens her share, and its
	// value becomes a secret of the test.
	run := exec.Command("keyceremony", "run", "--out-dir", v2)
	check := exec.Command("keyceremony", "escrow", "verify-share", "--identity", v2+"identities/alice.key")
	values := shareValues([]*exec.Cmd{run, check})
	if len(values) != 1 || len(values["share value of share-1-alice.age"]) != 32 {
		t.Errorf("shareValues found %d values, want alice's", len(values))
	}
}

// TestEveryRunIsChecked fails when a test execs the keyceremony binary
// without binary, so without the secret check.
func TestEveryRunIsChecked(t *testing.T) {
	files, _ := filepath.Glob("*_test.go")
	re := regexp.MustCompile(`exec\.Command(Context)?\([^)]*binDir, "keyceremony`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f != "secrets_e2e_test.go" && re.Match(b) {
			t.Errorf("%s runs the binary with exec.Command: use binary (secrets_e2e_test.go)", f)
		}
	}
}

// encodings are the forms keyceremony writes bytes in.
func encodings(b []byte) map[string][]byte {
	return map[string][]byte{
		"raw":        b,
		"hex":        []byte(hex.EncodeToString(b)),
		"HEX":        []byte(strings.ToUpper(hex.EncodeToString(b))),
		"base64":     []byte(base64.RawStdEncoding.EncodeToString(b)),
		"base64url":  []byte(base64.RawURLEncoding.EncodeToString(b)),
		"json bytes": []byte(base64.StdEncoding.EncodeToString(b)),
	}
}
