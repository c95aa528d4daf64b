package rcm

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func final(j *Journey) bool { return j.Status != StatusActive }

const (
	nidMona  = "29001011234567" // female, born 1990-01-01, Dakahlia
	nidAhmed = "28505150100133" // male, born 1985-05-15, Cairo
)

// count counts rows.
func count(t *testing.T, db *store.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The scenarios of the Must-show list at the domain level: the
// real engine, record, policy, audit and terminology, a payer answering
// through Receive.
func TestJourneyScenarios(t *testing.T) {
	t.Parallel()
	paid := plan{inforce: true, preauth: "approve", claim: "approve", approvedPct: 100, paidPct: 100}
	for _, tc := range []struct {
		name    string
		plan    plan
		req     JourneyRequest
		outcome string
		status  string
		billed  string
		paid    string
		check   func(t *testing.T, e *env, j *Journey)
	}{
		{name: "a type 2 diabetes visit (E11.9, 99213) is paid in full", plan: paid,
			req: request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), outcome: OutcomePaid, status: StatusClosed,
			billed: "450.00", paid: "450.00",
			check: func(t *testing.T, e *env, j *Journey) {
				if n := len(e.payer.requests(payer.PreauthSubmit, j.ID)); n != 0 {
					t.Errorf("%d pre-authorizations sent for a visit that needs none", n)
				}
				// The acknowledgement follows the outcome, in the next step.
				e.wait(t, j.ID, "the run's end", func(*Journey) bool {
					run, err := e.eng.GetRun(context.Background(), j.ID)
					return err == nil && run.Status.Final()
				})
				acks := e.payer.requests(payer.PaymentNoticeOnRequest, j.ID)
				if len(acks) != 1 || acks[0].Status != payer.StatusResponseComplete || !strings.Contains(string(acks[0].Bundle), `"PaymentNotice"`) {
					t.Errorf("the payment was not acknowledged once: %d acknowledgements", len(acks))
				}
			}},
		{name: "a cardiac emergency (I21.9, 99285) is billed without pre-authorization", plan: paid,
			req: func() JourneyRequest {
				r := request(KindEmergency, nidAhmed, []string{"I21.9"}, []string{"99285"})
				r.Patient.Gender, r.Patient.Family = "male", "Ahmed"
				yes := true
				r.PreauthRequired = &yes // an emergency never waits for one
				return r
			}(), outcome: OutcomePaid, status: StatusClosed, billed: "1200.00", paid: "1200.00",
			check: func(t *testing.T, e *env, j *Journey) {
				if n := len(e.payer.requests(payer.PreauthSubmit, j.ID)); n != 0 {
					t.Errorf("an emergency sent %d pre-authorizations", n)
				}
				if !strings.Contains(string(readResource(t, e, j.References["encounter"])), `"EMER"`) {
					t.Error("the emergency's encounter is not class EMER")
				}
			}},
		{name: "a scheduled surgery waits for its pre-authorization and claims with its reference", plan: paid,
			req: request(KindScheduled, nidMona, []string{"M17.11"}, []string{"27447"}), outcome: OutcomePaid, status: StatusClosed,
			billed: "25000.00", paid: "25000.00",
			check: func(t *testing.T, e *env, j *Journey) {
				claims := e.payer.requests(payer.ClaimSubmit, j.ID)
				if len(claims) != 1 || !strings.Contains(string(claims[0].Bundle), `"preAuthRef":["PA-1"]`) {
					t.Errorf("the claim does not carry the pre-authorization: %d claims", len(claims))
				}
				if j.References["preauth"] == "" || j.References["preauth_response"] == "" {
					t.Errorf("references %v", j.References)
				}
			}},
		{name: "maternity care (O80, 59400) asks the pre-authorization the payer requires", plan: paid,
			req: request(KindStandard, nidMona, []string{"O80"}, []string{"59400"}), outcome: OutcomePaid, status: StatusClosed,
			billed: "9000.00", paid: "9000.00",
			check: func(t *testing.T, e *env, j *Journey) {
				if n := len(e.payer.requests(payer.PreauthSubmit, j.ID)); n != 1 {
					t.Errorf("%d pre-authorizations, want 1", n)
				}
			}},
		{name: "a refused pre-authorization stops a scheduled surgery before any claim",
			plan: plan{inforce: true, preauth: "refuse", claim: "approve", approvedPct: 100, paidPct: 100},
			req:  request(KindScheduled, nidMona, []string{"M17.11"}, []string{"27447"}), outcome: OutcomePreauthRefused, status: StatusAttention,
			billed: "0.00",
			check: func(t *testing.T, e *env, j *Journey) {
				if n := len(e.payer.requests(payer.ClaimSubmit, j.ID)); n != 0 {
					t.Errorf("%d claims sent after a refusal", n)
				}
				openTask(t, e, j.ID, "Pre-authorization refused")
			}},
		{name: "cover not in force stops the journey with a work item",
			plan: plan{inforce: false}, req: request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}),
			outcome: OutcomeNotCovered, status: StatusAttention, billed: "0.00",
			check: func(t *testing.T, e *env, j *Journey) { openTask(t, e, j.ID, "Coverage not in force") }},
		{name: "a code not billable on the date of service stops with a task naming its position and rule", plan: paid,
			req: request(KindStandard, nidMona, []string{"E11.9", "E11"}, []string{"99213"}), outcome: OutcomeInvalidCodes,
			status: StatusAttention, billed: "0.00",
			check: func(t *testing.T, e *env, j *Journey) {
				task := openTask(t, e, j.ID, "diagnosis_codes[1]")
				if strings.Contains(task.Title, "Mona") || strings.Contains(task.Title, nidMona) {
					t.Errorf("the task names the patient: %q", task.Title)
				}
				if !strings.HasPrefix(j.Reason, "diagnosis_codes[1]:") {
					t.Errorf("reason %q", j.Reason)
				}
			}},
		{name: "a partial payment closes the journey with its variance",
			plan: plan{inforce: true, claim: "approve", approvedPct: 100, paidPct: 80},
			req:  request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213", "99213"}), outcome: OutcomePartiallyPaid,
			status: StatusClosed, billed: "900.00", paid: "720.00",
			check: func(t *testing.T, e *env, j *Journey) {
				if j.Amounts.Variance != "180.00" || j.Amounts.Approved != "900.00" {
					t.Errorf("amounts %+v", j.Amounts)
				}
				// The payment is on the claim's ClaimResponse in the record.
				if j.References["payment"] != j.References["claim_response"] ||
					!strings.Contains(string(readResource(t, e, j.References["payment"])), `"payment":{"amount":{"currency":"EGP","value":720.00}`) {
					t.Errorf("the ClaimResponse does not record the partial payment: %s", readResource(t, e, j.References["payment"]))
				}
				page, err := e.svc.Worklist(context.Background(), billing(e), WorklistFilter{Queue: QueueShortPaid})
				if err != nil || len(page.Journeys) != 1 || page.Journeys[0].ID != j.ID {
					t.Errorf("short-paid worklist: %v %+v", err, page)
				}
			}},
		{name: "a claim paid as adjudicated is paid though the patient's share was deducted",
			plan: plan{inforce: true, claim: "approve", share: 9000},
			req:  request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), outcome: OutcomePaid,
			status: StatusClosed, billed: "450.00", paid: "360.00",
			check: func(t *testing.T, e *env, j *Journey) {
				if j.Amounts.Approved != "360.00" || j.Amounts.PatientShare != "90.00" || j.Amounts.Variance != "0.00" {
					t.Errorf("amounts %+v", j.Amounts)
				}
			}},
		{name: "a payer's own reduction beyond the patient's share is a short payment",
			plan: plan{inforce: true, claim: "approve", share: 9000, cut: 3600},
			req:  request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), outcome: OutcomePartiallyPaid,
			status: StatusClosed, billed: "450.00", paid: "324.00",
			check: func(t *testing.T, e *env, j *Journey) {
				// variance = billed − patient share − paid = 450 − 90 − 324.
				if j.Amounts.Approved != "324.00" || j.Amounts.PatientShare != "90.00" || j.Amounts.Variance != "36.00" {
					t.Errorf("amounts %+v", j.Amounts)
				}
				// The stored ClaimResponse keeps the item adjudications: the
				// patient's share and the payer's reason for its reduction.
				if cr := string(readResource(t, e, j.References["claim_response"])); !strings.Contains(cr, `"code":"copay"`) || !strings.Contains(cr, `"code":"45"`) {
					t.Errorf("the ClaimResponse lost the adjudications: %s", cr)
				}
			}},
		{name: "duplicated and reordered callbacks (payment before the claim response) change nothing",
			plan: plan{inforce: true, claim: "approve", approvedPct: 100, paidPct: 100, twice: true, paymentFirst: true},
			req:  request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), outcome: OutcomePaid, status: StatusClosed,
			billed: "450.00", paid: "450.00",
			check: func(t *testing.T, e *env, j *Journey) {
				if n := count(t, e.db, `SELECT count(*) FROM resources WHERE type = 'ClaimResponse' AND patient_id = $1`, j.Patient); n != 1 {
					t.Errorf("%d ClaimResponses stored, want 1", n)
				}
				if n := count(t, e.db, `SELECT count(*) FROM engine_signals WHERE run_id = $1`, j.ID); n != 3 {
					t.Errorf("%d signals kept, want 3 (duplicates dropped)", n)
				}
			}},
		{name: "a claim the payer never answers is checked, then becomes a payer timeout",
			plan: plan{inforce: true, claim: "silent"}, req: request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}),
			outcome: OutcomePayerTimeout, status: StatusAttention, billed: "450.00",
			check: func(t *testing.T, e *env, j *Journey) {
				if n := len(e.payer.requests(payer.StatusCheck, j.ID)); n != 2 {
					t.Errorf("%d status checks, want 2", n)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Each(t, func(t *testing.T, db *store.DB) {
				e := newEnv(t, db, tc.plan)
				j, created, err := e.svc.StartJourney(context.Background(), billing(e), tc.req, StartOptions{})
				if err != nil || !created {
					t.Fatalf("start: %v %v", created, err)
				}
				j = e.wait(t, j.ID, tc.outcome, func(j *Journey) bool { return j.Outcome != "" })
				if j.Outcome != tc.outcome || j.Status != tc.status || j.Amounts.Billed != tc.billed || j.Amounts.Paid != tc.paid {
					t.Fatalf("journey: outcome %s status %s reason %s amounts %+v", j.Outcome, j.Status, j.Reason, j.Amounts)
				}
				if tc.check != nil {
					tc.check(t, e, j)
				}
			})
		})
	}
}

