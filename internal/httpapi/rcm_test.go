package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// entry is one batch entry: a journey for an outpatient visit.
func entry(nationalID, payerCode, member string) string {
	return fmt.Sprintf(`{"kind":"standard","patient":{"national_id":%q,"family":"حسن","given":["Mona"],"gender":"female"},"encounter":{"start":"2026-03-02"},"diagnosis_codes":["E11.9"],"procedure_codes":["99213"],"insurance":{"payer":%q,"member_id":%q}}`,
		nationalID, payerCode, member)
}

// post sends a batch with a content type and an optional Idempotency-Key.
func (f *rcmFixture) post(t *testing.T, who, contentType, key, body string) authzResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.ts.URL+"/api/v1/rcm/batches", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(testPrincipalHeader, who)
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return authzResponse{status: resp.StatusCode, header: resp.Header, body: b, requestID: resp.Header.Get("X-Request-ID")}
}

func TestBatchThroughTheAPI(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newRCMFixture(t, db)
		clerk := f.principal(t, "clerk", auth.Billing, "")
		body := strings.Join([]string{
			entry("29001011234567", rcmTestPayer, "M-1"),
			entry("28502151234561", "nobody@hcx", "M-2"),
			`{"kind":"standard","colour":"blue"}`,
			entry("29911221234568", rcmTestPayer, "M-3"),
		}, "\n") + "\n"
		resp := f.post(t, clerk, "application/x-ndjson", "upload-1", body)
		st := must[rcm.BatchStatus](t, resp, http.StatusAccepted)
		if resp.header.Get("Location") != "/api/v1/rcm/batches/"+st.ID || resp.header.Get("Idempotency-Key") != "upload-1" {
			t.Errorf("headers %v", resp.header)
		}
		if st.Total != 4 || st.Started != 2 || st.Refused != 2 || st.Pending != 0 || st.Done || st.CreatedBy != "clerk" {
			t.Fatalf("status %+v", st)
		}
		if len(st.Failures) != 2 || st.Failures[0].Index != 1 || st.Failures[0].Field != "insurance.payer" || st.Failures[1].Field != "colour" {
			t.Errorf("failures %+v", st.Failures)
		}
		if strings.Contains(string(resp.body), "blue") || strings.Contains(string(resp.body), "nobody") || strings.Contains(string(resp.body), "حسن") {
			t.Errorf("the answer repeats a value: %s", resp.body)
		}
		// The batch and every entry's start are in the audit log, as the clerk.
		entries := f.auditOf(t, resp.requestID)
		var batch, starts int
		for _, e := range entries {
			if e.Actor != clerk {
				t.Errorf("audit entry by %s", e.Actor)
			}
			switch {
			case e.Action == "batch":
				batch++
			case e.ResourceType == rcm.JourneyType && e.Action == audit.Action(auth.ActionCreate):
				starts++
			}
		}
		if batch != 1 || starts < 2 {
			t.Errorf("audit: %d batch entries, %d journey starts (%d entries)", batch, starts, len(entries))
		}

		// The same POST again is the same batch, and starts nothing more.
		again := f.post(t, clerk, "application/x-ndjson", "upload-1", body)
		st2 := must[rcm.BatchStatus](t, again, http.StatusOK)
		if st2.ID != st.ID || st2.Started != 2 {
			t.Errorf("retry: %+v", st2)
		}
		page, err := f.svc.Journeys(context.Background(), f.accessFor(t, clerk), rcm.JourneyFilter{BatchID: st.ID})
		if err != nil || len(page.Journeys) != 2 {
			t.Fatalf("journeys of the batch: %d %v", len(page.Journeys), err)
		}
		// Another body under the key is refused.
		problemOf(t, f.post(t, clerk, "application/x-ndjson", "upload-1", entry("29001011234567", rcmTestPayer, "M-9")+"\n"), http.StatusConflict)

		got := must[rcm.BatchStatus](t, f.do(t, clerk, "GET", "/api/v1/rcm/batches/"+st.ID, ""), http.StatusOK)
		if got.ID != st.ID || got.Started != 2 || got.States["unknown"] != 0 || len(got.States) == 0 {
			t.Errorf("GET: %+v", got)
		}
		problemOf(t, f.do(t, clerk, "GET", "/api/v1/rcm/batches/0190d6a4-0000-7000-8000-000000000000", ""), http.StatusNotFound)
		problemOf(t, f.do(t, clerk, "GET", "/api/v1/rcm/batches/not-an-id", ""), http.StatusNotFound)

		// A JSON array works the same; without a key the batch's id is its key.
		arr := f.post(t, clerk, "application/json", "", "["+entry("30005051234563", rcmTestPayer, "M-4")+"]")
		st3 := must[rcm.BatchStatus](t, arr, http.StatusAccepted)
		if arr.header.Get("Idempotency-Key") != st3.ID || st3.Started != 1 {
			t.Errorf("array batch: %+v %v", st3, arr.header)
		}
		for name, c := range map[string]struct {
			ct, body string
			want     int
		}{
			"a form":             {"application/x-www-form-urlencoded", "a=b", http.StatusUnsupportedMediaType},
			"an object":          {"application/json", entry("30005051234563", rcmTestPayer, "M-4"), http.StatusBadRequest},
			"an empty array":     {"application/json", "[]", http.StatusBadRequest},
			"broken JSON":        {"application/json", "[{", http.StatusBadRequest},
			"a bad key":          {"application/json", "[]", http.StatusBadRequest},
			"blank NDJSON":       {"application/x-ndjson", "\n\n", http.StatusBadRequest},
			"a huge NDJSON line": {"application/x-ndjson", strings.Repeat("x", 2<<20), http.StatusBadRequest},
		} {
			key := ""
			if name == "a bad key" {
				key = "no spaces allowed"
			}
			if r := f.post(t, clerk, c.ct, key, c.body); r.status != c.want {
				t.Errorf("%s: %d %s", name, r.status, r.body)
			}
		}
	})
}

