package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
	"github.com/careflow/careflow/internal/terminology"
)

// quietPayer acknowledges every message and never answers: the journeys
// of these tests wait on the payer, which is all the routes need.
type quietPayer struct{}

func (quietPayer) Send(_ context.Context, req payer.Request) (payer.Ack, error) {
	return payer.Ack{APICallID: req.IdempotencyKey, CorrelationID: req.CorrelationID, Timestamp: time.Now()}, nil
}

type onePayer struct{}

const rcmTestPayer = "payer-1@hcx"

func (onePayer) Payers(context.Context) ([]payer.Participant, error) {
	return []payer.Participant{{Code: rcmTestPayer, Name: "Test Payer"}}, nil
}

func (onePayer) Lookup(_ context.Context, code string) (payer.Participant, bool, error) {
	return payer.Participant{Code: rcmTestPayer, Name: "Test Payer"}, code == rcmTestPayer, nil
}

// flatFees prices every code at 100.00 EGP and requires no pre-authorization.
type flatFees struct{}

func (flatFees) Price(context.Context, store.Querier, string, string, string, time.Time) (rcm.Price, bool, error) {
	return rcm.Price{Amount: 10000, Currency: "EGP", ScheduleVersion: "flat"}, true, nil
}

func (flatFees) PreauthRequired(context.Context, store.Querier, string, string, string, time.Time) (bool, error) {
	return false, nil
}

func (flatFees) Currency(context.Context, store.Querier, string) (string, error) { return "EGP", nil }

// The national IDs registered under the fixture's patient ids.
var rcmNationalIDs = map[string]string{ownPatient: "29001011234567", otherPatient: "28505150100133",
	"pat-assigned": "29203150100024", "pat-glass": "29306200100046", "pat-expired": "29407250100068"}

type rcmFixture struct {
	*wfFixture
	svc *rcm.Service
	// fees are the payers' schedules GET /api/v1/rcm/payers reads (the
	// journeys here are priced flat).
	fees *rcm.Fees
}

