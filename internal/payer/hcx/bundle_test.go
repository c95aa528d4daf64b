package hcx

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

const sharedData = "../../../../shared/data"

// The main resource each sample is about, where the file says it plainly.
var knownMain = map[string]string{
	"claims.json":                                                "Claim",
	"claimresponse.json":                                         "ClaimResponse",
	"coverageeligibility.json":                                   "CoverageEligibilityRequest",
	"coverageeligibilityresponse.json":                           "CoverageEligibilityResponse",
	"paymentnotice.json":                                         "PaymentNotice",
	"Bundle-ClaimRequestDocument-example-01.json":                "Claim",
	"Bundle-CoverageEligibilityResponseDocument-example-01.json": "CoverageEligibilityResponse",
	"13a-Payment-Reconciliation.json":                            "PaymentReconciliation",
	"14b-Eligibility-Response-Ben-Val.json":                      "CoverageEligibilityResponse",
	"17a-Cancel-Request.json":                                    "Task",
	"18a-Communication-Request.json":                             "CommunicationRequest",
	"2b-First-Response-for-first-Preauth-Dental-Request.json":    "ClaimResponse",
}

func TestEveryReferenceBundleAndResourceReadsWithItsMainResource(t *testing.T) {
	t.Parallel()
	var files []string
	for _, dir := range []string{"hcx/spec-examples", "hcx/platform-samples", "nphies"} {
		m, _ := filepath.Glob(filepath.Join(sharedData, dir, "*.json"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Skip("reference data ../shared/data is absent")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ReadBundle(raw)
			if err != nil {
				t.Fatalf("ReadBundle: %v", err)
			}
			if !exchangeTypes[r.MainType] {
				t.Errorf("main resource %s is not an exchange resource", r.MainType)
			}
			if want, ok := knownMain[filepath.Base(f)]; ok && r.MainType != want {
				t.Errorf("main resource %s, want %s", r.MainType, want)
			}
			var main struct {
				ResourceType string `json:"resourceType"`
			}
			if err := json.Unmarshal(r.Main, &main); err != nil || main.ResourceType != r.MainType {
				t.Errorf("Main holds a %q, MainType says %s", main.ResourceType, r.MainType)
			}
			if len(r.Entries[r.MainType]) == 0 {
				t.Error("the main resource is not among the entries")
			}
			leaves := stringLeaves(raw)
			for _, w := range r.Warnings {
				for _, v := range leaves {
					if strings.Contains(w, v) {
						t.Errorf("warning %q repeats a value of the payload", w)
					}
				}
			}
		})
	}
}

// stringLeaves returns the payload's string values long enough to be
// telling (names, identifiers, dates), to check no warning repeats one.
func stringLeaves(raw []byte) []string {
	var v any
	_ = json.Unmarshal(raw, &v)
	var out []string
	var walk func(any, string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, k)
			}
		case []any:
			for _, c := range x {
				walk(c, key)
			}
		case string:
			// resourceType values are type names, which warnings do name.
			if len(x) >= 6 && key != "resourceType" && !fhir.IsResourceType(x) {
				out = append(out, x)
			}
		}
	}
	walk(v, "")
	return out
}

