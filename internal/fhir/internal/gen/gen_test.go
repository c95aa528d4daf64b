//go:build !race

// The regeneration check decodes 60 MB of definitions; it has no
// concurrency to race-check and takes half a minute under -race, so it runs
// in the plain test pass only.

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegenerationIsReproducible regenerates the table from the pinned npm
// package and compares it byte for byte with the committed file, so a
// hand edit or a generator change without `go generate` fails here.
func TestRegenerationIsReproducible(t *testing.T) {
	defs := filepath.Join("..", "..", "..", "..", "tools", "fhirdefs", "node_modules", "@medplum", "definitions", "dist", "fhir", "r4")
	if _, err := os.Stat(defs); err != nil {
		t.Skipf("definitions not installed (run npm ci in tools/fhirdefs): %v", err)
	}
	table, err := build(defs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := encode(table)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "r4defs.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("regenerated table (%d bytes) differs from r4defs.json.gz (%d bytes): run go generate ./internal/fhir", len(got), len(want))
	}
	if len(table.Unexpanded) == 0 || len(table.ValueSets) < 200 {
		t.Errorf("value sets: %d expanded, %d not", len(table.ValueSets), len(table.Unexpanded))
	}
}

// TestSearchExpressionsBecomePaths checks the FHIRPath forms the resolver
// turns into element paths: a where(system=...) filter, a choice expanded
// to its variants and narrowed by ofType/as, resolve() narrowing the
// targets, a contentReference, and the forms refused with a reason.
func TestSearchExpressionsBecomePaths(t *testing.T) {
	defs := filepath.Join("..", "..", "..", "..", "tools", "fhirdefs", "node_modules", "@medplum", "definitions", "dist", "fhir", "r4")
	if _, err := os.Stat(defs); err != nil {
		t.Skipf("definitions not installed (run npm ci in tools/fhirdefs): %v", err)
	}
	table, err := build(defs)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]SearchParam{}
	for _, p := range table.SearchParams {
		got[p.Type+"."+p.Name] = p
	}
	for _, c := range []struct {
		param, paths, targets, unsupported string
		fixed                              bool
	}{
		{"Patient.phone", "telecom[system=phone]", "", "", false},
		{"Patient.gender", "gender", "", "", true},
		{"Patient.deceased", "", "", "the function exists() is not indexed as an element path", false},
		{"Observation.date", "effectiveDateTime effectivePeriod effectiveInstant", "", "", false},
		{"Observation.value-quantity", "valueQuantity", "", "", false},
		{"Procedure.date", "performedDateTime performedPeriod", "", "", false},
		{"Observation.patient", "subject", "Patient", "", false},
		{"DocumentReference.patient", "subject", "Patient", "", false},
		{"ExplanationOfBenefit.patient", "patient", "Patient", "", false},
		{"Observation.code-value-quantity", "", "", "composite parameters are not indexed", false},
		{"Questionnaire.code", "item.code", "", "", false},
		{"InsurancePlan.name", "name alias", "", "", false},
	} {
		p, ok := got[c.param]
		if !ok {
			t.Errorf("%s: not generated", c.param)
			continue
		}
		if s := strings.Join(p.Paths, " "); s != c.paths || strings.Join(p.Targets, " ") != c.targets || p.Unsupported != c.unsupported || p.Fixed != c.fixed {
			t.Errorf("%s = %+v, want paths %q targets %q unsupported %q fixed %v", c.param, p, c.paths, c.targets, c.unsupported, c.fixed)
		}
	}
	if len(table.PatientCompartment["DocumentReference"]) == 0 || table.PatientCompartment["Organization"] != nil {
		t.Errorf("patient compartment: %v", table.PatientCompartment)
	}
}
