// Package hsmtest makes throw-away SoftHSM2 tokens for tests. It drives the
// real softhsm2-util and module: nothing in it mocks PKCS#11.
package hsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Module is the Debian SoftHSM2 module path.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN and SOPIN are the PINs of every token made here.
const (
	PIN   = "1234"
	SOPIN = "5678"
)

// InstallHint is the command that installs SoftHSM2 on Debian.
const InstallHint = "apt-get update && apt-get install -y softhsm2 opensc"

// Available reports whether the SoftHSM2 module and softhsm2-util are installed.
func Available() bool {
	if _, err := os.Stat(Module); err != nil {
		return false
	}
	_, err := exec.LookPath("softhsm2-util")
	return err == nil
}

// Require skips t when SoftHSM2 is missing, or fails it when $CI is set: a CI
// run that silently skipped the HSM tests would prove nothing.
func Require(t testing.TB) {
	t.Helper()
	if Available() {
		return
	}
	msg := "SoftHSM2 is not installed; install it with: " + InstallHint
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Setup makes a fresh SoftHSM2 token store under a temp dir, points
// SOFTHSM2_CONF at it for the rest of the test, and initializes one token per
// label with [PIN] and [SOPIN]. It returns the config file's path.
func Setup(t testing.TB, labels ...string) string {
	t.Helper()
	Require(t)
	conf, err := SetupDir(t.TempDir(), labels...)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	return conf
}

// SetupDir is Setup for callers without a testing.TB (TestMain, the demo): it
// writes dir/softhsm2.conf and a token store in dir/tokens, and initializes one
// token per label. It does not change the environment.
func SetupDir(dir string, labels ...string) (string, error) {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return "", err
	}
	for _, l := range labels {
		if err := InitToken(conf, l); err != nil {
			return "", err
		}
	}
	return conf, nil
}

// InitToken initializes a new token labelled label in the store of conf.
func InitToken(conf, label string) error {
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SOPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("softhsm2-util --init-token %s: %v: %s", label, err, out)
	}
	return nil
}

// NSS softokn, the second module the tests run on (README "PKCS#11
// modules"): a token is an NSS database made by certutil in a temp dir and
// given to the module through its initialisation parameters; nothing is
// registered with p11-kit or anywhere outside the temp dir.
const (
	// NSSLabel is the label of the NSS database's token.
	NSSLabel = "NSS Certificate DB"
	// NSSInstallHint installs NSS softokn and certutil on Debian.
	NSSInstallHint = "apt-get update && apt-get install -y libnss3 libnss3-tools p11-kit p11-kit-modules"
)

// NSSModule returns the path of libsoftokn3.so, or "" when it is missing.
func NSSModule() string {
	for _, p := range []string{"/usr/lib/x86_64-linux-gnu/libsoftokn3.so", "/usr/lib/aarch64-linux-gnu/libsoftokn3.so", "/usr/lib64/libsoftokn3.so"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// RequireNSS skips t when NSS softokn or certutil is missing, or fails it
// when $CI is set.
func RequireNSS(t testing.TB) string {
	t.Helper()
	_, err := exec.LookPath("certutil")
	if m := NSSModule(); m != "" && err == nil {
		return m
	}
	msg := "NSS softokn or certutil is not installed; install them with: " + NSSInstallHint
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// NSS is a throw-away NSS softokn token.
type NSS struct {
	// Module is libsoftokn3.so's path; InitArgs its initialisation
	// parameters (they name the database directory).
	Module, InitArgs string
	// Dir is the database directory.
	Dir string
}

// SetupNSS makes a fresh NSS database in a temp dir whose token
// ([NSSLabel]) has the user PIN [PIN].
func SetupNSS(t testing.TB) *NSS {
	t.Helper()
	module := RequireNSS(t)
	n, err := SetupNSSDir(t.TempDir(), module)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// SetupNSSDir is SetupNSS for callers without a testing.TB.
func SetupNSSDir(dir, module string) (*NSS, error) {
	db := filepath.Join(dir, "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		return nil, err
	}
	pw := filepath.Join(dir, "nss-pin")
	if err := os.WriteFile(pw, []byte(PIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(pw)
	if out, err := exec.Command("certutil", "-N", "-d", "sql:"+db, "-f", pw).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("certutil -N: %v: %s", err, out)
	}
	return &NSS{Module: module, Dir: db, InitArgs: fmt.Sprintf("configdir='sql:%s' certPrefix='' keyPrefix='' secmod='' flags=optimizeSpace", db)}, nil
}
