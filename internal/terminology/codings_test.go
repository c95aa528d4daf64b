package terminology

import (
	"context"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
)

func testCheckClaimAndCondition(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		loadFixture(t, s, "2021")
		loadFixture(t, s, "2022")
		claim := `{"resourceType":"Claim","billablePeriod":{"start":"2021-06-01"},
			"diagnosis":[
				{"sequence":1,"diagnosisCodeableConcept":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9","display":"Type 2 diabetes mellitus without complications"}]}},
				{"sequence":2,"diagnosisCodeableConcept":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11"}]}},
				{"sequence":3,"diagnosisCodeableConcept":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"M54.50"},{"system":"http://example.org/local","code":"whatever"}]}},
				{"sequence":4,"diagnosisCodeableConcept":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"I10","display":"High blood pressure"}]}}
			],
			"item":[
				{"sequence":1,"productOrService":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"99213"}]},"servicedDate":"2021-06-01"},
				{"sequence":2,"productOrService":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"9921"}]}},
				{"sequence":3,"productOrService":{"coding":[{"system":"http://snomed.info/sct","code":"22298007"}]}}
			]}`
		issues, err := s.CheckClaim(ctx, []byte(claim))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"error code-invalid Claim.diagnosis[1].diagnosisCodeableConcept.coding[0].code header code",
			"error code-invalid Claim.diagnosis[2].diagnosisCodeableConcept.coding[0].code release 2022",
			"warning value Claim.diagnosis[3].diagnosisCodeableConcept.coding[0].display Essential (primary) hypertension",
			"error code-invalid Claim.item[1].productOrService.coding[0].code not a CPT code",
			"error code-invalid Claim.item[2].productOrService.coding[0].code check digit",
		}
		assertIssues(t, issues, want)

		// A clinical Condition may carry a header code, with a warning.
		cond := `{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11"}]},"onsetDateTime":"2022-02-03T10:00:00+02:00"}`
		issues, err = s.CheckCondition(ctx, []byte(cond))
		if err != nil {
			t.Fatal(err)
		}
		assertIssues(t, issues, []string{"warning business-rule Condition.code.coding[0].code header code"})

		cond = `{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9"}]}}`
		issues, _ = s.CheckCondition(ctx, []byte(cond))
		assertIssues(t, issues, []string{"warning incomplete Condition.code.coding[0].code no date of service"})

		if _, err := s.CheckClaim(ctx, []byte(cond)); err == nil {
			t.Error("a Condition was checked as a Claim")
		}
	}
}

// assertIssues compares issues with "severity code expression text" lines,
// where text must appear in the diagnostics.
func assertIssues(t *testing.T, issues []fhir.OutcomeIssue, want []string) {
	t.Helper()
	if len(issues) != len(want) {
		for _, is := range issues {
			t.Logf("got %s %s %v %s", is.Severity, is.Code, is.Expression, is.Diagnostics)
		}
		t.Fatalf("%d issues, want %d", len(issues), len(want))
	}
	for i, w := range want {
		f := strings.SplitN(w, " ", 4)
		is := issues[i]
		if is.Severity != f[0] || is.Code != f[1] || len(is.Expression) != 1 || is.Expression[0] != f[2] || !strings.Contains(is.Diagnostics, f[3]) {
			t.Errorf("issue %d = %s %s %v %q; want %s", i, is.Severity, is.Code, is.Expression, is.Diagnostics, w)
		}
	}
}
