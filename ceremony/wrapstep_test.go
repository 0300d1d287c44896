package ceremony

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/hsm"
	"github.com/keyceremony/keyceremony/hsm/hsmtest"
	"github.com/keyceremony/keyceremony/internal/kmslocal"
	"github.com/keyceremony/keyceremony/wrap"
)

// quietUI confirms everything, as the config would, and gives the test
// token's PIN when asked for a secret: the PIN variable is taken out of the
// environment by the first run, as it is in production.
type quietUI struct{ infos []string }

func (u *quietUI) StepStarted(i, n int, s Step)              {}
func (u *quietUI) StepDone(i, n int, s Step, summary string) {}
func (u *quietUI) Secret(context.Context, string) ([]byte, error) {
	return []byte(hsmtest.PIN), nil
}
func (u *quietUI) Confirm(context.Context, string, string) (Confirmation, error) {
	return Confirmation{}, nil
}
func (u *quietUI) Info(msg string)                             { u.infos = append(u.infos, msg) }
func (u *quietUI) Progress(done, total int)                    {}
func (u *quietUI) Ask(context.Context, string) (string, error) { return "", ErrNoPIN }

func loopbackKMS(t *testing.T) {
	t.Helper()
	srv := kmslocal.New(kmslocal.Options{PoolSize: 1})
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	home := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_KMS": hs.URL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDCEREMONYTEST", "AWS_SECRET_ACCESS_KEY": "not-a-secret",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "credentials"),
	} {
		t.Setenv(k, v)
	}
}

func ceremonyConfig(t *testing.T, outDir, label string, alg wrap.Algorithm, spec string, allowHost bool) *Config {
	t.Helper()
	yml := fmt.Sprintf(`
ceremony: {id: %s, operator: test, out_dir: %s}
token: {label: ceremony}
kms: {wrapping_algorithm: %s, wrapping_key_spec: %s, allow_host_wrap: %v}
keys:
  - {label: %s, create: true, does_not_expire: true}
escrow: {threshold: 1, allow_single_custodian: true, custodians: [{name: alice, recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p}]}
`, label, outDir, alg, spec, allowHost, label)
	cfg, err := ParseConfig([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCeremonyAllTwelve runs a whole ceremony against SoftHSM and the
// loopback KMS for every algorithm and wrapping key size, with host wrapping
// allowed: KMS must accept every import, SHA-1 must be wrapped inside the
// HSM and SHA-256 on the host, and the transcript must say which.
func TestCeremonyAllTwelve(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	for _, spec := range wrap.KeySpecs {
		for _, alg := range wrap.Algorithms {
			t.Run(spec+"/"+string(alg), func(t *testing.T) {
				label := strings.ToLower(strings.ReplaceAll(spec+"-"+string(alg), "_", "-"))
				out := filepath.Join(t.TempDir(), "out")
				ui := &quietUI{}
				res, err := Run(context.Background(), ceremonyConfig(t, out, label, alg, spec, true), ui)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Keys) != 1 || res.Keys[0].KMSKeyARN == "" {
					t.Fatalf("result %+v", res)
				}
				ev := transcriptEvent(t, res.Transcript, "wrap")
				wantIn := alg.Hash().String() == "SHA-1"
				if ev["in_hsm"] != wantIn {
					t.Fatalf("wrap event in_hsm = %v, want %v: %v", ev["in_hsm"], wantIn, ev)
				}
				if wantIn {
					if _, ok := ev["host_wrap"]; ok {
						t.Errorf("in-HSM wrap records host_wrap: %v", ev)
					}
				} else {
					if r, _ := ev["host_wrap"].(string); !strings.Contains(r, "CKR_ARGUMENTS_BAD") || ev["host_wrap_allowed_by"] != "kms.allow_host_wrap" {
						t.Errorf("host wrap event lacks reason or permission: %v", ev)
					}
					if len(ui.infos) == 0 || !strings.Contains(strings.Join(ui.infos, "\n"), "wrapped on the host") {
						t.Errorf("the UI was not told about the host wrap: %q", ui.infos)
					}
				}
				if ci := transcriptEvent(t, res.Transcript, "check-import"); ci["encrypt_decrypt"] != "ok" {
					t.Errorf("check-import: %v", ci)
				}
			})
		}
	}
}

// TestCeremonyRefusesHostWrapUpFront: an algorithm the token cannot do
// inside the HSM, without permission for the host, stops the ceremony at
// open-token, before any KMS key, token key or file exists.
func TestCeremonyRefusesHostWrapUpFront(t *testing.T) {
	hsmtest.Setup(t, "ceremony")
	loopbackKMS(t)
	out := filepath.Join(t.TempDir(), "out")
	_, err := Run(context.Background(), ceremonyConfig(t, out, "refused", wrap.RSAAESKeyWrapSHA256, "RSA_2048", false), &quietUI{})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "open-token" || !errors.Is(err, hsm.ErrMechanism) {
		t.Fatalf("err = %v, want a StepError at open-token wrapping ErrMechanism", err)
	}
	for _, want := range []string{"inside the HSM it can do: RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_1", "kms.wrapping_algorithm", "kms.allow_host_wrap"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("the refused ceremony created its output directory")
	}
}

func transcriptEvent(t *testing.T, path, step string) map[string]any {
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
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Step == step {
			return ev.Data
		}
	}
	t.Fatalf("no %s event in %s", step, path)
	return nil
}
