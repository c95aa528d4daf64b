package fhir

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// sampleDir finds ../shared/data from the module root (two levels up from
// this package), or skips.
func sampleDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("reference data not found at %s (see the shared data README): %v", dir, err)
	}
	return dir
}

// invalidSamples lists every sample file that breaks the R4 rules, with
// element paths its errors must name. The *Invalid*/*Missing* files are
// here, and so are files whose names promise nothing but whose content is
// not valid R4 (STU3 shapes, missing required elements, examples that were
// never validated). Every sample not listed must validate without errors.
var invalidSamples = map[string][]string{
	// Named as invalid by their authors.
	"fhir-r4/Normative-Bundle-BatchWithInvalidEleEnums.json":                     {"Bundle.entry[0].resource.gender1", "Bundle.entry[0].resource.birthDate1", "Bundle.entry[4].resource.name[0].use1"},
	"fhir-r4/Normative-Bundle-InvalidBundleType.json":                            {"Bundle.type"},
	"fhir-r4/Normative-Bundle-MissingIdentifier.json":                            {"Bundle.entry[0].fullUrl"},                    // "urn:uuid:" with no UUID
	"fhir-r4/Normative-Bundle-TransactionWithInvalidProcessingRecord.json":       {"Bundle.entry[0].resource.subject.reference"}, // urn:uuid:patient-001
	"fhir-r4/Normative-InvalidObservation.json":                                  {"Observation.text", "Observation._text"},      // text as a string
	"fhir-r4/Normative-ObservationWithInvalidStatus.json":                        {"Observation.status", "Observation.code"},
	"fhir-r4/Normative-PatientMissingResourceType.json":                          {"resourceType"},
	"fhir-r4/Normative-SearchParameterInvalidBase.json":                          {"SearchParameter.base[0]"},                 // "foo" is no resource type
	"fhir-r4/Normative-SearchParameterMissingBase.json":                          {"SearchParameter.base"},                    // []
	"fhir-r4/Normative-SearchParameterMissingExpression.json":                    {"SearchParameter.expression"},              // ""
	"fhir-r4/Normative-CompositeCustomTokenDateTimeSearchParameterStu3.json":     {"SearchParameter.component[0].definition"}, // STU3 Reference, R4 canonical
	"fhir-r4/Normative-CompositeCustomTokenNumberNumberSearchParameterStu3.json": {"SearchParameter.component[0].definition"},
	"fhir-r4/Normative-CompositeCustomTokenQuantitySearchParameterStu3.json":     {"SearchParameter.component[0].definition"},
	"fhir-r4/Normative-CompositeCustomTokenStringSearchParameterStu3.json":       {"SearchParameter.component[0].definition"},

	// Not named as invalid, but not valid R4.
	"fhir-r4/Normative-Bundle-Batch.json":                                          {"Bundle.entry[4].fullUrl"},                       // bdl-7: fullUrl twice
	"fhir-r4/Normative-Bundle-BinaryPatch.json":                                    {"Bundle.entry[1].fullUrl"},                       // bdl-7
	"fhir-r4/Normative-Bundle-BatchWithConditionalUpdateByIdentifier.json":         {"Bundle.entry[0].resource.identifier[0].system"}, // ""
	"fhir-r4/Normative-Bundle-TransactionWithConditionalCreateAndReference.json":   {"Bundle.entry[0].resource.identifier[0].system", "Bundle.entry[1].resource.series[0].modality"},
	"fhir-r4/Normative-Bundle-TransactionWithConditionalUpdateAndReference.json":   {"Bundle.entry[0].resource.identifier[0].system", "Bundle.entry[1].resource.series[0].modality"},
	"fhir-r4/Normative-Includes-TestResources.json":                                {"Bundle.entry[30].resource.result"}, // STU3 single result
	"fhir-r4/Normative-Observation-For-Patient-f001.json":                          {"Observation.interpretation"},       // STU3 single interpretation
	"fhir-r4/Normative-ObservationWithBloodPressure.json":                          {"Observation.interpretation", "Observation.component[0].interpretation"},
	"fhir-r4/Normative-ProvenanceHeader.json":                                      {"Provenance.target"}, // a header fragment, not a resource
	"fhir-r4/Normative-StructureDefinition-us-core-patient-v6.json":                {"StructureDefinition.text.div"},
	"fhir-r4/Normative-TokenOverflowChargeItem.json":                               {"ChargeItem.encounter", "ChargeItem.totalPriceComponent"}, // R5 elements
	"fhir-r4/Normative-WeightInGrams.json":                                         {"Observation.text.div"},
	"fhir-r4/R4-ResourceWrapperNoVersion.json":                                     {"resourceType"}, // a storage wrapper
	"fhir-r4/R4-SmartPatientA.json":                                                {"Bundle.entry[10].resource.participant[0].status", "Bundle.entry[11].resource.series[0].modality"},
	"fhir-r4/R4-practitionerrole-questionnaire.json":                               {"Questionnaire.item[0].item[0].linkId"},
	"fhir-r4/R4-specimendefinition-questionnaire.json":                             {"Questionnaire.item[0].item[0].linkId"},
	"fhir-r4/Normative-Sequence.json":                                              {"MolecularSequence.referenceSeq"},                  // msq-5: chromosome without genomeBuild
	"fhir-r4/R4-devicemetric-example.json":                                         {"DeviceMetric.parent.reference"},                   // DeviceDefinition where R4 allows Device
	"fhir-r4/R4-deviceusestatement-example.json":                                   {"DeviceUseStatement.reasonReference[0].reference"}, // Procedure is no allowed target
	"nphies/13a-Payment-Reconciliation.json":                                       {"Bundle.entry[1].resource.paymentIdentifier"},      // array for a 0..1
	"hcx/platform-samples/coverageeligibilityresponse.json":                        {"Bundle.entry[1].resource.insurer", "Bundle.entry[1].resource.outcome", "Bundle.entry[1].resource.request"},
	"hcx/spec-examples/Bundle-CoverageEligibilityResponseDocument-example-01.json": {"Bundle.text", "Bundle.entry[1].resource.insurer"},
	"hcx/spec-examples/insurancePlan1.json":                                        {"InsurancePlan.id", "InsurancePlan.type", "InsurancePlan.coverageArea"},
}

