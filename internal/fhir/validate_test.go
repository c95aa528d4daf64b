package fhir

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// errorsOf renders the error issues as "code@path" for comparison.
func errorsOf(issues Issues) []string {
	var out []string
	for _, is := range issues {
		if is.Severity != SeverityError && is.Severity != SeverityFatal {
			continue
		}
		out = append(out, is.Code+"@"+strings.Join(is.Expression, ","))
	}
	sort.Strings(out)
	return out
}

type validateCase struct {
	name string
	json string
	want []string // errors as code@path; nil means valid
}

func runValidateCases(t *testing.T, cases []validateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			issues := Validate([]byte(tc.json))
			got := errorsOf(issues)
			want := append([]string(nil), tc.want...)
			sort.Strings(want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("errors = %v\nwant     %v\nall issues: %+v", got, want, issues)
			}
		})
	}
}

func TestValidateResourceType(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		{"a minimal patient is valid", `{"resourceType":"Patient"}`, nil},
		{"a missing resourceType is required", `{"id":"x"}`, []string{"required@resourceType"}},
		{"an empty resourceType is a structure error", `{"resourceType":""}`, []string{"structure@resourceType"}},
		{"a numeric resourceType is a structure error", `{"resourceType":7}`, []string{"structure@resourceType"}},
		{"an unknown resourceType is rejected", `{"resourceType":"ClaimRequest"}`, []string{"value@resourceType"}},
		{"an abstract type is no resource", `{"resourceType":"DomainResource"}`, []string{"value@resourceType"}},
		{"a datatype is no resource", `{"resourceType":"HumanName"}`, []string{"value@resourceType"}},
		{"an array is no resource", `[{"resourceType":"Patient"}]`, []string{"structure@"}},
		{"every R4 resource type validates, not only ours", `{"resourceType":"ImmunizationEvaluation","status":"completed","patient":{"reference":"Patient/1"},"targetDisease":{"text":"x"},"immunizationEvent":{"reference":"Immunization/1"},"doseStatus":{"text":"valid"}}`, nil},
	})
}

func TestValidateUnknownElements(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		{"an unknown element is rejected with its path", `{"resourceType":"Patient","name":[{"family":"A","nickname":"B"}]}`, []string{"structure@Patient.name[0].nickname"}},
		{"resourceType inside a datatype is unknown", `{"resourceType":"Patient","name":[{"resourceType":"HumanName"}]}`, []string{"structure@Patient.name[0].resourceType"}},
		{"extension and modifierExtension are accepted", `{"resourceType":"Patient","extension":[{"url":"http://e.org/a","valueString":"x"}],"modifierExtension":[{"url":"http://e.org/b","valueBoolean":true}]}`, nil},
		{"nested extensions are accepted", `{"resourceType":"Patient","extension":[{"url":"http://e.org/a","extension":[{"url":"part","valueCode":"x"}]}]}`, nil},
		{"an extension needs a url", `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`, []string{"required@Patient.extension[0].url"}},
		{"an extension with value and extensions breaks ext-1", `{"resourceType":"Patient","extension":[{"url":"http://e.org/a","valueString":"x","extension":[{"url":"b","valueString":"y"}]}]}`, []string{"invariant@Patient.extension[0]"}},
		{"an extension with neither breaks ext-1", `{"resourceType":"Patient","extension":[{"url":"http://e.org/a"}]}`, []string{"invariant@Patient.extension[0]"}},
		{"an extension value of an unknown type is unknown", `{"resourceType":"Patient","extension":[{"url":"http://e.org/a","valueFoo":"x"}]}`, []string{"structure@Patient.extension[0].valueFoo"}},
		{"a primitive's _element carries extensions", `{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1970-01-01T04:30:00+01:00"}]}}`, nil},
		{"an _element may stand alone", `{"resourceType":"Patient","_gender":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}`, nil},
		{"an _element of a complex element is unknown", `{"resourceType":"Patient","_name":{"id":"n"}}`, []string{"structure@Patient._name"}},
		{"an _element holds only id and extension", `{"resourceType":"Patient","_gender":{"value":"male"}}`, []string{"structure@Patient.gender.value"}},
		{"an _element must be an object", `{"resourceType":"Patient","_gender":"male"}`, []string{"structure@Patient.gender"}},
		{"primitive arrays pair with _element arrays by position", `{"resourceType":"Patient","name":[{"given":["A",null],"_given":[null,{"extension":[{"url":"http://e.org/x","valueString":"y"}]}]}]}`, nil},
		{"a null without a companion is rejected", `{"resourceType":"Patient","name":[{"given":["A",null]}]}`, []string{"structure@Patient.name[0].given[1]"}},
		{"companion arrays must have the same length", `{"resourceType":"Patient","name":[{"given":["A","B"],"_given":[null]}]}`, []string{"structure@Patient.name[0].given"}},
		{"a null single value is rejected", `{"resourceType":"Patient","gender":null}`, []string{"structure@Patient.gender"}},
	})
}

