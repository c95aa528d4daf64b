package rcm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/terminology"
)

const testPayer = "payer-1@hcx"

// feeMap is a FeeSchedule over maps: "code" → price, codes needing a
// pre-authorization, the payer's currency.
type feeMap struct {
	prices   map[string]int64
	preauth  map[string]bool
	currency string
}

func (f feeMap) Price(_ context.Context, _ store.Querier, payerCode, _, code string, _ time.Time) (Price, bool, error) {
	p, ok := f.prices[code]
	return Price{Amount: p, Currency: f.currency, ScheduleVersion: "test-1"}, ok && payerCode == testPayer, nil
}

func (f feeMap) PreauthRequired(_ context.Context, _ store.Querier, _, _, code string, _ time.Time) (bool, error) {
	return f.preauth[code], nil
}

func (f feeMap) Currency(context.Context, store.Querier, string) (string, error) {
	return f.currency, nil
}

type directory map[string]payer.Participant

func (d directory) Payers(context.Context) ([]payer.Participant, error) {
	var out []payer.Participant
	for _, p := range d {
		out = append(out, p)
	}
	return out, nil
}

func (d directory) Lookup(_ context.Context, code string) (payer.Participant, bool, error) {
	p, ok := d[code]
	return p, ok, nil
}

// plan is how the fake payer answers one journey's messages.
type plan struct {
	inforce bool
	// preauth: "approve", "refuse", "ask" (a CommunicationRequest first,
	// approval after the answer).
	preauth string
	// claim: "approve", "deny", "silent" (never answers).
	claim string
	// approvedPct and paidPct of the billed total.
	approvedPct, paidPct int64
	// paymentFirst sends the payment notice before the ClaimResponse.
	paymentFirst bool
	// twice sends every answer twice (the second must change nothing).
	twice bool
	// denyOriginal denies a claim without related (an appeal's new claim
	// is then approved in full).
	denyOriginal bool
	// share is the patient's share (minor units) the payer reports as a
	// copay adjudication, and cut a reduction of its own with a reason
	// code: the payer then approves and pays total − share − cut.
	share, cut int64
}

// fakePayer answers like a payer: every request is answered through
// Service.Receive in a transaction of its own (as internal/payer/hcx
// does), synchronously inside Send, so an answer may arrive before the
// sending step has committed.
type fakePayer struct {
	db   *store.DB
	svc  *Service
	plan func(workflow string) plan

	mu       sync.Mutex
	sent     []payer.Request
	seq      int
	claims   map[string]int // api_call_id (idempotency key) → claim/submit count
	preauths map[string]string
	failOnce map[payer.Action]bool
	// loseAck: the payer receives the message but the acknowledgement is
	// lost (a transient error after the fact), once per action.
	loseAck map[payer.Action]bool
	// deliveries counts every Send of a claim/submit, duplicates included.
	deliveries int
	// onResend runs when a claim/submit arrives again with a key already
	// seen (a re-delivered step).
	onResend func()
}

