package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// Strings the record must not hold are refused on every FHIR write path —
// create, update, a batch entry, a transaction — with an OperationOutcome
// naming the element and never the value, and nothing is stored. A name in
// Arabic script (with its zero-width non-joiner) is stored unchanged.
func TestFHIRWritesRefuseControlCharactersSurrogatesAndDisguisedNames(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRFixture(t, db)
		refused := []struct {
			name, method, path, body string
			status                   int
			expression               string
		}{
			{"a NUL in a family name", "POST", "/fhir/R4/Patient",
				`{"resourceType":"Patient","name":[{"family":"Hassan\u0000"}]}`, 422, "Patient.name[0].family"},
			{"a right-to-left override in a given name", "POST", "/fhir/R4/Patient",
				`{"resourceType":"Patient","name":[{"given":["Fatma\u202eamdaH"]}]}`, 422, "Patient.name[0].given[0]"},
			{"a zero-width space in an identifier", "PUT", "/fhir/R4/Patient/p-zw",
				`{"resourceType":"Patient","id":"p-zw","identifier":[{"system":"urn:mrn","value":"MRN\u200b778899"}]}`, 422, "Patient.identifier[0].value"},
			{"an unpaired surrogate", "POST", "/fhir/R4/Patient",
				`{"resourceType":"Patient","name":[{"family":"Hassan\ud800"}]}`, 400, "name[0].family"},
			{"an override in a transaction entry", "POST", "/fhir/R4",
				`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:6f1c2a4e-8b7d-4c3a-9e21-0d5b7a9c1e42","resource":{"resourceType":"Patient","name":[{"family":"Hassan\u2066"}]},"request":{"method":"POST","url":"Patient"}}]}`,
				422, "Bundle.entry[0].resource.name[0].family"},
		}
		for _, c := range refused {
			r := f.do(t, c.method, c.path, []byte(c.body))
			if r.status != c.status || !isOutcome(r.body) {
				t.Fatalf("%s: %d %s, want %d and an OperationOutcome", c.name, r.status, r.body, c.status)
			}
			var oo fhir.OperationOutcome
			_ = json.Unmarshal(r.body, &oo)
			found := false
			for _, is := range oo.Issue {
				for _, e := range is.Expression {
					found = found || e == c.expression
				}
			}
			if !found {
				t.Fatalf("%s: no issue names %s: %s", c.name, c.expression, r.body)
			}
			for _, leak := range []string{"Hassan", "Fatma", "778899", `\ufffd`, "\ufffd"} {
				if strings.Contains(string(r.body), leak) {
					t.Fatalf("%s: the outcome repeats %q: %s", c.name, leak, r.body)
				}
			}
		}
		if n := storedPatients(t, db); n != 0 {
			t.Fatalf("%d Patients stored from refused writes", n)
		}

		// In a batch, the bad entry fails alone.
		r := f.do(t, "POST", "/fhir/R4", []byte(`{"resourceType":"Bundle","type":"batch","entry":[`+
			`{"resource":{"resourceType":"Patient","name":[{"family":"Hassan\ufeff"}]},"request":{"method":"POST","url":"Patient"}},`+
			`{"resource":{"resourceType":"Patient","name":[{"family":"حسین\u200cزاده","given":["فاطمة"]}]},"request":{"method":"POST","url":"Patient"}}]}`))
		if r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
		b := bundleOf(t, r.body)
		if len(b.Entry) != 2 || b.Entry[0].Response == nil || !strings.HasPrefix(b.Entry[0].Response.Status, "422") ||
			b.Entry[1].Response == nil || !strings.HasPrefix(b.Entry[1].Response.Status, "201") {
			t.Fatalf("batch entries: %s", r.body)
		}
		if strings.Contains(string(b.Entry[0].Response.Outcome), "Hassan") {
			t.Fatalf("the entry's outcome repeats the value: %s", b.Entry[0].Response.Outcome)
		}
		// The Arabic-script name, zero-width non-joiner included, is stored
		// as sent.
		env, _ := fhir.ReadEnvelope(b.Entry[1].Resource)
		got := f.do(t, "GET", "/fhir/R4/Patient/"+env.ID, nil)
		if got.status != 200 || !strings.Contains(string(got.body), "حسین\u200cزاده") {
			t.Fatalf("the Persian name did not come back as sent: %d %s", got.status, got.body)
		}
		if n := storedPatients(t, db); n != 1 {
			t.Fatalf("%d Patients stored, want the one good batch entry", n)
		}
	})
}