func TestValidatePrimitives(t *testing.T) {
	t.Parallel()
	p := func(elem, value string) string { return `{"resourceType":"Patient",` + elem + `:` + value + `}` }
	obs := func(elem, value string) string {
		return `{"resourceType":"Observation","status":"final","code":{"text":"x"},` + elem + `:` + value + `}`
	}
	runValidateCases(t, []validateCase{
		{"id matches [A-Za-z0-9-.]{1,64}", p(`"id"`, `"a-b.C9"`), nil},
		{"id rejects an underscore", p(`"id"`, `"a_b"`), []string{"value@Patient.id"}},
		{"id rejects 65 characters", p(`"id"`, `"`+strings.Repeat("a", 65)+`"`), []string{"value@Patient.id"}},
		{"boolean must be a JSON boolean", p(`"active"`, `"true"`), []string{"value@Patient.active"}},
		{"a string must not be empty", `{"resourceType":"Patient","name":[{"family":""}]}`, []string{"value@Patient.name[0].family"}},
		{"a string must be a JSON string", `{"resourceType":"Patient","name":[{"family":5}]}`, []string{"value@Patient.name[0].family"}},
		{"a string may hold any other whitespace", `{"resourceType":"Patient","name":[{"text":" A\n\tB "}]}`, nil},
		{"integer must be a JSON number", obs(`"valueInteger"`, `"5"`), []string{"value@Observation.valueInteger"}},
		{"integer rejects a fraction", obs(`"valueInteger"`, `5.5`), []string{"value@Observation.valueInteger"}},
		{"integer rejects an exponent", obs(`"valueInteger"`, `5e2`), []string{"value@Observation.valueInteger"}},
		{"integer is 32-bit", obs(`"valueInteger"`, `2147483648`), []string{"value@Observation.valueInteger"}},
		{"integer accepts the 32-bit minimum", obs(`"valueInteger"`, `-2147483648`), nil},
		{"unsignedInt rejects negatives", `{"resourceType":"Patient","multipleBirthInteger":1,"contact":[{"name":{"family":"x"}}],"communication":[{"language":{"text":"en"}}],"photo":[{"size":-1}]}`, []string{"value@Patient.photo[0].size"}},
		{"positiveInt rejects zero", `{"resourceType":"Claim","status":"active","type":{"text":"x"},"use":"claim","patient":{"reference":"Patient/1"},"created":"2020-01-01","provider":{"reference":"Organization/1"},"priority":{"text":"normal"},"insurance":[{"sequence":0,"focal":true,"coverage":{"reference":"Coverage/1"}}]}`, []string{"value@Claim.insurance[0].sequence"}},
		{"decimal keeps any precision", obs(`"valueQuantity"`, `{"value":0.1000000000000000000000000001}`), nil},
		{"decimal must be a JSON number", obs(`"valueQuantity"`, `{"value":"1.5"}`), []string{"value@Observation.valueQuantity.value"}},
		{"date accepts year and year-month", p(`"birthDate"`, `"1970-02"`), nil},
		{"date rejects month 13", p(`"birthDate"`, `"1970-13-01"`), []string{"value@Patient.birthDate"}},
		{"date rejects February 30", p(`"birthDate"`, `"1970-02-30"`), []string{"value@Patient.birthDate"}},
		{"date rejects a time", p(`"birthDate"`, `"1970-02-01T00:00:00Z"`), []string{"value@Patient.birthDate"}},
		{"dateTime with a time needs seconds and a zone", obs(`"effectiveDateTime"`, `"2020-01-01T10:00"`), []string{"value@Observation.effectiveDateTime"}},
		{"dateTime with a zone is valid", obs(`"effectiveDateTime"`, `"2020-01-01T10:00:00.5+05:30"`), nil},
		{"instant needs a zone", obs(`"issued"`, `"2020-01-01T10:00:00"`), []string{"value@Observation.issued"}},
		{"time is hh:mm:ss", obs(`"valueTime"`, `"25:00:00"`), []string{"value@Observation.valueTime"}},
		{"uri rejects whitespace", `{"resourceType":"Patient","identifier":[{"system":"http://a b"}]}`, []string{"value@Patient.identifier[0].system"}},
		{"uri with urn:uuid: needs a UUID", `{"resourceType":"Patient","identifier":[{"system":"urn:uuid:x"}]}`, []string{"value@Patient.identifier[0].system"}},
		{"uri with urn:oid: needs an OID", `{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3"}]}`, nil},
		{"canonical may carry a version", `{"resourceType":"Patient","meta":{"profile":["http://e.org/StructureDefinition/p|1.0"]}}`, nil},
		{"code rejects leading whitespace", p(`"gender"`, `" male"`), []string{"value@Patient.gender"}},
		{"code rejects a double space", `{"resourceType":"Patient","communication":[{"language":{"coding":[{"code":"a  b"}]}}]}`, []string{"value@Patient.communication[0].language.coding[0].code"}},
		{"oid must start with urn:oid:", obs(`"valueCodeableConcept"`, `{"coding":[{"system":"urn:oid:1.2"}]}`), nil},
		{"base64Binary must be base64", `{"resourceType":"Patient","photo":[{"contentType":"image/png","data":"abc"}]}`, []string{"value@Patient.photo[0].data"}},
		{"base64Binary accepts whitespace between quads", `{"resourceType":"Patient","photo":[{"contentType":"image/png","data":"YWJj\nZGVm"}]}`, nil},
		{"markdown is a string", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"N","extension":[{"url":"http://e.org/m","valueMarkdown":"*hi*"}]}]}`, nil},
		{"a narrative is an XHTML div", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>A&nbsp;<b>B</b></p></div>"}}`, nil},
		{"a narrative must be well-formed", `{"resourceType":"Patient","text":{"status":"generated","div":"<div><p>A</div>"}}`, []string{"value@Patient.text.div"}},
		{"a narrative root must be a div", `{"resourceType":"Patient","text":{"status":"generated","div":"<p>A</p>"}}`, []string{"value@Patient.text.div"}},
		{"a narrative must not carry scripts", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x()</script></div>"}}`, []string{"value@Patient.text.div"}},
		{"a narrative must not carry event handlers", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"a.png\" onerror=\"x()\"/></div>"}}`, []string{"value@Patient.text.div"}},
		{"a string over 1 MB is rejected", `{"resourceType":"Patient","name":[{"text":"` + strings.Repeat("a", 1<<20+1) + `"}]}`, []string{"value@Patient.name[0].text"}},
		{"a uuid value is lower-case", `{"resourceType":"Patient","extension":[{"url":"http://e.org/u","valueUuid":"urn:uuid:A0000000-0000-0000-0000-000000000000"}]}`, []string{"value@Patient.extension[0].valueUuid"}},
		{"an oid value has the urn:oid: prefix", `{"resourceType":"Patient","extension":[{"url":"http://e.org/u","valueOid":"1.2.3"}]}`, []string{"value@Patient.extension[0].valueOid"}},
	})
}

func TestValidateCardinality(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		{"a repeating element must be an array", `{"resourceType":"Patient","name":{"family":"A"}}`, []string{"structure@Patient.name"}},
		{"a single element must not be an array", `{"resourceType":"Patient","gender":["male"]}`, []string{"structure@Patient.gender"}},
		{"an empty array is rejected", `{"resourceType":"Patient","name":[]}`, []string{"structure@Patient.name"}},
		{"an empty object is rejected", `{"resourceType":"Patient","name":[{}]}`, []string{"structure@Patient.name[0]"}},
		{"an empty resource body is rejected", `{}`, []string{"required@resourceType"}},
		{"a missing required element is named", `{"resourceType":"Observation","status":"final"}`, []string{"required@Observation.code"}},
		{"a missing required backbone element is named", `{"resourceType":"Claim","status":"active","type":{"text":"x"},"use":"claim","patient":{"reference":"Patient/1"},"created":"2020-01-01","provider":{"reference":"Organization/1"},"priority":{"text":"normal"}}`, []string{"required@Claim.insurance"}},
		{"required elements inside backbones are checked", `{"resourceType":"Bundle","type":"collection","link":[{"relation":"self"}]}`, []string{"required@Bundle.link[0].url"}},
		{"a required element present only as _element counts", `{"resourceType":"Observation","_status":{"extension":[{"url":"http://e.org/x","valueString":"y"}]},"code":{"text":"x"}}`, nil},
	})
}

func TestValidateBindings(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		{"a code in its required value set is valid", `{"resourceType":"Patient","gender":"female"}`, nil},
		{"a code outside its required value set is rejected", `{"resourceType":"Patient","gender":"mail"}`, []string{"code-invalid@Patient.gender"}},
		{"a status code outside its value set is rejected", `{"resourceType":"Observation","status":"this_is_invalid","code":{"text":"x"}}`, []string{"code-invalid@Observation.status"}},
		{"an invalid bundle type is rejected", `{"resourceType":"Bundle","type":"invalid-type"}`, []string{"code-invalid@Bundle.type"}},
		{"a required CodeableConcept binding checks codings of its system", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"bogus"}]}}`, []string{"code-invalid@Condition.clinicalStatus.coding[0].code"}},
		{"a CodeableConcept coding of another system is left alone", `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"},{"system":"http://e.org","code":"x"}]}}`, nil},
		{"bindings to value sets that cannot be expanded are not checked", `{"resourceType":"Patient","photo":[{"contentType":"image/x-anything"}]}`, nil},
	})
}