func (f *fakePayer) requests(action payer.Action, workflow string) []payer.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []payer.Request
	for _, r := range f.sent {
		if r.Action == action && r.WorkflowID == workflow {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakePayer) Send(ctx context.Context, req payer.Request) (payer.Ack, error) {
	f.mu.Lock()
	if f.failOnce[req.Action] {
		delete(f.failOnce, req.Action)
		f.mu.Unlock()
		return payer.Ack{}, fmt.Errorf("gateway answered 503")
	}
	if req.Action == payer.ClaimSubmit {
		f.deliveries++
	}
	// Payer-side deduplication by the api_call_id (here: the key).
	for _, r := range f.sent {
		if r.IdempotencyKey == req.IdempotencyKey {
			resend := f.onResend
			f.mu.Unlock()
			if resend != nil && req.Action == payer.ClaimSubmit {
				resend()
			}
			return payer.Ack{APICallID: req.IdempotencyKey, CorrelationID: req.CorrelationID}, nil
		}
	}
	f.sent = append(f.sent, req)
	f.mu.Unlock()
	p := f.plan(req.WorkflowID)
	var msgs []payer.Message
	msg := func(a payer.Action, corr string, resources ...any) payer.Message {
		f.mu.Lock()
		f.seq++
		id := fmt.Sprintf("payer-call-%d", f.seq)
		f.mu.Unlock()
		var entries []any
		for _, r := range resources {
			entries = append(entries, map[string]any{"resource": r})
		}
		b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "document", "entry": entries})
		return payer.Message{Action: a, Sender: testPayer, Recipient: "provider-1@hcx", APICallID: id, CorrelationID: corr,
			WorkflowID: req.WorkflowID, Status: payer.StatusResponseComplete, Timestamp: time.Now(), Bundle: b}
	}
	focus := focusOf(req.Bundle)
	switch req.Action {
	case payer.EligibilityCheck:
		msgs = append(msgs, msg(payer.EligibilityOnCheck, req.CorrelationID, map[string]any{"resourceType": "CoverageEligibilityResponse",
			"outcome": "complete", "insurance": []any{map[string]any{"inforce": p.inforce}}}))
	case payer.PreauthSubmit:
		switch p.preauth {
		case "approve":
			msgs = append(msgs, msg(payer.PreauthOnSubmit, req.CorrelationID, claimResponse("complete", "PA-1", 0)))
		case "refuse":
			msgs = append(msgs, msg(payer.PreauthOnSubmit, req.CorrelationID, claimResponse("error", "", 0)))
		case "ask":
			f.mu.Lock()
			f.preauths[req.WorkflowID] = req.CorrelationID
			f.mu.Unlock()
			msgs = append(msgs, msg(payer.CommunicationRequest, "payer-corr-"+req.WorkflowID, map[string]any{"resourceType": "CommunicationRequest",
				"status": "active", "payload": []any{map[string]any{"contentString": "Send the operative plan"}}}))
		}
	case payer.CommunicationOnRequest:
		f.mu.Lock()
		corr := f.preauths[req.WorkflowID]
		f.mu.Unlock()
		msgs = append(msgs, msg(payer.PreauthOnSubmit, corr, claimResponse("complete", "PA-2", 0)))
	case payer.ClaimSubmit:
		f.mu.Lock()
		f.claims[focus.id]++
		f.mu.Unlock()
		var cr payer.Message
		if p.denyOriginal {
			p.claim, p.approvedPct, p.paidPct = "approve", 100, 100
			if !focus.related {
				p.claim = "deny"
			}
		}
		switch p.claim {
		case "approve":
			cr = msg(payer.ClaimOnSubmit, req.CorrelationID, claimResponse("complete", "", focus.total*p.approvedPct/100))
		case "deny":
			c := claimResponse("error", "", 0)
			c["error"] = []any{map[string]any{"code": map[string]any{"coding": []any{map[string]any{"code": "CO-50"}}}}}
			cr = msg(payer.ClaimOnSubmit, req.CorrelationID, c)
		}
		paid := focus.total * p.paidPct / 100
		if p.claim == "approve" && (p.share > 0 || p.cut > 0) {
			paid = focus.total - p.share - p.cut
			c := claimResponse("complete", "", paid)
			cat := func(code string) map[string]any { return map[string]any{"coding": []any{map[string]any{"code": code}}} }
			benefit := map[string]any{"category": cat("benefit"), "amount": money(paid)}
			if p.cut > 0 {
				benefit["reason"] = cat("45")
			}
			c["item"] = []any{map[string]any{"itemSequence": 1, "adjudication": []any{
				map[string]any{"category": cat("submitted"), "amount": money(focus.total)},
				map[string]any{"category": cat("copay"), "amount": money(p.share)}, benefit}}}
			cr = msg(payer.ClaimOnSubmit, req.CorrelationID, c)
		}
		var pay payer.Message
		if p.claim == "approve" {
			pay = msg(payer.PaymentNoticeRequest, "payment-"+focus.id, map[string]any{"resourceType": "PaymentReconciliation",
				"paymentAmount": money(paid),
				"detail":        []any{map[string]any{"request": map[string]any{"reference": "Claim/" + focus.id}, "amount": money(paid)}}})
			pay.WorkflowID = "" // matched by the claim it names
		}
		switch {
		case p.claim == "silent":
		case p.paymentFirst:
			msgs = append(msgs, pay, cr)
		case pay.APICallID != "":
			msgs = append(msgs, cr, pay)
		default:
			msgs = append(msgs, cr)
		}
	}
	for _, m := range msgs {
		n := 1
		if p.twice {
			n = 2
		}
		for range n {
			if err := f.db.Tx(ctx, func(tx store.Tx) error { return f.svc.Receive(ctx, tx, m) }); err != nil {
				return payer.Ack{}, fmt.Errorf("deliver %s: %w", m.Action, err)
			}
		}
	}
	f.mu.Lock()
	lost := f.loseAck[req.Action]
	delete(f.loseAck, req.Action)
	f.mu.Unlock()
	if lost {
		return payer.Ack{}, fmt.Errorf("connection reset after the request was sent")
	}
	return payer.Ack{APICallID: req.IdempotencyKey, CorrelationID: req.CorrelationID, Timestamp: time.Now()}, nil
}

type focus struct {
	id      string
	total   int64
	related bool
}