func readResource(t *testing.T, e *env, reference string) []byte {
	t.Helper()
	typ, id, _ := strings.Cut(reference, "/")
	rec, err := e.rec.Read(context.Background(), nil, typ, id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.JSON
}

// openTask is the journey's open billing task whose title contains want,
// once the run has reached it.
func openTask(t *testing.T, e *env, runID, want string) *engine.Task {
	t.Helper()
	var found *engine.Task
	e.wait(t, runID, "a billing task "+want, func(*Journey) bool {
		tasks, err := e.eng.ListTasks(context.Background(), engine.TaskFilter{RunID: runID, Status: engine.TaskOpen})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			if task.Role == "billing" && strings.Contains(task.Title, want) {
				found = task.Task
			}
		}
		return found != nil
	})
	return found
}

// The payer asks for more information on a pre-authorization: billing's
// task answers it, the answer goes back as a Communication, and the
// approval that follows lets the journey claim and be paid.
func TestCommunicationRequestIsAnsweredByBilling(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, preauth: "ask", claim: "approve", approvedPct: 100, paidPct: 100})
		ctx := context.Background()
		j, _, err := e.svc.StartJourney(ctx, billing(e), request(KindScheduled, nidMona, []string{"M17.11"}, []string{"27447"}), StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j = e.wait(t, j.ID, "the information request", func(j *Journey) bool { return j.NeedsInfo })
		var task *engine.Task
		e.wait(t, j.ID, "the billing task", func(*Journey) bool {
			tasks, _ := e.eng.ListTasks(ctx, engine.TaskFilter{RunID: j.ID, Status: engine.TaskOpen})
			if len(tasks) == 1 {
				task = tasks[0].Task
			}
			return task != nil
		})
		if task.Title != "More information requested by the payer" || task.Role != "billing" {
			t.Fatalf("task %q for %s", task.Title, task.Role)
		}
		if _, err := e.eng.CompleteTask(ctx, task.ID, engine.Actor{User: "u-billing", Roles: []string{"billing"}}, DecisionAnswered,
			map[string]any{"text": "Operative plan attached", "attachment": "DocumentReference/op-plan"}, task.RowVersion); err != nil {
			t.Fatal(err)
		}
		j = e.wait(t, j.ID, "payment", final)
		if j.Outcome != OutcomePaid || j.NeedsInfo {
			t.Fatalf("journey %s %s needs %v", j.Outcome, j.Reason, j.NeedsInfo)
		}
		answers := e.payer.requests(payer.CommunicationOnRequest, j.ID)
		if len(answers) != 1 || answers[0].CorrelationID != "payer-corr-"+j.ID || !strings.Contains(string(answers[0].Bundle), "Operative plan attached") {
			t.Fatalf("%d answers sent", len(answers))
		}
		claims := e.payer.requests(payer.ClaimSubmit, j.ID)
		if len(claims) != 1 || !strings.Contains(string(claims[0].Bundle), `"preAuthRef":["PA-2"]`) {
			t.Fatal("the claim does not carry the approval that followed the answer")
		}
	})
}