func TestValidateReferences(t *testing.T) {
	t.Parallel()
	ref := func(r string) string {
		return `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p1"}],"status":"final","code":{"text":"x"},"subject":{"reference":"` + r + `"}}`
	}
	valid := []string{"Patient/123", "Patient/123/_history/2", "urn:uuid:6fc92493-6bef-402a-bbba-d949f3812cc8",
		"urn:oid:1.2.840.113619", "#p1", "http://example.org/fhir/Patient/1", "https://x.org/a"}
	var cases []validateCase
	for _, r := range valid {
		cases = append(cases, validateCase{"reference " + r + " is valid", ref(r), nil})
	}
	for _, r := range []string{"Patient", "Patient/", "/123", "urn:uuid:patient-001", "urn:oid:x", "Patient/1 2", "Patient/1/2",
		"Patient?identifier=1", "#a b", "http://"} {
		cases = append(cases, validateCase{"reference " + r + " is rejected", ref(r), []string{"value@Observation.subject.reference"}})
	}
	cases = append(cases,
		validateCase{"a conditional reference is valid in a transaction",
			`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + ref("Patient?identifier=a|1") + `,"request":{"method":"POST","url":"Observation"}}]}`, nil},
		validateCase{"a reference to a type the element does not allow is rejected", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Organization/1"}}`, []string{"value@Observation.subject.reference"}},
		validateCase{"an absolute reference's type is checked too", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"https://x.org/fhir/Organization/1/_history/2"}}`, []string{"value@Observation.subject.reference"}},
		validateCase{"a Reference(Any) takes every type", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"focus":[{"reference":"Organization/1"}]}`, nil},
		validateCase{"a #fragment must name a contained resource (ref-1)", ref("#p2"), []string{"invariant@Observation.subject.reference"}},
		validateCase{"a contained resource may point at its container with #", `{"resourceType":"Patient","id":"x","contained":[{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"subject":{"reference":"#"}}]}`, nil},
		validateCase{"a reference with only display is valid", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"display":"someone"}}`, nil},
	)
	runValidateCases(t, cases)

	// References that are URLs but cannot resolve are warned about, not rejected.
	for _, r := range []string{"ClaimRequest/1", "Organization/AB_1"} {
		issues := Validate([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"` + r + `"}}`))
		if issues.HasErrors() || len(issues) != 1 || issues[0].Severity != SeverityWarning || issues[0].Expression[0] != "Observation.subject.reference" {
			t.Errorf("reference %s: want one warning, got %+v", r, issues)
		}
	}
}

