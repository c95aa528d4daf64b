package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// Through the server and the default policy: every R4 SearchParameter of
// every type /metadata lists as searchable is either answered (200 to some
// role that may search the type) and listed there, or refused with a 400
// OperationOutcome naming it, to every role, and not listed. Before the
// parameters were generated, DocumentReference?patient= and
// ExplanationOfBenefit?patient= were 400s though R4 defines them.
func TestFHIREveryR4SearchParameterIsAnsweredOrRefused(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRMatrixFixture(t, db)
		var who []string
		for _, role := range auth.Roles() {
			who = append(who, f.principal(t, "params-"+string(role), role, ""))
		}
		resp := f.do(t, who[0], "GET", "/fhir/R4/metadata", "")
		var cs struct {
			Rest []struct {
				Resource []struct {
					Type        string `json:"type"`
					Interaction []struct {
						Code string `json:"code"`
					} `json:"interaction"`
					SearchParam []struct {
						Name string `json:"name"`
					} `json:"searchParam"`
				} `json:"resource"`
			} `json:"rest"`
		}
		if resp.status != 200 || json.Unmarshal(resp.body, &cs) != nil || len(cs.Rest) != 1 {
			t.Fatalf("metadata: %d %s", resp.status, resp.body)
		}
		answered, refused, types := 0, 0, 0
		answeredSet := map[string]bool{}
		for _, r := range cs.Rest[0].Resource {
			searchable := false
			for _, in := range r.Interaction {
				searchable = searchable || in.Code == "search-type"
			}
			if !searchable || r.Type == "AuditEvent" {
				continue // AuditEvent is the audit log's own view
			}
			var searchers []string
			for _, w := range who {
				if f.do(t, w, "GET", "/fhir/R4/"+r.Type+"?_id=x-1", "").status == http.StatusOK {
					searchers = append(searchers, w)
				}
			}
			if len(searchers) == 0 {
				t.Errorf("%s is listed as searchable, but no role may search it", r.Type)
				continue
			}
			types++
			listed := map[string]bool{}
			for _, sp := range r.SearchParam {
				listed[sp.Name] = true
			}
			params := map[string]*record.Param{}
			for _, p := range record.ParamsOf(r.Type) {
				params[p.Name] = p
			}
			for _, sp := range fhir.SearchParams(r.Type) {
				path := "/fhir/R4/" + r.Type + "?" + url.Values{sp.Name: {searchValue(params[sp.Name], sp)}}.Encode()
				ok := false
				var last authzResponse
				for _, w := range searchers {
					last = f.do(t, w, "GET", path, "")
					if last.status == http.StatusOK {
						ok = true
						break
					}
					if last.status == http.StatusForbidden {
						continue // a patient this role may not search
					}
					var oo fhir.OperationOutcome
					if last.status != http.StatusBadRequest || json.Unmarshal(last.body, &oo) != nil || len(oo.Issue) != 1 ||
						len(oo.Issue[0].Expression) != 1 || oo.Issue[0].Expression[0] != sp.Name {
						t.Errorf("GET %s: %d %s, want 200 or a 400 naming %s", path, last.status, last.body, sp.Name)
					}
				}
				switch {
				case ok && listed[sp.Name]:
					answered++
					answeredSet[r.Type+"."+sp.Name] = true
				case !ok && !listed[sp.Name]:
					refused++
				case ok:
					t.Errorf("GET %s is answered, but /metadata does not list %s", path, sp.Name)
				default:
					t.Errorf("/metadata lists %s.%s, but every role that may search %s is refused it: %s", r.Type, sp.Name, r.Type, last.body)
				}
			}
		}
		t.Logf("%d searchable types: %d R4 parameters answered, %d refused", types, answered, refused)
		if answered < 300 {
			t.Errorf("only %d R4 parameters answered", answered)
		}
		for _, must := range []string{"DocumentReference.patient", "ExplanationOfBenefit.patient", "Observation.combo-code", "Patient.address-country"} {
			if !answeredSet[must] {
				t.Errorf("%s is not answered", must)
			}
		}
	})
}

// searchValue is a well-formed value for an R4 parameter (a PHI birth date
// takes an exact date; a reference that may be to a patient names an
// existing one).
func searchValue(p *record.Param, sp fhir.SearchParam) string {
	if p != nil && p.Spec == record.Date {
		return "2000-01-01"
	}
	switch sp.Kind {
	case "token":
		return "http://example.org/cs|x-1"
	case "string":
		return "abcd"
	case "date":
		return "ge2020-01-01"
	case "reference":
		// A search naming a patient is decided on that patient: the
		// fixture's patient of care team A, which every test user is in.
		if len(sp.Targets) > 0 && sp.Targets[0] != "Patient" {
			return sp.Targets[0] + "/x-1"
		}
		return "Patient/" + ownPatient
	case "number", "quantity":
		return "5"
	case "uri":
		return "http://example.org/x"
	}
	return "x"
}
