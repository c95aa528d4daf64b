package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The served CapabilityStatement follows the access policy: a type no role
// may touch is not listed, and delete appears only where a role may delete.
func TestMetadataFollowsTheAccessPolicy(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	policy := auth.DefaultPolicy()
	ring := newTestRing(t, db)
	srv := New(Options{DB: db, Access: auth.NewAccess(db, policy, nil), Record: record.New(db, ring, record.Options{})})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/fhir/R4/metadata")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metadata %d %s", resp.StatusCode, body)
	}
	var cs struct {
		Rest []struct {
			Security *struct{ Description string } `json:"security"`
			Resource []struct {
				Type        string `json:"type"`
				Interaction []struct {
					Code string `json:"code"`
				} `json:"interaction"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(body, &cs); err != nil || len(cs.Rest) != 1 {
		t.Fatalf("decode %v", err)
	}
	if cs.Rest[0].Security == nil || cs.Rest[0].Security.Description == "" {
		t.Fatal("no rest.security")
	}
	grants := policy.Grants()
	listed := map[string]bool{}
	for _, r := range cs.Rest[0].Resource {
		listed[r.Type] = true
		actions := grants[r.Type]
		if len(actions) == 0 {
			t.Errorf("%s is listed, but no role may touch it", r.Type)
		}
		for _, in := range r.Interaction {
			if in.Code == "delete" && !slices.Contains(actions, auth.ActionDelete) {
				t.Errorf("%s lists delete, which no role may do", r.Type)
			}
		}
	}
	for _, typ := range []string{"Patient", "Claim", "Encounter", "Coverage"} {
		if !listed[typ] {
			t.Errorf("%s is not listed", typ)
		}
	}
	for _, typ := range []string{"OperationOutcome", "Parameters"} {
		if listed[typ] {
			t.Errorf("%s is listed", typ)
		}
	}
	// Exactly the served types: what is listed is answered, and every
	// other type is 404 not-supported (fhir_types.go).
	var types []string
	for typ := range listed {
		types = append(types, typ)
	}
	slices.Sort(types)
	if served := policy.ServedTypes(); !slices.Equal(types, served) {
		t.Errorf("listed %v\nserved %v", types, served)
	}
	for _, typ := range []string{"Bundle", "MessageHeader", "Composition", "CareTeam", "HealthcareService", "Flag", "Binary", "VisionPrescription", "Group", "ExplanationOfBenefit", "PaymentNotice"} {
		if !listed[typ] {
			t.Errorf("%s, which real exchanges carry, is not listed", typ)
		}
	}
}
