package terminology

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares v's indented JSON with testdata/golden/name.json.
func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from %s:\n%s", name, path, got)
	}
}

func testOperationParameters(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		loadFixture(t, s, "2022")

		p, err := s.ValidateCodeOperation(ctx, ValidateCodeInput{URL: SystemICD10CM, Code: "E11.9", Date: day("2022-03-15")})
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "validate-code-valid", p)
		p, err = s.ValidateCodeOperation(ctx, ValidateCodeInput{URL: SystemICD10CM, Code: "E11", Date: day("2022-03-15")})
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "validate-code-header", p)
		p, err = s.LookupOperation(ctx, LookupInput{System: SystemICD10CM, Code: "E11.65"})
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "lookup-icd10cm", p)

		if _, err := s.ValidateCodeOperation(ctx, ValidateCodeInput{Code: "E11.9"}); !errs.Is(err, errs.Invalid) {
			t.Errorf("no url: %v", err)
		}
		if _, err := s.LookupOperation(ctx, LookupInput{System: SystemICD10CM}); !errs.Is(err, errs.Invalid) {
			t.Errorf("no code: %v", err)
		}
	}
}

func TestParametersValueTypes(t *testing.T) {
	t.Parallel()
	// A CPT code loaded without a description still gets a display (the
	// code), and its category is a valueCode.
	p := LookupParameters(LookupResult{Name: "CPT", Version: "2026", Code: "0042T",
		Properties: []Property{{Code: PropCPTCategory, Value: CodeValue(CPTCategoryIII)}}})
	golden(t, "lookup-cpt-without-description", p)
	// result=false is written, not omitted.
	b, _ := json.Marshal(ValidateCodeParameters(Validation{Message: "x"}))
	if !bytes.Contains(b, []byte(`"valueBoolean":false`)) {
		t.Fatalf("result false is missing: %s", b)
	}
}
