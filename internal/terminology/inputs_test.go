package terminology

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

func TestParseValidateCodeInputs(t *testing.T) {
	t.Parallel()
	q := url.Values{"url": {SystemICD10CM}, "code": {"E11.9"}, "date": {"2026-03-01T23:30:00+02:00"}, "abstract": {"true"}, "_format": {"json"}}
	in, err := ParseValidateCodeQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	want := ValidateCodeInput{URL: SystemICD10CM, Code: "E11.9", Date: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Abstract: true}
	if in != want {
		t.Fatalf("query: %+v, want %+v", in, want)
	}

	var p Parameters
	body := `{"resourceType":"Parameters","parameter":[
		{"name":"coding","valueCoding":{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9","display":"Type 2 diabetes mellitus without complications"}},
		{"name":"date","valueDate":"2026-03-01"}]}`
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	in, err = ParseValidateCodeParameters(&p)
	if err != nil {
		t.Fatal(err)
	}
	want = ValidateCodeInput{URL: SystemICD10CM, Code: "E11.9", Display: "Type 2 diabetes mellitus without complications", Date: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	if in != want {
		t.Fatalf("parameters: %+v, want %+v", in, want)
	}

	bad := []struct {
		name  string
		q     url.Values
		field string
	}{
		{"an unsupported input", url.Values{"codeableConcept": {"x"}}, "codeableConcept"},
		{"a repeated code", url.Values{"code": {"a", "b"}}, "code"},
		{"a partial date", url.Values{"date": {"2026-03"}}, "date"},
		{"abstract that is not a boolean", url.Values{"abstract": {"yes"}}, "abstract"},
		{"a coding in a query", url.Values{"coding": {"x"}}, "coding"},
	}
	for _, tc := range bad {
		_, err := ParseValidateCodeQuery(tc.q)
		e, ok := errs.As(err)
		if !ok || e.Kind != errs.Invalid || e.Field != tc.field {
			t.Errorf("%s: error %v, want invalid in field %s", tc.name, err, tc.field)
		}
	}
	both := &Parameters{ResourceType: "Parameters", Parameter: []Parameter{
		stringParam("url", SystemICD10CM), codeParam("code", "E11.9"),
		{Name: "coding", ValueCoding: nil, ValueString: ptr("x")},
	}}
	if _, err := ParseValidateCodeParameters(both); !errs.Is(err, errs.Invalid) {
		t.Errorf("a coding given as a string: %v", err)
	}
}

func TestParseLookupInputs(t *testing.T) {
	t.Parallel()
	in, err := ParseLookupQuery(url.Values{"system": {SystemLOINC}, "code": {"718-7"}, "version": {"2.80"}})
	if err != nil || in != (LookupInput{System: SystemLOINC, Code: "718-7", Version: "2.80"}) {
		t.Fatalf("%+v, %v", in, err)
	}
	if _, err := ParseLookupQuery(url.Values{"url": {SystemLOINC}}); !errs.Is(err, errs.Invalid) {
		t.Errorf("url is $validate-code's name; $lookup takes system: %v", err)
	}
	if _, err := ParseLookupParameters(&Parameters{ResourceType: "Bundle"}); !errs.Is(err, errs.Invalid) {
		t.Errorf("a Bundle body: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