// A denied claim is appealed: a new journey submits a new Claim related to
// the original, which is paid.
func TestDeniedClaimIsAppealedAndPaid(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, denyOriginal: true})
		ctx := context.Background()
		j, _, err := e.svc.StartJourney(ctx, billing(e), request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j = e.wait(t, j.ID, "the denial", final)
		if j.Outcome != OutcomeDenied || j.Reason != "CO-50" {
			t.Fatalf("journey %s %s", j.Outcome, j.Reason)
		}
		page, err := e.svc.Worklist(ctx, billing(e), WorklistFilter{Queue: QueueDenied})
		if err != nil || len(page.Journeys) != 1 || page.Journeys[0].ID != j.ID {
			t.Fatalf("denied worklist: %v %+v", err, page)
		}
		a, err := e.svc.Appeal(ctx, billing(e), j.ID, AppealRequest{Reason: "medical necessity documented"})
		if err != nil {
			t.Fatal(err)
		}
		again, err := e.svc.Appeal(ctx, billing(e), j.ID, AppealRequest{})
		if err != nil || again.ID != a.ID {
			t.Fatalf("a second appeal: %v, %v", err, again)
		}
		a = e.wait(t, a.ID, "the appeal's payment", final)
		if a.Outcome != OutcomePaid || a.AppealOf != j.ID || a.Kind != "appeal" || a.Amounts.Paid != "450.00" {
			t.Fatalf("appeal %+v", a)
		}
		var claim struct {
			Related []struct {
				Claim struct {
					Reference string `json:"reference"`
				} `json:"claim"`
			} `json:"related"`
		}
		if err := json.Unmarshal(readResource(t, e, a.References["claim"]), &claim); err != nil {
			t.Fatal(err)
		}
		if len(claim.Related) != 1 || claim.Related[0].Claim.Reference != j.References["claim"] || a.References["claim"] == j.References["claim"] {
			t.Fatalf("the appeal's claim %s is not a new claim related to %s", a.References["claim"], j.References["claim"])
		}
	})
}

