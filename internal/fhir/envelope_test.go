package fhir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSetIDAndMeta(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	tests := []struct {
		name, in, want string
	}{
		{"id and meta are inserted after resourceType",
			`{"resourceType":"Patient","gender":"male"}`,
			`{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2026-01-02T02:04:05Z"},"gender":"male"}`},
		{"an existing id and meta keep their place and other meta members",
			`{"gender":"male","meta":{"tag":[{"code":"t"}],"versionId":"1"},"resourceType":"Patient","id":"old"}`,
			`{"gender":"male","meta":{"tag":[{"code":"t"}],"versionId":"2","lastUpdated":"2026-01-02T02:04:05Z"},"resourceType":"Patient","id":"p1"}`},
		{"numbers, escapes and extensions are kept exactly",
			"{\"resourceType\":\"Observation\",\"valueQuantity\":{\"value\":1.50e0},\"note\":[{\"text\":\"a\\u00e9\\n\\\"<b>\"}],\"_status\":{\"extension\":[{\"url\":\"u\",\"valueString\":\"x\"}]}}",
			"{\"resourceType\":\"Observation\",\"id\":\"p1\",\"meta\":{\"versionId\":\"2\",\"lastUpdated\":\"2026-01-02T02:04:05Z\"},\"valueQuantity\":{\"value\":1.50e0},\"note\":[{\"text\":\"aé\\n\\\"<b>\"}],\"_status\":{\"extension\":[{\"url\":\"u\",\"valueString\":\"x\"}]}}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetIDAndMeta([]byte(tc.in), "p1", "2", when)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	if _, err := SetIDAndMeta([]byte(`{"resourceType":"Patient"}`), "bad id", "1", when); err == nil {
		t.Error("an invalid id was accepted")
	}
	if _, err := SetIDAndMeta([]byte(`[1]`), "a", "1", when); !errors.Is(err, ErrNotResource) {
		t.Errorf("array: %v", err)
	}
}

func TestReadEnvelope(t *testing.T) {
	t.Parallel()
	e, err := ReadEnvelope([]byte(`{"resourceType":"Claim","id":"c1","meta":{"versionId":"3","lastUpdated":"2020-01-01T00:00:00.5Z"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if e != (Envelope{ResourceType: "Claim", ID: "c1", VersionID: "3", LastUpdated: "2020-01-01T00:00:00.5Z"}) {
		t.Errorf("envelope %+v", e)
	}
	if ts, err := e.LastUpdatedTime(); err != nil || !ts.Equal(time.Date(2020, 1, 1, 0, 0, 0, 5e8, time.UTC)) {
		t.Errorf("lastUpdated %v %v", ts, err)
	}
	for _, bad := range []string{`{"id":"x"}`, `"Patient"`, `{"resourceType":""}`} {
		if _, err := ReadEnvelope([]byte(bad)); !errors.Is(err, ErrNotResource) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	var se *SyntaxError
	if _, err := ReadEnvelope([]byte(`{"resourceType":`)); !errors.As(err, &se) {
		t.Errorf("truncated: %v", err)
	}
}

func TestJSONEqual(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{`{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1}`, true},
		{`{"a":"\u00e9"}`, `{"a":"é"}`, true},
		{`{"a":1.5}`, `{"a":1.50}`, false},
		{`{"a":[1,2]}`, `{"a":[2,1]}`, false},
		{`{"a":null}`, `{}`, false},
	} {
		got, err := JSONEqual([]byte(tc.a), []byte(tc.b))
		if err != nil || got != tc.want {
			t.Errorf("JSONEqual(%s, %s) = %v, %v", tc.a, tc.b, got, err)
		}
	}
}

func TestBundleRoundTrip(t *testing.T) {
	t.Parallel()
	total := 1
	b := NewBundle(BundleSearchset)
	b.Total = &total
	b.Link = []BundleLink{{Relation: "self", URL: "https://x.org/fhir/Patient?name=a"}}
	b.Entry = []BundleEntry{{
		FullURL:  "https://x.org/fhir/Patient/1",
		Resource: []byte(`{"resourceType":"Patient","id":"1","_gender":{"extension":[{"url":"http://e.org/x","valueString":"y"}]}}`),
		Search:   &BundleEntrySearch{Mode: "match"},
	}}
	raw := mustJSON(t, b)
	if is := Validate(raw); len(is) != 0 {
		t.Fatalf("our searchset is invalid: %v", is)
	}
	back, err := ParseBundle(raw)
	if err != nil {
		t.Fatal(err)
	}
	if eq, _ := JSONEqual(back.Entry[0].Resource, b.Entry[0].Resource); !eq || back.Type != BundleSearchset || *back.Total != 1 {
		t.Errorf("parsed %+v", back)
	}
	if _, err := ParseBundle([]byte(`{"resourceType":"Patient"}`)); err == nil {
		t.Error("a Patient parsed as a Bundle")
	}
}

func readSample(t *testing.T, rel string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(sampleDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestViewsReadSamples(t *testing.T) {
	t.Parallel()
	claim, err := ParseClaim(readSample(t, "fhir-r4/R4-claim-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if claim.Use != "claim" || claim.Status != "active" || claim.Patient.Reference != "Patient/1" ||
		len(claim.Item) != 1 || claim.Item[0].Net == nil || claim.Item[0].Net.Value != "135.57" ||
		len(claim.Diagnosis) != 1 || claim.Diagnosis[0].DiagnosisCodeableConcept == nil ||
		len(claim.Insurance) != 1 || !claim.Insurance[0].Focal || claim.Insurer == nil {
		t.Errorf("claim view %+v", claim)
	}
	cr, err := ParseClaimResponse(readSample(t, "fhir-r4/R4-claimresponse-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cr.Outcome != "complete" || cr.Request == nil || cr.Payment == nil || cr.Payment.Amount.Value == "" ||
		len(cr.Item) == 0 || len(cr.Item[0].Adjudication) == 0 || len(cr.Total) == 0 {
		t.Errorf("claim response view %+v", cr)
	}
	p, err := ParsePatient(readSample(t, "fhir-r4/Normative-Patient-f001.json"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Gender == "" || p.BirthDate == "" || len(p.Name) == 0 || len(p.Identifier) == 0 || len(p.Telecom) == 0 {
		t.Errorf("patient view %+v", p)
	}
	enc, err := ParseEncounter(readSample(t, "fhir-r4/R4-Encounter-For-Patient-f001.json"))
	if err != nil {
		t.Fatal(err)
	}
	if enc.Status == "" || enc.Subject == nil || enc.Class == nil {
		t.Errorf("encounter view %+v", enc)
	}
	cov, err := ParseCoverage(readSample(t, "fhir-r4/Normative-Coverage.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cov.Status == "" || cov.Beneficiary.Reference == "" || len(cov.Payor) == 0 {
		t.Errorf("coverage view %+v", cov)
	}
	if _, err := ParseClaim([]byte(`{"resourceType":"Patient"}`)); err == nil || !strings.Contains(err.Error(), "Patient") {
		t.Errorf("a Patient read as a Claim: %v", err)
	}
}

func TestViewHelpers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ref, typ, id string
		ok           bool
	}{
		{"Patient/123", "Patient", "123", true},
		{"Patient/123/_history/4", "Patient", "123", true},
		{"https://x.org/fhir/Coverage/c-1", "Coverage", "c-1", true},
		{"urn:uuid:6fc92493-6bef-402a-bbba-d949f3812cc8", "", "", false},
		{"#cov", "", "", false},
		{"Patient?identifier=1", "", "", false},
		{"", "", "", false},
	} {
		typ, id, ok := Reference{Reference: tc.ref}.Target()
		if typ != tc.typ || id != tc.id || ok != tc.ok {
			t.Errorf("Target(%q) = %q, %q, %v", tc.ref, typ, id, ok)
		}
	}
	ids := []Identifier{{System: "a", Value: "1"}, {System: "b", Value: "2"}}
	if IdentifierValue(ids, "b") != "2" || IdentifierValue(ids, "c") != "" {
		t.Error("IdentifierValue")
	}
	cc := CodeableConcept{Coding: []Coding{{System: "s1", Code: "x"}, {System: "s2", Code: "y"}}}
	if cc.Code("s2") != "y" || cc.Code("s3") != "" {
		t.Error("CodeableConcept.Code")
	}
}