// accessFor is the guard of a test principal, as the server builds one.
func (f *authzFixture) accessFor(t *testing.T, who string) *careaccess.Guard {
	t.Helper()
	f.mu.Lock()
	p := f.principals[who]
	f.mu.Unlock()
	svc := &careaccess.Services{Authorizer: f.access.Authorizer, Policy: f.access.Policy, Audit: f.log}
	return svc.For(careaccess.Caller{Principal: p, RequestID: "test"})
}

func TestPayersJoinTheRegistryAndTheSchedules(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newRCMFixture(t, db)
		ctx := context.Background()
		example, err := os.ReadFile("../../examples/fee-schedule.csv")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.fees.Load(ctx, bytes.NewReader(example), rcm.FeeLoad{Payer: rcmTestPayer, Version: "2026.1"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.fees.Load(ctx, strings.NewReader("system,code,price,preauth,effective_from\nCPT,99213,100,yes,2026-01-01\n"),
			rcm.FeeLoad{Payer: "gone@hcx", Currency: "SAR", Name: "Old Payer"}); err != nil {
			t.Fatal(err)
		}
		clerk := f.principal(t, "clerk", auth.Billing, "")
		page := must[payersPage](t, f.do(t, clerk, "GET", "/api/v1/rcm/payers?date=2026-03-01", ""), http.StatusOK)
		if len(page.Payers) != 2 {
			t.Fatalf("payers %+v", page.Payers)
		}
		gone, one := page.Payers[0], page.Payers[1]
		if gone.Code != "gone@hcx" || gone.Reachable || gone.Status != rcm.StatusUnreachable || gone.Currency != "SAR" {
			t.Errorf("unreachable payer %+v", gone)
		}
		if one.Code != rcmTestPayer || !one.Reachable || one.Name != "Test Payer" || one.Currency != "EGP" ||
			len(one.Schedules) != 1 || one.Schedules[0].Version != "2026.1" || one.Schedules[0].Items != 14 || len(one.PreauthRequired) != 3 {
			t.Errorf("registered payer %+v", one)
		}
		problemOf(t, f.do(t, clerk, "GET", "/api/v1/rcm/payers?date=March", ""), http.StatusBadRequest)
		problemOf(t, f.do(t, clerk, "GET", "/api/v1/rcm/payers?payer=x", ""), http.StatusBadRequest)
	})
}

