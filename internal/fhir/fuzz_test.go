package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzValidate feeds arbitrary bytes to the validator and checks the
// properties the server relies on: it never panics; it rejects exactly the
// bodies that are not JSON (agreeing with encoding/json); parsing and
// re-encoding keeps every value; and anything it accepts can be stored
// (id and meta set) and still validates.
func FuzzValidate(f *testing.F) {
	for _, name := range []string{"testdata/patient.json", "testdata/claim.json"} {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`))
	f.Add([]byte(`{"resourceType":"Patient","name":[{"family":"a\ud800b","given":["\ud83d\ude00"]}]}`))
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		issues := Validate(data)
		v, perr := parseJSON(data)
		stdValid := json.Valid(stripBOM(data))
		if perr == nil && !stdValid {
			t.Fatalf("parsed JSON that encoding/json rejects: %q", data)
		}
		if perr != nil {
			if !issues.Malformed() {
				t.Fatalf("unparseable body not reported as malformed: %v", issues)
			}
			// encoding/json lets invalid UTF-8 through (and replaces it);
			// FHIR JSON is UTF-8, so we reject it.
			deep := bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) > maxDepth
			// encoding/json also turns an unpaired surrogate escape into
			// U+FFFD; I-JSON forbids it, and so do we.
			var se *SyntaxError
			lone := errors.As(perr, &se) && strings.Contains(se.Msg, "surrogate")
			if stdValid && utf8.Valid(data) && !deep && !lone {
				t.Fatalf("rejected JSON that encoding/json accepts: %v", perr)
			}
			return
		}
		again, err := parseJSON(appendJSON(nil, &v))
		if err != nil || !equalValues(&v, &again) {
			t.Fatalf("re-encoding changed the value: %v", err)
		}
		if issues.HasErrors() {
			return
		}
		stored, err := SetIDAndMeta(data, "fuzz-1", "1", when)
		if err != nil {
			t.Fatalf("valid resource could not be stored: %v", err)
		}
		if is := Validate(stored); is.HasErrors() {
			t.Fatalf("stored form of a valid resource is invalid: %v\n%s", is, stored)
		}
	})
}