func newRCMFixture(t *testing.T, db *store.DB) *rcmFixture {
	t.Helper()
	f := newAuthzFixture(t, db, nil)
	clock := &offsetClock{}
	var svc *rcm.Service
	eng, deps := newTestEngineWith(t, db, clock.Now, func(reg *engine.Registry, e *engine.Engine, deps engineDeps) {
		var err error
		svc, err = rcm.New(rcm.Config{DB: db, Engine: e,
			Records: careaccess.RunRecords{Record: deps.rec, Access: &careaccess.Services{Authorizer: f.access.Authorizer, Policy: f.access.Policy, Audit: f.log}},
			Terms:   terminology.NewService(db, terminology.Options{}), Payer: quietPayer{}, Directory: onePayer{}, Fees: flatFees{},
			Provider: rcm.Provider{Code: "provider-1@hcx", Name: "Test Hospital"}, Blind: deps.ring})
		if err == nil {
			err = rcm.Register(reg, svc)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	// The fixture's patients exist in the record, each with a national ID,
	// so that a journey's registration finds them by it.
	for id, nid := range rcmNationalIDs {
		body := fmt.Sprintf(`{"resourceType":"Patient","id":%q,"identifier":[{"system":%q,"value":%q}],"name":[{"family":"Test"}]}`,
			id, rcm.SystemNationalID, nid)
		if _, _, err := deps.rec.Update(context.Background(), nil, "Patient", id, []byte(body), ""); err != nil {
			t.Fatal(err)
		}
	}
	fees := rcm.NewFees(db, nil)
	f.srv = New(Options{DB: db, Access: f.access, Audit: f.log, Engine: eng, RCM: svc,
		Fees: fees, Batches: rcm.NewBatches(db, nil), Payers: onePayer{},
		TestPrincipal: func(r *http.Request) *auth.Principal {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.principals[r.Header.Get(testPrincipalHeader)]
		}})
	f.ts = httptest.NewServer(f.srv.Handler())
	t.Cleanup(f.ts.Close)
	return &rcmFixture{wfFixture: &wfFixture{authzFixture: f, eng: eng, deps: deps, clock: clock}, svc: svc, fees: fees}
}

// journeyBody is the POST /journeys body registering patient (by the
// national ID it has in the fixture).
func journeyBody(patient string) string {
	nid := rcmNationalIDs[patient]
	gender := "female"
	if (nid[12]-'0')%2 == 1 {
		gender = "male"
	}
	b, _ := json.Marshal(rcm.JourneyRequest{Kind: rcm.KindStandard,
		Patient:   rcm.PatientInput{NationalID: nid, Family: "Test", Gender: gender},
		Encounter: rcm.EncounterInput{Start: "2026-03-02"}, DiagnosisCodes: []string{"E11.9"}, ProcedureCodes: []string{"99213"},
		Insurance: rcm.InsuranceInput{Payer: rcmTestPayer, MemberID: "M-1"}})
	return string(b)
}

// journey starts a journey of patient as billing (test set-up).
func (f *rcmFixture) journey(t *testing.T, patient string) *rcm.Journey {
	t.Helper()
	var req rcm.JourneyRequest
	if err := json.Unmarshal([]byte(journeyBody(patient)), &req); err != nil {
		t.Fatal(err)
	}
	svc := &careaccess.Services{Authorizer: f.access.Authorizer, Policy: f.access.Policy, Audit: f.log}
	g := svc.For(careaccess.Caller{Principal: &auth.Principal{Subject: "setup-billing", Kind: auth.KindUser, Role: auth.Billing,
		Scopes: []string{"user/*.cruds"}}, RequestID: "setup"})
	j, _, err := f.svc.StartJourney(context.Background(), g, req, rcm.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Patient != patient {
		t.Fatalf("the journey registered %s, not the fixture's %s", j.Patient, patient)
	}
	return j
}

// TestRCMAuthorizationMatrix drives testdata/authz_matrix_rcm.csv through
// the real server: the status, the reason of a 403, a journey out of reach
// answered as a missing one, and the audit entries of each request.
func TestRCMAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	rows := readRecordMatrix(t, "authz_matrix_rcm.csv", "{journey}", "{start:{patient}}")
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.method+" "+strings.ReplaceAll(r.path, "{journey}", "{id}")] = true
	}
	for _, p := range New(Options{}).Patterns() {
		if strings.Contains(p, " /api/v1/rcm/journeys") && !covered[p] {
			t.Errorf("route %s has no row in the revenue-cycle matrix", p)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newRCMFixture(t, db)
		for i, row := range rows {
			t.Run(fmt.Sprintf("line%03d_%s_%s", row.line, row.role, row.method), func(t *testing.T) {
				who := ""
				if row.role != "anonymous" {
					who = f.principal(t, fmt.Sprintf("rrow%03d-%s", i, row.role), auth.Role(row.role), row.scopes)
				}
				patient := map[string]string{"own": ownPatient, "other": otherPatient, "assigned": "pat-assigned",
					"glass": "pat-glass", "expired": "pat-expired"}[row.patient]
				f.relate(t, who, row.role, row.patient, patient)
				path, body := row.path, row.body
				if strings.Contains(body, "{start:{patient}}") {
					body = journeyBody(patient)
				}
				if strings.Contains(path, "{journey}") {
					// Made before the row's consent is set: set-up is not
					// the row's access.
					f.setConsent(t, patient, "none")
					path = strings.ReplaceAll(path, "{journey}", f.journey(t, patient).ID)
				}
				if patient != "" {
					f.setConsent(t, patient, row.consent)
				}
				resp := f.do(t, who, row.method, path, body)
				if resp.status != row.expect {
					t.Fatalf("%s\nstatus %d, want %d: %s", row, resp.status, row.expect, resp.body)
				}
				var p Problem
				switch row.expect {
				case http.StatusForbidden:
					if err := json.Unmarshal(resp.body, &p); err != nil || !strings.Contains(p.Detail, "("+row.reason+")") {
						t.Fatalf("%s\nproblem %s does not name the reason %s", row, resp.body, row.reason)
					}
				case http.StatusNotFound:
					if err := json.Unmarshal(resp.body, &p); err != nil || p.Detail != "no such journey" {
						t.Fatalf("%s\na journey out of reach must look missing: %s", row, resp.body)
					}
				}
				entries := f.auditOf(t, resp.requestID)
				if row.expect == http.StatusUnauthorized {
					if len(entries) != 0 {
						t.Fatalf("%s\nwrote %d audit entries, want none", row, len(entries))
					}
					return
				}
				if len(entries) == 0 {
					t.Fatalf("%s\nno audit entry for request %s", row, resp.requestID)
				}
				denied := row.expect == http.StatusForbidden || row.expect == http.StatusNotFound
				found := false
				for _, e := range entries {
					if e.Actor != who || e.Role != row.role {
						t.Fatalf("%s\naudit entry %+v is not the caller's", row, e)
					}
					if e.ResourceType == rcm.JourneyType && (e.Outcome == audit.OutcomeDenied) == denied {
						found = true
					}
				}
				if !found && row.expect != http.StatusForbidden {
					t.Fatalf("%s\nno %v Journey entry among %+v", row, map[bool]string{true: "denied", false: "allowed"}[denied], entries)
				}
			})
		}
	})
}

// Billing starts a journey over HTTP; the same Idempotency-Key returns the
// first journey; a physician outside the patient's care team gets 404.
func TestRCMJourneyRoutes(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newRCMFixture(t, db)
		biller := f.principal(t, "biller", auth.Billing, "")
		post := func(key string) (int, rcm.Journey, http.Header) {
			req, err := http.NewRequest(http.MethodPost, f.ts.URL+"/api/v1/rcm/journeys", strings.NewReader(journeyBody(otherPatient)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(testPrincipalHeader, biller)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", key)
			resp, err := f.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var j rcm.Journey
			if resp.StatusCode < 300 {
				if err := json.Unmarshal(b, &j); err != nil {
					t.Fatal(err)
				}
			}
			return resp.StatusCode, j, resp.Header
		}
		status, first, h := post("visit-1")
		if status != http.StatusCreated || first.Patient != otherPatient || h.Get("Location") != "/api/v1/rcm/journeys/"+first.ID {
			t.Fatalf("start: %d %+v", status, first)
		}
		status, again, _ := post("visit-1")
		if status != http.StatusOK || again.ID != first.ID {
			t.Fatalf("the same key: %d, journey %s, want %s", status, again.ID, first.ID)
		}
		status, other, _ := post("visit-2")
		if status != http.StatusCreated || other.ID == first.ID {
			t.Fatalf("another key: %d %s", status, other.ID)
		}

		got := must[rcm.Journey](t, f.do(t, biller, http.MethodGet, "/api/v1/rcm/journeys/"+first.ID, ""), http.StatusOK)
		if got.Kind != rcm.KindStandard || got.Payer != rcmTestPayer || got.Currency != "EGP" || len(got.Steps) == 0 {
			t.Fatalf("journey %+v", got)
		}
		page := must[rcm.JourneyPage](t, f.do(t, biller, http.MethodGet, "/api/v1/rcm/journeys?limit=1&status=active", ""), http.StatusOK)
		if len(page.Journeys) != 1 || page.NextCursor == "" {
			t.Fatalf("first page %+v", page)
		}
		next := must[rcm.JourneyPage](t, f.do(t, biller, http.MethodGet, "/api/v1/rcm/journeys?limit=1&status=active&cursor="+page.NextCursor, ""), http.StatusOK)
		if len(next.Journeys) != 1 || next.Journeys[0].ID == page.Journeys[0].ID {
			t.Fatalf("second page %+v", next)
		}

		doctor := f.principal(t, "doctor", auth.Physician, "")
		p := problemOf(t, f.do(t, doctor, http.MethodGet, "/api/v1/rcm/journeys/"+first.ID, ""), http.StatusNotFound)
		missing := problemOf(t, f.do(t, doctor, http.MethodGet, "/api/v1/rcm/journeys/01890a5d-ac96-774b-bcce-b302099a8057", ""), http.StatusNotFound)
		if p.Detail != missing.Detail {
			t.Fatalf("out of reach %q, missing %q", p.Detail, missing.Detail)
		}
		list := must[rcm.JourneyPage](t, f.do(t, doctor, http.MethodGet, "/api/v1/rcm/journeys", ""), http.StatusOK)
		if len(list.Journeys) != 0 {
			t.Fatalf("a physician outside the care team lists %d journeys", len(list.Journeys))
		}

		bad := problemOf(t, f.do(t, biller, http.MethodPost, "/api/v1/rcm/journeys", `{"kind":"standard","patient":{"family":"X","national_id":"29013011234567"},"encounter":{"start":"2026-03-02"},"diagnosis_codes":["E11.9"],"procedure_codes":["99213"],"insurance":{"payer":"payer-1@hcx","member_id":"M"}}`), http.StatusBadRequest)
		if strings.Contains(string(mustJSON(t, bad)), "29013011234567") {
			t.Fatalf("the problem quotes the national ID: %+v", bad)
		}
		c := must[rcm.Journey](t, f.do(t, biller, http.MethodPost, "/api/v1/rcm/journeys/"+other.ID+"/cancel", `{"reason":"duplicate"}`), http.StatusOK)
		if c.Status != rcm.StatusCancelled || c.Outcome != rcm.OutcomeCancelled {
			t.Fatalf("cancelled %+v", c)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
