package ceremony

import (
	"strconv"
	"strings"
	"testing"
)

func TestScriptNumbersMatchSteps(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
ceremony: {id: c1, operator: op, out_dir: out}
token: {label: tok}
kms: {region: eu-west-1, wrapping_algorithm: RSAES_OAEP_SHA_1, wrapping_key_spec: RSA_2048}
keys: [{label: k1, create: true, does_not_expire: true}]
`))
	if err != nil {
		t.Fatal(err)
	}
	script := Script(cfg)
	steps := Steps()
	for i, st := range steps {
		if st.No != i+1 {
			t.Errorf("step %s has number %d, want %d", st.ID, st.No, i+1)
		}
		if !strings.Contains(script, "## Step "+strconv.Itoa(st.No)+": "+st.Title+"\n") {
			t.Errorf("script lacks step %d %s", st.No, st.Title)
		}
		if len(witnessChecks[st.ID]) == 0 {
			t.Errorf("step %s has nothing for the witnesses to check", st.ID)
		}
	}
	if ss := ScriptSteps(); len(ss) != len(steps) || ss[len(ss)-1].ID != "seal" {
		t.Errorf("ScriptSteps %v", ss)
	}
	if Script(cfg) != script {
		t.Error("the script is not deterministic: its hash in the header would not match")
	}
	if !strings.Contains(script, "k1 -> a new KMS key") || !strings.Contains(script, "KMS region: eu-west-1") {
		t.Errorf("script does not show the plan:\n%s", script)
	}
}
