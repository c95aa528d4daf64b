package fhir

import (
	"slices"
	"testing"
)

func TestResourceInvariants(t *testing.T) {
	t.Parallel()
	const obs = `"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]}`
	runValidateCases(t, []validateCase{
		{"sev-1: an audit entity has a name or a query, not both", `{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2020-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}},"entity":[{"name":"n","query":"cQ=="}]}`, []string{"invariant@AuditEvent.entity[0]"}},
		{"ctm-1: onBehalfOf needs a Practitioner member", `{"resourceType":"CareTeam","participant":[{"member":{"reference":"Patient/1"},"onBehalfOf":{"reference":"Organization/1"}}]}`, []string{"invariant@CareTeam.participant[0]"}},
		{"ctm-1: a Practitioner member may act on behalf", `{"resourceType":"CareTeam","participant":[{"member":{"reference":"Practitioner/1"},"onBehalfOf":{"reference":"Organization/1"}}]}`, nil},
		{"con-4: an abated condition is no longer active", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"abatementDateTime":"2020-01-01","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}}`, []string{"invariant@Condition.clinicalStatus"}},
		{"con-4: an abated, resolved condition is valid", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"abatementDateTime":"2020-01-01","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]}}`, nil},
		{"con-5: entered-in-error has no clinical status", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"entered-in-error"}]},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}}`, []string{"invariant@Condition.clinicalStatus"}},
		{"con-1: a stage has a summary or assessment", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"stage":[{"type":{"text":"x"}}]}`, []string{"invariant@Condition.stage[0]"}},
		{"con-2: evidence has a code or detail", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"evidence":[{"id":"e"}]}`, []string{"invariant@Condition.evidence[0]"}},
		{"ppc-1: a consent names a policy", `{"resourceType":"Consent","status":"active","scope":{"text":"x"},"category":[{"text":"x"}]}`, []string{"invariant@Consent"}},
		{"ces-1: an eligibility item has a category or a product", `{"resourceType":"CoverageEligibilityResponse","status":"active","purpose":["benefits"],"patient":{"reference":"Patient/1"},"created":"2020-01-01","request":{"reference":"CoverageEligibilityRequest/1"},"outcome":"complete","insurer":{"reference":"Organization/1"},"insurance":[{"coverage":{"reference":"Coverage/1"},"item":[{"name":"x"}]}]}`, []string{"invariant@CoverageEligibilityResponse.insurance[0].item[0]"}},
		{"ipn-1: an insurance plan has an identifier or name", `{"resourceType":"InsurancePlan","status":"active"}`, []string{"invariant@InsurancePlan"}},
		{"obs-6: no dataAbsentReason with a value", `{` + obs + `,"valueString":"a","dataAbsentReason":{"text":"x"}}`, []string{"invariant@Observation.dataAbsentReason"}},
		{"obs-7: a component does not repeat the code when there is a value", `{` + obs + `,"valueString":"a","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"valueString":"b"}]}`, []string{"invariant@Observation.component[0].code"}},
		{"obs-7: components with other codes are valid", `{` + obs + `,"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120}}]}`, nil},
		{"obs-3: a reference range has a bound or text", `{` + obs + `,"referenceRange":[{"type":{"text":"x"}}]}`, []string{"invariant@Observation.referenceRange[0]"}},
		{"org-1: an organization has an identifier or name", `{"resourceType":"Organization","active":true}`, []string{"invariant@Organization"}},
		{"org-2 and org-3: an organization has no home address or telecom", `{"resourceType":"Organization","name":"N","telecom":[{"system":"phone","value":"1","use":"home"}],"address":[{"use":"home","city":"X"}]}`, []string{"invariant@Organization.address[0].use", "invariant@Organization.telecom[0].use"}},
		{"pat-1: a contact has details", `{"resourceType":"Patient","contact":[{"gender":"male"}]}`, []string{"invariant@Patient.contact[0]"}},
		{"inv-1: a task is not modified before it was authored", `{"resourceType":"Task","status":"ready","intent":"order","authoredOn":"2020-01-02T00:00:00Z","lastModified":"2020-01-01T00:00:00Z"}`, []string{"invariant@Task.lastModified"}},
		{"ait-1: an allergy needs a clinical status", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/1"}}`, []string{"invariant@AllergyIntolerance.clinicalStatus"}},
		{"cmp-1: a composition section has content", `{"resourceType":"Composition","status":"final","type":{"text":"x"},"date":"2020-01-01","author":[{"display":"a"}],"title":"t","section":[{"title":"s","section":[{"title":"empty"}]}]}`, []string{"invariant@Composition.section[0].section[0]"}},
		{"inv-1: a parameter has one of value, resource, part", `{"resourceType":"Parameters","parameter":[{"name":"a","valueString":"x","part":[{"name":"b"}]}]}`, []string{"invariant@Parameters.parameter[0]", "invariant@Parameters.parameter[0].part[0]"}},
		{"inv-1: a value with its _value companion is one value", `{"resourceType":"Parameters","parameter":[{"name":"a","valueString":"x","_valueString":{"id":"v"}}]}`, nil},
		{"spd-1: an xpath needs an xpathUsage", `{"resourceType":"SearchParameter","url":"http://e.org/sp","name":"n","status":"draft","description":"d","code":"c","base":["Patient"],"type":"token","xpath":"f:Patient"}`, []string{"invariant@SearchParameter.xpathUsage"}},
		{"msq-5: chromosome and genomeBuild together", `{"resourceType":"MolecularSequence","coordinateSystem":0,"referenceSeq":{"chromosome":{"text":"1"}}}`, []string{"invariant@MolecularSequence.referenceSeq"}},
		{"inv-1: timestamps of different precision are not compared", `{"resourceType":"Task","status":"ready","intent":"order","authoredOn":"2020-01-02","lastModified":"2020-01-01T00:00:00Z"}`, nil},
	})
}

