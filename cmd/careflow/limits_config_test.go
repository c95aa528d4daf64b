package main

import (
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/store/storetest"
)

// TestImportAppliesTheLimitFlags: the limit flags reach the record the
// import writes through. A Patient over --max-array-items fails with the
// limit and the element named (never its values); the one beside it is
// imported.
func TestImportAppliesTheLimitFlags(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			env := newImportEnv(t, d)
			over := `{"resourceType":"Patient","name":[{"family":"Wide","given":["Zaynab"` + strings.Repeat(`,"Zaynab"`, 11) + `]}]}`
			under := `{"resourceType":"Patient","name":[{"family":"Narrow","given":["Huda","Mona"]}]}`
			file := env.write(t, "patients.ndjson", []byte(over+"\n"+under+"\n"))

			code, out, errOut := env.run(t, "import", "--max-array-items", "10", file)
			if code == 0 || summaryNumber(t, out, "created") != 1 || summaryNumber(t, out, "failed") != 1 {
				t.Fatalf("import: exit %d, want one created and one failed:\n%s%s", code, out, errOut)
			}
			all := out + errOut
			if !strings.Contains(all, "array-items") || !strings.Contains(all, "Patient.name[0].given") {
				t.Errorf("the failure does not name the limit and the element:\n%s", all)
			}
			if strings.Contains(all, "Zaynab") || strings.Contains(all, "Wide") {
				t.Errorf("the report repeats a value:\n%s", all)
			}
		})
	}
}

func TestLimitFlagsRefuseValuesUnderTheirFloor(t *testing.T) {
	for _, args := range [][]string{{"--max-depth", "3"}, {"--max-index-rows", "lots"}, {"--max-array-items", "-1"}} {
		_, _, err := parseConfig("serve", args, func(string) string { return "" })
		if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: got %v, want a usage error naming the flag", args, err)
		}
	}
	cfg, _, err := parseConfig("import", []string{"--max-resource-elements", "5000"}, func(k string) string {
		if k == "CAREFLOW_MAX_STRING_BYTES" {
			return "4096"
		}
		return ""
	})
	if err != nil || cfg.Limits.Elements != 5000 || cfg.Limits.StringBytes != 4096 || cfg.Limits.IndexRows != 0 {
		t.Fatalf("got %+v, %v", cfg.Limits, err)
	}
}