// focusOf is the first resource of a Bundle careflow sent: its id and total.
func focusOf(b []byte) focus {
	var bundle struct {
		Entry []struct {
			Resource struct {
				ID    string `json:"id"`
				Total struct {
					Value json.RawMessage `json:"value"`
				} `json:"total"`
				Related []any `json:"related"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if json.Unmarshal(b, &bundle) != nil || len(bundle.Entry) == 0 {
		return focus{}
	}
	r := bundle.Entry[0].Resource
	t, _ := parseMinor(r.Total.Value, "EGP")
	return focus{id: r.ID, total: t, related: len(r.Related) > 0}
}

func money(minor int64) map[string]any {
	return map[string]any{"value": minorJSON(minor, "EGP"), "currency": "EGP"}
}

func claimResponse(outcome, preAuthRef string, approved int64) map[string]any {
	r := map[string]any{"resourceType": "ClaimResponse", "outcome": outcome}
	if preAuthRef != "" {
		r["preAuthRef"] = preAuthRef
	}
	if outcome != "error" && approved > 0 {
		r["total"] = []any{map[string]any{"category": map[string]any{"coding": []any{map[string]any{"code": "benefit"}}}, "amount": money(approved)}}
	}
	return r
}

// env is a revenue cycle on one backend: the real record, access policy,
// audit log, terminology and engine (started), with the fake payer.
type env struct {
	db     *store.DB
	svc    *Service
	eng    *engine.Engine
	rec    *record.Service
	acc    *access.Services
	payer  *fakePayer
	plans  sync.Map // workflow id → plan
	deflt  plan
	failAp sync.Map // step name → remaining Apply failures
}

func newEnv(t *testing.T, db *store.DB, deflt plan) *env {
	t.Helper()
	ctx := context.Background()
	mk, err := phi.ParseMasterKey(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := phi.OpenRing(ctx, db, mk, phi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := audit.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, db, audit.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	a := auth.NewAccess(db, nil, nil)
	e := &env{db: db, rec: record.New(db, ring, record.Options{}), deflt: deflt,
		acc: &access.Services{Authorizer: a.Authorizer, Policy: a.Policy, Audit: log}}
	if _, err := engine.MigrateRiver(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	e.eng, err = engine.New(engine.Config{DB: db, Registry: reg, Ring: ring, HousekeepingInterval: 200 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond, TimerFallback: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.payer = &fakePayer{db: db, claims: map[string]int{}, preauths: map[string]string{}, failOnce: map[payer.Action]bool{}, loseAck: map[payer.Action]bool{},
		plan: func(w string) plan {
			if p, ok := e.plans.Load(w); ok {
				return p.(plan)
			}
			return e.deflt
		}}
	recs := failingRecords{RunRecords: access.RunRecords{Record: e.rec, Access: e.acc}, env: e}
	e.svc, err = New(Config{DB: db, Engine: e.eng, Records: recs, Terms: terminology.NewService(db, terminology.Options{}),
		Payer: e.payer, Directory: directory{testPayer: {Code: testPayer, Name: "Test Payer", Roles: []string{"payor"}, Status: "Active"}},
		Fees: feeMap{prices: map[string]int64{"99213": 45000, "99285": 120000, "59400": 900000, "27447": 2500000},
			preauth: map[string]bool{"59400": true}, currency: "EGP"},
		Provider: Provider{Code: "provider-1@hcx", Name: "Test Hospital"}, Blind: ring,
		Waits: Waits{Claim: 400 * time.Millisecond, StatusPolls: 2}})
	if err != nil {
		t.Fatal(err)
	}
	e.payer.svc = e.svc
	if err := Register(reg, e.svc); err != nil {
		t.Fatal(err)
	}
	if err := e.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.eng.Stop(sctx)
	})
	return e
}

// failingRecords fails the CreateTx of a step once when the test asks
// (env.failAp), after the step's Do has run: the crash between Do and
// Apply, whose re-delivery must not send or write twice.
type failingRecords struct {
	access.RunRecords
	env *env
}

func (f failingRecords) CreateTx(ctx context.Context, tx store.Tx, who access.RunStep, typ string, body []byte) (string, error) {
	if v, ok := f.env.failAp.Load(who.Step); ok && v.(int) > 0 {
		f.env.failAp.Store(who.Step, v.(int)-1)
		return "", fmt.Errorf("simulated crash in step %s", who.Step)
	}
	return f.RunRecords.CreateTx(ctx, tx, who, typ, body)
}

func billing(e *env) Guard {
	return e.acc.For(access.Caller{Principal: &auth.Principal{Subject: "u-billing", Kind: auth.KindUser, Role: auth.Billing,
		Scopes: []string{"user/*.cruds"}}, RequestID: "req-1"})
}

func request(kind, nationalID string, dx, px []string) JourneyRequest {
	return JourneyRequest{Kind: kind,
		Patient:   PatientInput{NationalID: nationalID, Family: "حسن", Given: []string{"Mona"}, Gender: "female", Phone: "+201000000000"},
		Encounter: EncounterInput{Start: "2026-03-02"}, DiagnosisCodes: dx, ProcedureCodes: px,
		Insurance: InsuranceInput{Payer: testPayer, MemberID: "M-1"}}
}

// waitLimit bounds a test's wait for journeys: a guard against a hang, not
// a measure of speed (the package's tests run in parallel under the race
// detector, on two cores in CI).
const waitLimit = 90 * time.Second

// wait polls the journey until cond holds (or fails the test after waitLimit).
func (e *env) wait(t *testing.T, id string, what string, cond func(j *Journey) bool) *Journey {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		j, err := e.svc.Journey(context.Background(), billing(e), id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			run, _ := e.eng.GetRun(context.Background(), id)
			t.Fatalf("journey %s: %s never happened: status %s outcome %s reason %s; run %s at %s (%s)", id, what, j.Status, j.Outcome, j.Reason,
				run.Status, run.CurrentStep, run.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