// A crash between a step's Do and its Apply re-delivers the step: the
// Claim is written once and the payer applies the submission once.
func TestCrashRedeliveryMakesNoSecondClaim(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, claim: "approve", approvedPct: 100, paidPct: 100})
		e.failAp.Store(stepClaim, 1)
		e.payer.loseAck[payer.ClaimSubmit] = true
		e.payer.failOnce[payer.EligibilityCheck] = true
		ctx := context.Background()
		j, _, err := e.svc.StartJourney(ctx, billing(e), request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j = e.wait(t, j.ID, "payment", final)
		if j.Outcome != OutcomePaid {
			t.Fatalf("outcome %s", j.Outcome)
		}
		if n := count(t, db, `SELECT count(*) FROM resources WHERE type = 'Claim' AND patient_id = $1`, j.Patient); n != 1 {
			t.Fatalf("%d Claims in the record, want 1", n)
		}
		e.payer.mu.Lock()
		deliveries, distinct := e.payer.deliveries, len(e.payer.claims)
		e.payer.mu.Unlock()
		if deliveries < 2 || distinct != 1 {
			t.Fatalf("the payer saw %d deliveries of %d claims; want a retried delivery of one claim", deliveries, distinct)
		}
		if n := len(e.payer.requests(payer.ClaimSubmit, j.ID)); n != 1 {
			t.Fatalf("%d distinct claim submissions (by api_call_id), want 1", n)
		}
	})
}