// judgedValid are sample files whose names suggest a defect that is not a
// structural one, so they validate: the defect is for the server's search
// or routing logic to catch, not for the R4 definitions.
var judgedValid = map[string]string{
	"fhir-r4/Normative-SearchParameterExpressionWrongProperty.json":        "expression names an element Encounter lacks: FHIRPath semantics, not structure",
	"fhir-r4/Normative-SearchParameterUnsupportedType.json":                "type quantity on a reference path: a search-engine limitation; quantity is a valid search-param-type",
	"fhir-r4/Normative-Bundle-TransactionWithInvalidProcessingRoutes.json": "a conditional DELETE and a POST to ValueSet/$lookup: routes a server may refuse, in a well-formed Bundle",
}

// notResources are sample files that hold something other than a FHIR
// resource. Validate must reject them (there is no resourceType), and the
// tests say why they are there.
var notResources = map[string]string{
	"hcx/jwe-vector/response_outgoing.json": "an HCX protocol message: a compact JWE payload and a protocol response",
	"hcx/jwe-vector/response_incoming.json": "decrypted HCX headers and payload, printed as Python dicts inside strings",
}

func sampleFiles(t *testing.T) (string, []string) {
	t.Helper()
	dir := sampleDir(t)
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".json") {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return dir, files
}

func TestSamplesValidateAsJudged(t *testing.T) {
	dir, files := sampleFiles(t)
	var valid, invalid, other int
	for _, name := range files {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		issues := Validate(raw)
		errPaths := map[string]bool{}
		for _, is := range issues {
			if is.Severity == SeverityError || is.Severity == SeverityFatal {
				for _, e := range is.Expression {
					errPaths[e] = true
				}
			}
		}
		switch want, isInvalid := invalidSamples[name]; {
		case notResources[name] != "":
			other++
			if !issues.HasErrors() {
				t.Errorf("%s (%s) was accepted as a resource", name, notResources[name])
			}
		case isInvalid:
			invalid++
			if !issues.HasErrors() {
				t.Errorf("%s: accepted, want errors at %v", name, want)
				continue
			}
			for _, p := range want {
				if !errPaths[p] {
					t.Errorf("%s: no error names %s; errors: %v", name, p, issues)
				}
			}
		default:
			valid++
			if issues.HasErrors() {
				t.Errorf("%s: want valid (%s), got %v", name, judgedValid[name], issues)
			}
		}
	}
	for name := range invalidSamples {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("expectation for %s, which is not in the sample data", name)
		}
	}
	t.Logf("%d sample files: %d valid, %d invalid, %d not resources", len(files), valid, invalid, other)
}

// TestSamplesRoundTrip stores every valid sample the way the server does
// (set id and meta) and checks that everything else comes back unchanged
// and still valid.
func TestSamplesRoundTrip(t *testing.T) {
	dir, files := sampleFiles(t)
	when := time.Date(2026, 11, 25, 17, 0, 0, 123000000, time.UTC)
	for _, name := range files {
		if invalidSamples[name] != nil || notResources[name] != "" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		stored, err := SetIDAndMeta(raw, "sample-1", "7", when)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if issues := Validate(stored); issues.HasErrors() {
			t.Errorf("%s: stored form is invalid: %v", name, issues)
		}
		env, err := ReadEnvelope(stored)
		if err != nil || env.ID != "sample-1" || env.VersionID != "7" || env.LastUpdated != "2026-11-25T17:00:00.123Z" {
			t.Errorf("%s: envelope %+v, %v", name, env, err)
		}
		if !equalExceptIDMeta(t, raw, stored) {
			t.Errorf("%s: stored form differs beyond id and meta", name)
		}
	}
}

// equalExceptIDMeta compares two resources ignoring id, meta.versionId and
// meta.lastUpdated (and meta itself when it only held those).
func equalExceptIDMeta(t *testing.T, a, b []byte) bool {
	t.Helper()
	strip := func(raw []byte) jsonValue {
		v, err := parseJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		var kept []jsonMember
		for _, m := range v.members {
			switch m.key {
			case "id":
				continue
			case "meta":
				var mm []jsonMember
				for _, x := range m.val.members {
					if x.key != "versionId" && x.key != "lastUpdated" {
						mm = append(mm, x)
					}
				}
				if len(mm) == 0 {
					continue
				}
				m.val.members = mm
			}
			kept = append(kept, m)
		}
		v.members = kept
		return v
	}
	va, vb := strip(a), strip(b)
	return equalValues(&va, &vb)
}
