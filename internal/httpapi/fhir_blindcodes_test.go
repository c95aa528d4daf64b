package httpapi

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A diagnosis written through /fhir/R4 is found by its code, with or
// without system, though the index holds only its blind form; a modifier
// that needs the code's text is a 400 OperationOutcome that explains why
// and does not echo the code.
func TestFHIRSearchByBlindClinicalCode(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRFixture(t, db)
		r := f.do(t, "POST", "/fhir/R4/Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Saleh"}]}`))
		if r.status != 201 {
			t.Fatalf("create patient: %d %s", r.status, r.body)
		}
		p, _ := fhir.ReadEnvelope(r.body)
		r = f.do(t, "POST", "/fhir/R4/Condition", []byte(`{"resourceType":"Condition","subject":{"reference":"Patient/`+p.ID+`"},"onsetDateTime":"2026-02-10",
"code":{"coding":[{"system":"http://snomed.info/sct","code":"86406008"}]}}`))
		if r.status != 201 {
			t.Fatalf("create condition: %d %s", r.status, r.body)
		}
		c, _ := fhir.ReadEnvelope(r.body)

		var plain int
		if err := db.Reader().QueryRow(context.Background(), `SELECT count(*) FROM resource_tokens WHERE code = '86406008'`).Scan(&plain); err != nil || plain != 0 {
			t.Fatalf("plain code rows: %d, %v", plain, err)
		}
		for _, q := range []string{"code=" + url.QueryEscape("http://snomed.info/sct|86406008"), "code=86406008", "code=" + url.QueryEscape("http://snomed.info/sct|")} {
			r := f.do(t, "GET", "/fhir/R4/Condition?"+q, nil)
			if r.status != 200 {
				t.Fatalf("%s: %d %s", q, r.status, r.body)
			}
			b := bundleOf(t, r.body)
			if len(b.Entry) != 1 || !strings.Contains(string(b.Entry[0].Resource), c.ID) {
				t.Fatalf("%s: %d entries, want the Condition", q, len(b.Entry))
			}
		}
		r = f.do(t, "GET", "/fhir/R4/Condition?code:below=86406008", nil)
		if r.status != 400 || !isOutcome(r.body) || !strings.Contains(string(r.body), "blind") || strings.Contains(string(r.body), "86406008") {
			t.Fatalf("code:below: %d %s, want a 400 OperationOutcome saying codes are blind, without the code", r.status, r.body)
		}
	})
}
