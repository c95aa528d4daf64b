package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A FHIR Consent of scope patient-privacy is enforced: writing it through
// /fhir/R4 changes what billing may do with the patient's records, its
// next version changes it again, and deleting it withdraws it.
func TestFHIRConsentIsEnforced(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ring := newTestRing(t, db)
		signer, _, _ := audit.GenerateSigner()
		log, err := audit.New(ctx, db, audit.Options{Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = log.Close(context.Background()) })
		access := auth.NewAccess(db, nil, nil)
		rec := record.New(db, ring, record.Options{Hooks: []record.WriteHook{auth.ConsentHook{Consents: access.Consents}}})
		principals := map[string]*auth.Principal{
			"cadmin":  {Subject: "cadmin-c", Kind: auth.KindUser, Role: auth.ClinicalAdmin, Scopes: []string{"user/*.cruds"}},
			"billing": {Subject: "biller-c", Kind: auth.KindUser, Role: auth.Billing, Scopes: []string{"user/*.cruds"}},
		}
		srv := New(Options{DB: db, Access: access, Audit: log, Record: rec,
			TestPrincipal: func(r *http.Request) *auth.Principal { return principals[r.Header.Get(testPrincipalHeader)] }})
		ts := httptest.NewServer(srv.Handler())
		defer ts.Close()
		do := func(who, method, path, body string) (int, []byte) {
			t.Helper()
			req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
			req.Header.Set(testPrincipalHeader, who)
			if body != "" {
				req.Header.Set("Content-Type", "application/fhir+json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, b
		}
		billingMay := func() int {
			code, _ := do("billing", "GET", "/api/v1/access/check?resource=Claim&action=read&patient=pat-fc", "")
			return code
		}
		if got := billingMay(); got != http.StatusOK {
			t.Fatalf("before any consent billing gets %d", got)
		}
		consent := func(status, typ, purpose string) string {
			p := ""
			if purpose != "" {
				p = `,"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"` + purpose + `"}]`
			}
			return `{"resourceType":"Consent","status":"` + status + `",
"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
"patient":{"reference":"Patient/pat-fc"},
"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTOUT"}]},
"provision":{"type":"` + typ + `"` + p + `}}`
		}
		// The patient refuses use of their record for payment.
		code, body := do("cadmin", "POST", "/fhir/R4/Consent", consent("active", "deny", "HPAYMT"))
		if code != http.StatusCreated {
			t.Fatalf("create Consent: %d %s", code, body)
		}
		var created struct{ ID string }
		_ = json.Unmarshal(body, &created)
		if got := billingMay(); got == http.StatusOK {
			t.Fatal("billing still reaches the patient after a FHIR Consent refused payment")
		}
		set, err := access.Consents.Get(ctx, "pat-fc")
		if err != nil || len(set.Consents) != 1 || set.Consents[0].Source != "Consent/"+created.ID {
			t.Fatalf("consent store %+v %v", set, err)
		}
		// A new version that permits payment again.
		upd := strings.Replace(consent("active", "permit", "HPAYMT"), `"resourceType":"Consent"`, `"resourceType":"Consent","id":"`+created.ID+`"`, 1)
		if code, body := do("cadmin", "PUT", "/fhir/R4/Consent/"+created.ID, upd); code != http.StatusOK {
			t.Fatalf("update Consent: %d %s", code, body)
		}
		if got := billingMay(); got != http.StatusOK {
			t.Fatalf("after the permit billing gets %d", got)
		}
		// Refused again, then the Consent is made inactive: withdrawn.
		deny := strings.Replace(consent("active", "deny", ""), `"resourceType":"Consent"`, `"resourceType":"Consent","id":"`+created.ID+`"`, 1)
		if code, body := do("cadmin", "PUT", "/fhir/R4/Consent/"+created.ID, deny); code != http.StatusOK {
			t.Fatalf("update Consent: %d %s", code, body)
		}
		if got := billingMay(); got == http.StatusOK {
			t.Fatal("a deny without purposes did not cover payment")
		}
		inactive := strings.Replace(consent("inactive", "deny", ""), `"resourceType":"Consent"`, `"resourceType":"Consent","id":"`+created.ID+`"`, 1)
		if code, body := do("cadmin", "PUT", "/fhir/R4/Consent/"+created.ID, inactive); code != http.StatusOK {
			t.Fatalf("update Consent: %d %s", code, body)
		}
		if got := billingMay(); got != http.StatusOK {
			t.Fatalf("an inactive Consent still refuses: %d", got)
		}
		set, _ = access.Consents.Get(ctx, "pat-fc")
		if len(set.Consents) != 0 || set.Version < 4 {
			t.Fatalf("consent store after withdrawal %+v", set)
		}
		// A research permit needs the purpose named: a blanket permit does
		// not open research.
		blanket := strings.Replace(consent("active", "permit", ""), `"resourceType":"Consent"`, `"resourceType":"Consent","id":"`+created.ID+`"`, 1)
		if code, body := do("cadmin", "PUT", "/fhir/R4/Consent/"+created.ID, blanket); code != http.StatusOK {
			t.Fatalf("update Consent: %d %s", code, body)
		}
		if d, _ := access.Consents.ConsentAt(ctx, "pat-fc", auth.PurposeResearch, time.Now()); d != auth.ConsentNone {
			t.Fatalf("a blanket permit recorded research %s", d)
		}
	})
}