func TestValidateChoices(t *testing.T) {
	t.Parallel()
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"},`
	runValidateCases(t, []validateCase{
		{"one choice type is valid", obs + `"valueQuantity":{"value":1,"unit":"kg"}}`, nil},
		{"two choice types are rejected", obs + `"valueString":"a","valueBoolean":true}`, []string{"invariant@Observation.value[x]"}},
		{"a choice with an unknown type is unknown", obs + `"valueFoo":"a"}`, []string{"structure@Observation.valueFoo"}},
		{"a choice is checked as its type", obs + `"valueBoolean":"yes"}`, []string{"value@Observation.valueBoolean"}},
		{"a required choice that is missing is named", `{"resourceType":"Claim","status":"active","type":{"text":"x"},"use":"claim","patient":{"reference":"Patient/1"},"created":"2020-01-01","provider":{"reference":"Organization/1"},"priority":{"text":"normal"},"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/1"}}],"diagnosis":[{"sequence":1}]}`, []string{"required@Claim.diagnosis[0].diagnosis[x]"}},
	})
}

func TestValidateNestedResources(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		{"contained resources are validated with their path", `{"resourceType":"Patient","contained":[{"resourceType":"Practitioner","id":"p","gender":"x"}],"generalPractitioner":[{"reference":"#p"}]}`, []string{"code-invalid@Patient.contained[0].gender"}},
		{"a contained resource holds no resources (dom-2)", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":"N","contained":[{"resourceType":"Organization","id":"o2","name":"N"}]}],"managingOrganization":{"reference":"#o1"}}`, []string{"invariant@Patient.contained[0].contained"}},
		{"a contained resource has no version (dom-4)", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":"N","meta":{"versionId":"1"}}],"managingOrganization":{"reference":"#o1"}}`, []string{"invariant@Patient.contained[0].meta"}},
		{"a contained resource has no security labels (dom-5)", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":"N","meta":{"security":[{"code":"R"}]}}],"managingOrganization":{"reference":"#o1"}}`, []string{"invariant@Patient.contained[0].meta.security"}},
		{"a contained resource needs a resourceType", `{"resourceType":"Patient","contained":[{"id":"p"}]}`, []string{"required@Patient.contained[0].resourceType"}},
		{"bundle entries are validated with their path", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}},{"resource":{"resourceType":"Observation","status":"done","code":{"text":"x"}}}]}`, []string{"code-invalid@Bundle.entry[1].resource.status"}},
		{"contentReference elements recurse", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"string","item":[{"type":"string"}]}]}]}`, []string{"required@Questionnaire.item[0].item[0].item[0].linkId"}},
		{"Parameters carry resources", `{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Patient","active":1}}]}`, []string{"value@Parameters.parameter[0].resource.active"}},
		{"a transaction entry needs a request (bdl-3)", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`, []string{"invariant@Bundle.entry[0].request"}},
		{"a collection entry has no request (bdl-3)", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`, []string{"invariant@Bundle.entry[0].request"}},
		{"a document starts with a Composition (bdl-11)", `{"resourceType":"Bundle","type":"document","identifier":{"value":"1"},"timestamp":"2020-01-01T00:00:00Z","entry":[{"resource":{"resourceType":"Patient"}}]}`, []string{"invariant@Bundle.entry[0].resource"}},
		{"fullUrls are unique (bdl-7)", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:6fc92493-6bef-402a-bbba-d949f3812cc8","resource":{"resourceType":"Patient"}},{"fullUrl":"urn:uuid:6fc92493-6bef-402a-bbba-d949f3812cc8","resource":{"resourceType":"Patient"}}]}`, []string{"invariant@Bundle.entry[1].fullUrl"}},
		{"an entry needs a resource, request or response (bdl-5)", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:6fc92493-6bef-402a-bbba-d949f3812cc8"}]}`, []string{"invariant@Bundle.entry[0]"}},
		{"a fullUrl is not version-specific (bdl-8)", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"http://x.org/fhir/Patient/1/_history/2","resource":{"resourceType":"Patient"}}]}`, []string{"invariant@Bundle.entry[0].fullUrl"}},
		{"total belongs to searchsets (bdl-1)", `{"resourceType":"Bundle","type":"collection","total":1}`, []string{"invariant@Bundle.total"}},
	})
}

func TestValidateJSON(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		{"duplicate keys are rejected with their path", `{"resourceType":"Patient","gender":"male","gender":"female"}`, []string{"structure@Patient.gender"}},
		{"duplicate keys deep inside are rejected", `{"resourceType":"Patient","name":[{"family":"A","family":"B"}]}`, []string{"structure@Patient.name[0].family"}},
		{"a byte-order mark is tolerated", "\ufeff" + `{"resourceType":"Patient"}`, nil},
	})
	for _, tc := range []struct{ name, body string }{
		{"not JSON", `resourceType: Patient`},
		{"truncated", `{"resourceType":"Patient"`},
		{"trailing data", `{"resourceType":"Patient"} {}`},
		{"a trailing comma", `{"resourceType":"Patient",}`},
		{"invalid UTF-8", "{\"resourceType\":\"Patient\",\"id\":\"\xff\"}"},
		{"a raw control character", "{\"resourceType\":\"Patient\",\"id\":\"a\x01\"}"},
		{"a leading zero", `{"resourceType":"Patient","multipleBirthInteger":01}`},
		{"nesting too deep", strings.Repeat("[", 1000) + strings.Repeat("]", 1000)},
	} {
		issues := Validate([]byte(tc.body))
		if !issues.Malformed() || !issues.HasErrors() {
			t.Errorf("%s: want one fatal invalid issue, got %+v", tc.name, issues)
		}
	}
	if Validate([]byte(`{"resourceType":"Patient","gender":"x"}`)).Malformed() {
		t.Error("a resource that breaks R4 rules is not malformed JSON")
	}
}

func TestValidateWarnsAboutOrphanContained(t *testing.T) {
	t.Parallel()
	issues := Validate([]byte(`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":"N"}]}`))
	if issues.HasErrors() || len(issues) != 1 || issues[0].Severity != SeverityWarning || issues[0].Expression[0] != "Patient.contained[0]" {
		t.Errorf("want one dom-3 warning, got %+v", issues)
	}
	if is := Validate([]byte(`{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":"N"}],"managingOrganization":{"reference":"#o1"}}`)); len(is) != 0 {
		t.Errorf("a referenced contained resource: %+v", is)
	}
}