// The submission step's Apply fails after its Do sent the claim (the
// process dying between the send and the commit): the re-delivered step
// sends again with the same api_call_id, which the payer applies once,
// and the journey goes on to payment.
func TestCrashBetweenSendAndCommitSendsOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, claim: "approve", approvedPct: 100, paidPct: 100})
		ctx := context.Background()
		// A trigger refuses to mark the claim's exchange sent until the
		// payer has seen the claim twice: the first Apply rolls back.
		create, drop := []string{
			`CREATE TRIGGER crash_after_send BEFORE UPDATE OF state ON rcm_exchanges
				WHEN NEW.state = 'sent' AND OLD.action = 'claim/submit' BEGIN SELECT RAISE(ABORT, 'killed before commit'); END`,
		}, `DROP TRIGGER crash_after_send`
		if db.Dialect() == store.Postgres {
			create = []string{
				`CREATE FUNCTION crash_after_send() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
					IF NEW.state = 'sent' AND OLD.action = 'claim/submit' THEN RAISE EXCEPTION 'killed before commit'; END IF;
					RETURN NEW; END $$`,
				`CREATE TRIGGER crash_after_send BEFORE UPDATE ON rcm_exchanges FOR EACH ROW EXECUTE FUNCTION crash_after_send()`,
			}
			drop = `DROP TRIGGER crash_after_send ON rcm_exchanges`
		}
		for _, q := range create {
			if _, err := db.Writer().Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		var once sync.Once
		e.payer.mu.Lock()
		e.payer.onResend = func() {
			once.Do(func() {
				if _, err := db.Writer().Exec(ctx, drop); err != nil {
					t.Error(err)
				}
			})
		}
		e.payer.mu.Unlock()
		j, _, err := e.svc.StartJourney(ctx, billing(e), request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j = e.wait(t, j.ID, "payment", final)
		e.payer.mu.Lock()
		deliveries := e.payer.deliveries
		e.payer.mu.Unlock()
		if j.Outcome != OutcomePaid || deliveries != 2 || len(e.payer.requests(payer.ClaimSubmit, j.ID)) != 1 {
			t.Fatalf("outcome %s; %d deliveries of %d distinct claims", j.Outcome, deliveries, len(e.payer.requests(payer.ClaimSubmit, j.ID)))
		}
		if n := count(t, db, `SELECT count(*) FROM resources WHERE type = 'Claim' AND patient_id = $1`, j.Patient); n != 1 {
			t.Fatalf("%d Claims", n)
		}
	})
}

// Two registrations of the same new patient at once make one Patient;
// the Idempotency-Key of a caller returns its first journey.
func TestRegistrationAndIdempotency(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, claim: "silent"})
		ctx := context.Background()
		var (
			wg       sync.WaitGroup
			patients [4]string
			errs4    [4]error
		)
		for i := range patients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := request(KindStandard, nidAhmed, []string{"E11.9"}, []string{"99213"})
				r.Patient.Gender = "male"
				j, _, err := e.svc.StartJourney(ctx, billing(e), r, StartOptions{})
				errs4[i] = err
				if err == nil {
					patients[i] = j.Patient
				}
			}()
		}
		wg.Wait()
		for i := range patients {
			if errs4[i] != nil || patients[i] != patients[0] {
				t.Fatalf("start %d: %v; patient %q vs %q", i, errs4[i], patients[i], patients[0])
			}
		}
		if n := count(t, db, `SELECT count(*) FROM resources WHERE type = 'Patient'`); n != 1 {
			t.Fatalf("%d Patients for one person", n)
		}
		req := request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"})
		first, created, err := e.svc.StartJourney(ctx, billing(e), req, StartOptions{IdempotencyKey: "visit-77"})
		if err != nil || !created {
			t.Fatal(created, err)
		}
		second, created, err := e.svc.StartJourney(ctx, billing(e), req, StartOptions{IdempotencyKey: "visit-77"})
		if err != nil || created || second.ID != first.ID {
			t.Fatalf("a repeated key: %v %v %s vs %s", created, err, second.ID, first.ID)
		}
	})
}