func TestWorklistAsksTheJourneys(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newRCMFixture(t, db)
		clerk := f.principal(t, "clerk", auth.Billing, "")
		for _, kind := range []string{"denied", "short_paid", "waiting", "needs_info", "invalid_codes", "attention"} {
			page := must[worklistPage](t, f.do(t, clerk, "GET", "/api/v1/rcm/worklist?kind="+kind, ""), http.StatusOK)
			if len(page.Journeys) != 0 {
				t.Errorf("%s: %d journeys in a new database", kind, len(page.Journeys))
			}
		}
		// Journeys as the steps leave them (rows of rcm_journeys): one denied
		// for the own patient, one short-paid for the other patient.
		now := time.Now().UTC()
		for _, j := range []struct{ id, patient, status, outcome string }{
			{"0190d6a4-0000-7000-8000-000000000001", ownPatient, rcm.StatusClosed, rcm.OutcomeDenied},
			{"0190d6a4-0000-7000-8000-000000000002", otherPatient, rcm.StatusClosed, rcm.OutcomePartiallyPaid},
		} {
			if _, err := db.Writer().Exec(context.Background(), `INSERT INTO rcm_journeys (id, kind, patient_id, payer, status, outcome, currency, started_at, updated_at)
				VALUES ($1, 'standard', $2, $3, $4, $5, 'EGP', $6, $6)`, j.id, j.patient, rcmTestPayer, j.status, j.outcome, now); err != nil {
				t.Fatal(err)
			}
		}
		denied := must[worklistPage](t, f.do(t, clerk, "GET", "/api/v1/rcm/worklist?kind=denied&payer="+rcmTestPayer, ""), http.StatusOK)
		short := must[worklistPage](t, f.do(t, clerk, "GET", "/api/v1/rcm/worklist?kind=short_paid", ""), http.StatusOK)
		if len(denied.Journeys) != 1 || !strings.Contains(string(denied.Journeys[0]), "000000000001") || len(short.Journeys) != 1 {
			t.Errorf("billing's queues: denied %s short %s", denied.Journeys, short.Journeys)
		}
		if other := must[worklistPage](t, f.do(t, clerk, "GET", "/api/v1/rcm/worklist?kind=denied&payer=other@hcx", ""), http.StatusOK); len(other.Journeys) != 0 {
			t.Errorf("another payer's queue: %s", other.Journeys)
		}
		// A physician of care team A sees the own patient's journey only.
		doc := f.principal(t, "doc", auth.Physician, "")
		f.relate(t, doc, "physician", "own", ownPatient)
		if p := must[worklistPage](t, f.do(t, doc, "GET", "/api/v1/rcm/worklist?kind=denied", ""), http.StatusOK); len(p.Journeys) != 1 {
			t.Errorf("physician, own patient: %s", p.Journeys)
		}
		if p := must[worklistPage](t, f.do(t, doc, "GET", "/api/v1/rcm/worklist?kind=short_paid", ""), http.StatusOK); len(p.Journeys) != 0 {
			t.Errorf("physician, other patient: %s", p.Journeys)
		}
		for _, q := range []string{"kind=lost", "", "kind=denied&older_than=1h", "kind=waiting&older_than=soon", "kind=denied&limit=500", "kind=denied&payer=a%20b", "kind=denied&sort=x"} {
			problemOf(t, f.do(t, clerk, "GET", "/api/v1/rcm/worklist?"+q, ""), http.StatusBadRequest)
		}
		must[worklistPage](t, f.do(t, clerk, "GET", "/api/v1/rcm/worklist?kind=waiting&older_than=72h&limit=10", ""), http.StatusOK)
	})
}

func TestRCMRoutesAnswer503WithoutTheRevenueCycle(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newAuthzFixture(t, db, nil)
		clerk := f.principal(t, "clerk", auth.Billing, "")
		for _, path := range []string{"/api/v1/rcm/payers", "/api/v1/rcm/worklist?kind=denied", "/api/v1/rcm/batches/0190d6a4-0000-7000-8000-000000000000"} {
			problemOf(t, f.do(t, clerk, "GET", path, ""), http.StatusServiceUnavailable)
		}
	})
}

// TestRCMBillingAuthorizationMatrix drives testdata/authz_matrix_rcm_billing.csv
// (the columns of authz_matrix.csv; {batch} in a path is a batch the test
// made) through the real server and journeys.
func TestRCMBillingAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	rows := readMatrixFile(t, "testdata/authz_matrix_rcm_billing.csv")
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.role] = true
		covered[r.method+" "+strings.NewReplacer("{batch}", "{id}").Replace(strings.SplitN(r.path, "?", 2)[0])] = true
	}
	for _, role := range auth.Roles() {
		if !covered[string(role)] {
			t.Errorf("role %s has no row in the rcm billing matrix", role)
		}
	}
	for _, p := range New(Options{}).Patterns() {
		if strings.Contains(p, " /api/v1/rcm/") && !strings.Contains(p, " /api/v1/rcm/journeys") && !covered[p] {
			t.Errorf("route %s has no row in the rcm billing matrix", p)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newRCMFixture(t, db)
		clerk := f.principal(t, "matrix-clerk", auth.Billing, "")
		st := must[rcm.BatchStatus](t, f.post(t, clerk, "application/x-ndjson", "", entry("29001011234567", rcmTestPayer, "M-1")), http.StatusAccepted)
		for i, row := range rows {
			row.path = strings.ReplaceAll(row.path, "{batch}", st.ID)
			t.Run(fmt.Sprintf("line%03d_%s_%s", row.line, row.role, row.method), func(t *testing.T) {
				runMatrixRow(t, f.authzFixture, i, row)
			})
		}
	})
}