func TestDatatypeInvariants(t *testing.T) {
	t.Parallel()
	p := func(elems string) string { return `{"resourceType":"Patient",` + elems + `}` }
	obs := func(elems string) string {
		return `{"resourceType":"Observation","status":"final","code":{"text":"x"},` + elems + `}`
	}
	runValidateCases(t, []validateCase{
		{"per-1: a period ends after it starts", p(`"name":[{"family":"A","period":{"start":"2020-02-01","end":"2020-01-01"}}]`), []string{"invariant@Patient.name[0].period"}},
		{"per-1: timestamps compare as instants", p(`"name":[{"family":"A","period":{"start":"2020-01-01T10:00:00+02:00","end":"2020-01-01T09:00:00Z"}}]`), nil},
		{"per-1: a date and a timestamp are not compared", p(`"name":[{"family":"A","period":{"start":"2020-01-02","end":"2020-01-01T09:00:00Z"}}]`), nil},
		{"qty-3: a quantity code needs a system", obs(`"valueQuantity":{"value":1,"code":"kg"}`), []string{"invariant@Observation.valueQuantity"}},
		{"cpt-2: a contact point value needs a system", p(`"telecom":[{"value":"+966500000000"}]`), []string{"invariant@Patient.telecom[0]"}},
		{"att-1: attachment data needs a contentType", p(`"photo":[{"data":"YWJj"}]`), []string{"invariant@Patient.photo[0]"}},
		{"rat-1: a ratio has both parts", obs(`"valueRatio":{"numerator":{"value":1}}`), []string{"invariant@Observation.valueRatio"}},
		{"rng-2: a range's low is not above its high", obs(`"valueRange":{"low":{"value":5,"unit":"mg"},"high":{"value":4.99,"unit":"mg"}}`), []string{"invariant@Observation.valueRange"}},
		{"rng-2: bounds in different units are not compared", obs(`"valueRange":{"low":{"value":5,"unit":"g"},"high":{"value":4,"unit":"kg"}}`), nil},
		{"tim-1, tim-5: a timing's duration has a unit and its period is not negative", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/1"},"dosageInstruction":[{"timing":{"repeat":{"duration":1,"period":-1,"periodUnit":"d"}}}]}`, []string{"invariant@MedicationRequest.dosageInstruction[0].timing.repeat", "invariant@MedicationRequest.dosageInstruction[0].timing.repeat.period"}},
		{"tim-10: timeOfDay and when exclude each other", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/1"},"dosageInstruction":[{"timing":{"repeat":{"timeOfDay":["08:00:00"],"when":["MORN"]}}}]}`, []string{"invariant@MedicationRequest.dosageInstruction[0].timing.repeat"}},
	})
}

func TestHandWrittenTypesMatchInvariants(t *testing.T) {
	t.Parallel()
	for typ := range resourceInvariants {
		if !slices.Contains(handWrittenTypes, typ) {
			t.Errorf("%s has hand-written invariants but is not in handWrittenTypes", typ)
		}
	}
	if len(handWrittenTypes) != len(resourceInvariants) {
		t.Errorf("handWrittenTypes has %d types, resourceInvariants %d", len(handWrittenTypes), len(resourceInvariants))
	}
}

// TestFHIRPathInvariantsCoverage reports which R4 invariants are evaluated
// through the FHIRPath subset and fails if the subset loses ground.
func TestFHIRPathInvariantsCoverage(t *testing.T) {
	t.Parallel()
	d := mustDefinitions()
	n := 0
	for _, td := range d.types {
		seen := map[*node]bool{}
		for _, nd := range td.nodes {
			if !seen[nd] {
				seen[nd] = true
				n += len(nd.invariants)
			}
		}
	}
	for k, why := range d.skippedInvariants {
		t.Logf("not evaluated: %s: %s", k, why)
	}
	t.Logf("%d invariants evaluated through FHIRPath, %d not", n, len(d.skippedInvariants))
	if n < 90 {
		t.Errorf("only %d invariants evaluated", n)
	}
}