func TestValidateType(t *testing.T) {
	t.Parallel()
	if got := errorsOf(ValidateType([]byte(`{"resourceType":"Patient"}`), "Observation")); fmt.Sprint(got) != "[invalid@resourceType]" {
		t.Errorf("type mismatch: %v", got)
	}
	if got := ValidateType([]byte(`{"resourceType":"Patient"}`), "Patient"); len(got) != 0 {
		t.Errorf("matching type: %v", got)
	}
}

func TestValidateStopsAfterTooManyIssues(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`{"resourceType":"Patient","name":[`)
	for i := 0; i < 500; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"x%d":1}`, i)
	}
	b.WriteString(`]}`)
	issues := Validate([]byte(b.String()))
	if len(issues) != maxIssues+1 || issues[maxIssues].Code != IssueTooCostly {
		t.Errorf("got %d issues, last %+v", len(issues), issues[len(issues)-1])
	}
}

func TestOutcomeFromIssues(t *testing.T) {
	t.Parallel()
	issues := Validate([]byte(`{"resourceType":"Patient","gender":"x"}`))
	oo := issues.Outcome()
	if oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Expression[0] != "Patient.gender" {
		t.Fatalf("outcome %+v", oo)
	}
	// The outcome we return must itself be a valid OperationOutcome.
	raw := mustJSON(t, oo)
	if is := Validate(raw); is.HasErrors() {
		t.Errorf("our OperationOutcome is invalid: %v", is)
	}
}

// Diagnostics may be logged, so they must not repeat what a client sent.
func TestIssuesDoNotEchoValues(t *testing.T) {
	t.Parallel()
	const secret = "1970-13-01"
	body := `{"resourceType":"Patient","birthDate":"` + secret + `","gender":"` + secret + `",
		"identifier":[{"system":"urn:uuid:` + secret + `","value":"x"}],"managingOrganization":{"reference":"` + secret + `"},
		"generalPractitioner":[{"reference":"#` + secret + `"}],"multipleBirthInteger":19701301000,
		"contained":[{"resourceType":"Organization","id":"` + secret + `","name":"N"}]}`
	issues := Validate([]byte(body))
	if len(issues) < 5 {
		t.Fatalf("expected several issues, got %+v", issues)
	}
	for _, is := range issues {
		if strings.Contains(is.Diagnostics, secret) || strings.Contains(is.Diagnostics, "19701301000") {
			t.Errorf("diagnostics echo a value: %q", is.Diagnostics)
		}
	}
}

// A member whose name is another element's name plus a capital letter is a
// choice variant only when the definitions say that element is [x]:
// TestScript's assert has response (code) and responseCode (string), two
// elements, so tst-5's "response.count() + responseCode.count() <= 1"
// holds for an assert with responseCode alone.
func TestValidateChoicesComeFromDefinitions(t *testing.T) {
	t.Parallel()
	ts := func(assert string) string {
		return `{"resourceType":"TestScript","url":"http://example.org/ts","name":"ts","status":"draft",` +
			`"setup":{"action":[{"assert":` + assert + `}]},"test":[{"action":[{"operation":{"type":{"code":"read"},"encodeRequestUrl":true,"url":"/Patient/1"}}]}]}`
	}
	runValidateCases(t, []validateCase{
		{"responseCode alone is one assertion", ts(`{"warningOnly":false,"responseCode":"200"}`), nil},
		{"response alone is one assertion", ts(`{"warningOnly":false,"response":"okay"}`), nil},
		{"response and responseCode are two", ts(`{"warningOnly":false,"response":"okay","responseCode":"200"}`), []string{"invariant@TestScript.setup.action[0].assert"}},
	})
}

func TestFHIRPathChoiceOfUnknownTypeUsesDefinitions(t *testing.T) {
	t.Parallel()
	v, err := parseJSON([]byte(`{"responseCode":"200","valueString":"a","codeFoo":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ expr, want string }{
		// No R4 element is response[x]; value[x] is.
		{"response.count()", "0"},
		{"value.count()", "1"},
		{"code.count()", "0"},
	} {
		n, err := parseFHIRPath(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		focus := fpCollection{{v: &v}}
		got, err := n.eval(&fpContext{resource: &v, context: focus}, focus)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if s := renderCollection(got); s != tc.want {
			t.Errorf("%s = %s, want %s", tc.expr, s, tc.want)
		}
	}
}
