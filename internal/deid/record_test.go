package deid

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

func exampleRecord(t *testing.T) *Record {
	t.Helper()
	p := newTestPseudonymizer(t, testKey(3), "research")
	r := NewRecord(p.PatientKey("patient-123"))
	r.Sex = "male"
	r.SetAge(patient.BirthDate, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := r.SetYearOf("admission", "2024-03-05T10:00:00+02:00"); err != nil {
		t.Fatal(err)
	}
	r.SetYear("discharge", time.Date(2024, 3, 12, 0, 0, 0, 0, time.UTC))
	r.SetFact("type", "discharge")
	r.SetFact("priority", "urgent")
	r.Codes = []Code{{System: "http://hl7.org/fhir/sid/icd-10", Code: "I21.4"}}
	s := NewScrubber(patient)
	r.SetText(s, "notes", "Ahmed Hassan, 74, admitted 05/03/2024 with chest pain; call 0100 123 4567.")
	r.SetText(s, "chief_complaint", "chest pain since 5 March")
	return r
}

func TestRecordJSON(t *testing.T) {
	t.Parallel()
	r := exampleRecord(t)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"format":      "careflow.deid.v1",
		"patient_key": r.PatientKey,
		"sex":         "male",
		"age_group":   "70-74",
		"birth_year":  "1950",
		"years":       map[string]any{"admission": "2024", "discharge": "2024"},
		"facts":       map[string]any{"type": "discharge", "priority": "urgent"},
		"codes":       []any{map[string]any{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I21.4"}},
		"text": map[string]any{
			"notes":           "[NAME], 74, admitted [DATE] with chest pain; call [PHONE].",
			"chief_complaint": "chest pain since [DATE]",
		},
		"removed": map[string]any{"NAME": 1.0, "DATE": 2.0, "PHONE": 1.0},
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("record JSON\n got %s\nwant %s", gotJSON, wantJSON)
	}
	for _, v := range []string{"Ahmed", "Hassan", "0100", "4567", "05/03", "patient-123"} {
		if strings.Contains(string(b), v) {
			t.Errorf("%q in the exported JSON %s", v, b)
		}
	}
}

func TestRecordValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edit  func(*Record)
		field string
	}{
		{"another format", func(r *Record) { r.Format = "v0" }, "format"},
		{"a patient id instead of its key", func(r *Record) { r.PatientKey = "patient-123" }, "patient_key"},
		{"a sex that is not a gender code", func(r *Record) { r.Sex = "M" }, "sex"},
		{"an exact age", func(r *Record) { r.AgeGroup = "93" }, "age_group"},
		{"a birth year for 90+", func(r *Record) { r.AgeGroup, r.BirthYear = Over89, "1930" }, "birth_year"},
		{"a full date among the years", func(r *Record) { r.Years["admission"] = "2024-03-05" }, "years.admission"},
		{"free text in a fact", func(r *Record) { r.Facts["note"] = "called Ahmed" }, "facts.note"},
		{"a value riding in a member name", func(r *Record) { r.Text["Ahmed Hassan"] = "" }, "text"},
		{"a code that is text", func(r *Record) { r.Codes[0].Code = "chest pain" }, "codes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := exampleRecord(t)
			tt.edit(r)
			err := r.Validate()
			var e *errs.Error
			if !errors.As(err, &e) || e.Kind != errs.Invalid || e.Field != tt.field {
				t.Fatalf("Validate = %v, want errs.Invalid in %s", err, tt.field)
			}
			for _, v := range []string{"Ahmed", "1930", "2024-03-05", "chest", "patient-123"} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("the error repeats a value: %v", err)
				}
			}
		})
	}
}