func TestReadBundleWarnsOfWhatStrictR4Refuses(t *testing.T) {
	t.Parallel()
	doc := `{"resourceType":"Bundle","type":"document","entry":[
		{"resource":{"resourceType":"Composition","id":"c1","status":"final","type":{"text":"x"},"title":"t",
			"section":[{"entry":[{"reference":"ClaimResponse/cr1"}]}]}},
		{"fullUrl":"Patient/p1","resource":{"resourceType":"Patient","id":"p1"}},
		{"fullUrl":"ClaimResponse/cr1","resource":{"resourceType":"ClaimResponse","id":"cr1","status":"active"}},
		{"fullUrl":"x"}
	]}`
	r, err := ReadBundle([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if r.MainType != "ClaimResponse" || r.BundleType != "document" || len(r.Entries["Patient"]) != 1 {
		t.Fatalf("reading: main %s, type %s, entries %v", r.MainType, r.BundleType, len(r.Entries))
	}
	for _, w := range []string{
		"Bundle.identifier: absent",
		"Bundle.timestamp: absent (required of a document)",
		"Bundle.entry[0].fullUrl: absent",
		"Bundle.entry[0].resource(Composition).date: absent (required in R4)",
		"Bundle.entry[0].resource(Composition).author: absent (required in R4)",
		"Bundle.entry[2].resource(ClaimResponse).insurer: absent (required in R4)",
		"Bundle.entry[3].resource: absent or not an object; skipped",
	} {
		if !contains(r.Warnings, w) {
			t.Errorf("no warning %q in %q", w, r.Warnings)
		}
	}

	claim := `{"resourceType":"Bundle","type":"collection","identifier":{"value":"b"},"entry":[
		{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Claim","status":"active"}}]}`
	r, err = ReadBundle([]byte(claim))
	if err != nil || r.MainType != "Claim" || !contains(r.Warnings, "Bundle.entry[0].resource(Claim).provider: absent (required in R4)") {
		t.Errorf("a Claim without provider: %v, %+v", err, r.Warnings)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestReadBundleRefusesOnlyWhatItCannotRead(t *testing.T) {
	t.Parallel()
	for name, raw := range map[string]string{
		"not JSON":                  `<Bundle/>`,
		"a JSON array":              `[]`,
		"no resourceType":           `{"type":"collection"}`,
		"not a FHIR resource":       `{"resourceType":"Invoice2"}`,
		"a Bundle without entries":  `{"resourceType":"Bundle","type":"collection"}`,
		"a Bundle with empty entry": `{"resourceType":"Bundle","type":"collection","entry":[]}`,
		"only unreadable entries":   `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"x":1}}]}`,
	} {
		if _, err := ReadBundle([]byte(raw)); !errs.Is(err, errs.Invalid) {
			t.Errorf("%s: ReadBundle = %v, want invalid", name, err)
		}
	}
}

func TestNewBundleBuildsAValidR4Collection(t *testing.T) {
	t.Parallel()
	claim := `{"resourceType":"Claim","id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","status":"active",
		"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"institutional"}]},
		"use":"claim","patient":{"reference":"Patient/p-1"},"created":"2026-12-01",
		"provider":{"reference":"Organization/o-1"},"priority":{"coding":[{"code":"normal"}]},
		"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/c-1"}}]}`
	patient := `{"resourceType":"Patient","id":"p-1","active":true}`
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	b, err := newBundle(now, []byte(claim), []byte(patient), []byte(`{"resourceType":"Organization","name":"H"}`))
	if err != nil {
		t.Fatal(err)
	}
	if issues := fhir.Validate(b); issues.HasErrors() {
		t.Fatalf("the built Bundle is not valid R4: %+v", issues)
	}
	r, err := ReadBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.MainType != "Claim" || r.BundleType != "collection" || len(r.Warnings) != 0 {
		t.Errorf("reading back: main %s, type %s, warnings %q", r.MainType, r.BundleType, r.Warnings)
	}
	var got struct {
		Identifier struct{ Value string } `json:"identifier"`
		Timestamp  string                 `json:"timestamp"`
		Entry      []struct {
			FullURL string `json:"fullUrl"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(b, &got)
	if !strings.HasPrefix(got.Identifier.Value, "urn:uuid:") || got.Timestamp != "2026-12-07T10:00:00Z" ||
		got.Entry[0].FullURL != "urn:uuid:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" || !strings.HasPrefix(got.Entry[1].FullURL, "urn:uuid:") {
		t.Errorf("bundle: %+v", got)
	}
	again, _ := newBundle(now, []byte(claim), []byte(patient))
	var g2 struct {
		Entry []struct {
			FullURL string `json:"fullUrl"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(again, &g2)
	if g2.Entry[1].FullURL != got.Entry[1].FullURL {
		t.Error("the same resource got another fullUrl in another Bundle")
	}

	for name, tc := range map[string][][]byte{
		"an unknown element":         {[]byte(strings.Replace(claim, `"use":"claim"`, `"use":"claim","colour":"red"`, 1))},
		"a bad code":                 {[]byte(strings.Replace(claim, `"use":"claim"`, `"use":"sometimes"`, 1))},
		"a Patient as main resource": {[]byte(patient)},
		"not JSON":                   {[]byte(`{`)},
	} {
		if _, err := NewBundle(tc[0], tc[1:]...); err == nil {
			t.Errorf("%s: NewBundle accepted", name)
		}
	}
}
