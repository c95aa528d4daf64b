package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// Chains and _has through the server and the default policy: every hop is
// a search by the caller. billing may not see a Patient's general
// practitioner nor a Procedure's reason, and may not search Observations;
// a chain or _has over those is refused (400 not-supported naming the
// parameter sent, or 403), whether it would match or not: without the
// check per hop, Encounter?patient.general-practitioner=Practitioner/prac-1
// and Patient?_has:Procedure:patient:reason-code=86406008 would single out
// pat-other, the one patient with both. Over elements billing sees, the
// same forms answer.
func TestFHIRChainsAreSearchesOfTheCaller(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRMatrixFixture(t, db)
		billing := f.principal(t, "chain-billing", auth.Billing, "")
		admin := f.principal(t, "chain-clinical-admin", auth.ClinicalAdmin, "")
		get := func(who, typ, key, value string) authzResponse {
			return f.do(t, who, "GET", "/fhir/R4/"+typ+"?"+url.Values{key: {value}}.Encode(), "")
		}
		for _, c := range []struct {
			who, typ, key, value string
			status               int
		}{
			{billing, "Encounter", "patient.general-practitioner", "Practitioner/prac-1", 400},
			{billing, "Encounter", "patient.general-practitioner", "Practitioner/none", 400},
			{billing, "Patient", "_has:Procedure:patient:reason-code", "http://snomed.info/sct|86406008", 400},
			{billing, "Patient", "_has:Procedure:patient:reason-code", "00000000", 400},
			{admin, "Patient", "_has:Encounter:patient:reason-code", "http://snomed.info/sct|86406008", 400},
			{billing, "Patient", "_has:Observation:patient:code", "x", 403},
		} {
			resp := get(c.who, c.typ, c.key, c.value)
			if resp.status != c.status {
				t.Errorf("%s?%s: %d %s, want %d", c.typ, c.key, resp.status, resp.body, c.status)
				continue
			}
			if c.status == 400 {
				var oo fhir.OperationOutcome
				if json.Unmarshal(resp.body, &oo) != nil || len(oo.Issue) != 1 || oo.Issue[0].Code != "not-supported" ||
					len(oo.Issue[0].Expression) != 1 || oo.Issue[0].Expression[0] != c.key {
					t.Errorf("%s?%s: %s, want not-supported naming %s", c.typ, c.key, resp.body, c.key)
				}
			}
		}
		for _, c := range []struct {
			who, typ, key, value string
			want                 []string
		}{
			{billing, "Encounter", "patient.identifier", "urn:eg:nid|NID-" + otherPatient, []string{"enc." + otherPatient}},
			{billing, "Patient", "_has:Procedure:patient:identifier", "urn:proc|" + otherPatient, []string{otherPatient}},
			{billing, "Procedure", "patient.family", fhirMatrixFamily[otherPatient], []string{"proc." + otherPatient}},
		} {
			resp := get(c.who, c.typ, c.key, c.value)
			var b struct {
				Entry []struct {
					Resource struct{ ID string } `json:"resource"`
				} `json:"entry"`
			}
			if resp.status != http.StatusOK || json.Unmarshal(resp.body, &b) != nil {
				t.Errorf("%s?%s: %d %s", c.typ, c.key, resp.status, resp.body)
				continue
			}
			var got []string
			for _, e := range b.Entry {
				got = append(got, e.Resource.ID)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("%s?%s = %v, want %v", c.typ, c.key, got, c.want)
			}
		}
	})
}