// Bad input is refused naming the field, never the value; a message for
// an unknown correlation or from another payer changes nothing.
func TestRefusalsNameNoPHI(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, claim: "silent"})
		ctx := context.Background()
		for _, tc := range []struct {
			name  string
			edit  func(r *JourneyRequest)
			field string
		}{
			{"an unknown payer", func(r *JourneyRequest) { r.Insurance.Payer = "nobody@hcx" }, "insurance.payer"},
			{"a national ID with a bad birth date", func(r *JourneyRequest) { r.Patient.NationalID = "29013011234567" }, "patient.national_id"},
			{"a national ID of another sex", func(r *JourneyRequest) { r.Patient.Gender = "male" }, "patient.national_id"},
			{"no procedure", func(r *JourneyRequest) { r.ProcedureCodes = nil }, "procedure_codes"},
			{"an unknown kind", func(r *JourneyRequest) { r.Kind = "urgent" }, "kind"},
		} {
			r := request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"})
			tc.edit(&r)
			_, _, err := e.svc.StartJourney(ctx, billing(e), r, StartOptions{})
			ee, ok := errs.As(err)
			if !ok || ee.Kind != errs.Invalid || ee.Field != tc.field {
				t.Errorf("%s: %v, want invalid %s", tc.name, err, tc.field)
				continue
			}
			for _, v := range []string{r.Patient.NationalID, r.Patient.Family, "Mona", r.Insurance.MemberID} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("%s: the error quotes a value: %v", tc.name, err)
				}
			}
		}
		j, _, err := e.svc.StartJourney(ctx, billing(e), request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e.wait(t, j.ID, "the claim's submission", func(j *Journey) bool {
			return count(t, db, `SELECT count(*) FROM rcm_exchanges WHERE journey_id = $1 AND action = 'claim/submit' AND state = 'sent'`, j.ID) == 1
		})
		signals := count(t, db, `SELECT count(*) FROM engine_signals WHERE run_id = $1`, j.ID)
		unknown := payer.Message{Action: payer.ClaimOnSubmit, Sender: testPayer, APICallID: "x-1", CorrelationID: "no-such-correlation"}
		err = db.Tx(ctx, func(tx store.Tx) error { return e.svc.Receive(ctx, tx, unknown) })
		if !errs.Is(err, errs.NotFound) {
			t.Errorf("unknown correlation: %v", err)
		}
		corr := e.payer.requests(payer.ClaimSubmit, j.ID)[0].CorrelationID
		other := payer.Message{Action: payer.ClaimOnSubmit, Sender: "other@hcx", APICallID: "x-2", CorrelationID: corr}
		err = db.Tx(ctx, func(tx store.Tx) error { return e.svc.Receive(ctx, tx, other) })
		if !errs.Is(err, errs.Invalid) {
			t.Errorf("another payer's answer: %v", err)
		}
		if n := count(t, db, `SELECT count(*) FROM engine_signals WHERE run_id = $1`, j.ID); n != signals {
			t.Errorf("refused messages left %d signals", n-signals)
		}
		// Submitted and unanswered: on the waiting list once the payer has
		// been quiet longer than asked, not before.
		for _, tc := range []struct {
			quiet time.Duration
			want  int
		}{{time.Nanosecond, 1}, {time.Hour, 0}} {
			page, err := e.svc.Worklist(ctx, billing(e), WorklistFilter{Queue: QueueWaiting, WaitingLonger: tc.quiet})
			if err != nil || len(page.Journeys) != tc.want {
				t.Errorf("waiting longer than %s: %v, %d journeys, want %d", tc.quiet, err, len(page.Journeys), tc.want)
			}
		}
		// Cancelled after submission: recorded as such.
		c, err := e.svc.Cancel(ctx, billing(e), j.ID, "patient withdrew")
		if err != nil {
			t.Fatal(err)
		}
		if c.Outcome != OutcomeCancelled || c.Status != StatusCancelled || c.Reason != "cancelled_after_submission" {
			t.Fatalf("cancelled journey %s %s %s", c.Status, c.Outcome, c.Reason)
		}
	})
}

// A database dump after a whole journey holds none of the patient's
// demographics, identifiers or member id in readable form: the record,
// the run's input and outputs, the signals and the exchange Bundles are
// sealed, and the journey's own tables hold ids, codes and amounts.
func TestDumpHoldsNoReadablePHI(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, claim: "approve", approvedPct: 100, paidPct: 100})
		req := request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"})
		req.Patient.Family, req.Insurance.MemberID = "Zanzibarian", "MEMBER-778899"
		j, _, err := e.svc.StartJourney(context.Background(), billing(e), req, StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e.wait(t, j.ID, "payment", final)
		dump := storetest.Dump(t, db)
		for _, v := range []string{nidMona, "Zanzibarian", "MEMBER-778899", "+201000000000"} {
			if strings.Contains(string(dump), v) {
				t.Errorf("the dump holds a readable %s", map[string]string{nidMona: "national ID", "Zanzibarian": "family name",
					"MEMBER-778899": "member id", "+201000000000": "phone"}[v])
			}
		}
	})
}
