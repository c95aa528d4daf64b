package access

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// env is a record, an audit log and the access services over one real
// database.
type env struct {
	db  *store.DB
	rec *record.Service
	log *audit.Log
	svc *Services
}

func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	ctx := context.Background()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	mk, err := phi.ParseMasterKey(k[:])
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
	acc := auth.NewAccess(db, nil, nil)
	return &env{db: db, rec: record.New(db, ring, record.Options{}), log: log,
		svc: &Services{Authorizer: acc.Authorizer, Policy: acc.Policy, Audit: log}}
}

func (e *env) entries(t *testing.T, f audit.Filter) []audit.Entry {
	t.Helper()
	f.Limit = audit.MaxListLimit
	page, err := audit.List(context.Background(), e.db, f)
	if err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

// A workflow step acting as the system on behalf of a run writes through
// the same guard as a person: each write is audited in its transaction
// under an actor naming the run, its reads are audited when it flushes,
// and it stores nothing the API would refuse (a type the policy serves to
// no role, a record of no patient no role could read back).
func TestWorkflowRunCaller(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		g := e.svc.For(WorkflowRun("run-7", "admit"))

		pat, _, err := e.rec.Create(ctx, g, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Kept"}]}`), "")
		if err != nil {
			t.Fatal(err)
		}
		obs, _, err := e.rec.Create(ctx, g, "Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+pat.ID+`"}}`), "")
		if err != nil {
			t.Fatal(err)
		}
		writes := e.entries(t, audit.Filter{Actor: "workflow-run:run-7", Action: audit.ActionCreate})
		if len(writes) != 2 {
			t.Fatalf("the run's creates are audited %d times, want 2: %+v", len(writes), writes)
		}
		for _, w := range writes {
			if w.Role != "workflow" || w.RequestID != "run-7/admit" || w.Purpose != audit.PurposeOperations || w.PatientID != pat.ID || w.Outcome != audit.OutcomeSuccess {
				t.Fatalf("write entry %+v: want role workflow, request run-7/admit, purpose %s, patient %s", w, audit.PurposeOperations, pat.ID)
			}
		}

		// A read is kept until the step flushes, then appended.
		if _, err := e.rec.Read(ctx, g, "Observation", obs.ID); err != nil {
			t.Fatal(err)
		}
		if n := len(e.entries(t, audit.Filter{Actor: "workflow-run:run-7", Action: audit.ActionRead})); n != 0 {
			t.Fatalf("%d read entries before the flush, want 0", n)
		}
		if err := g.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if rs := e.entries(t, audit.Filter{Actor: "workflow-run:run-7", Action: audit.ActionRead}); len(rs) != 1 || rs[0].ResourceID != obs.ID {
			t.Fatalf("read entries after the flush: %+v, want the Observation's", rs)
		}

		// Refused as the API refuses them, and nothing is written or audited.
		_, _, err = e.rec.Create(ctx, g, "Basic", []byte(`{"resourceType":"Basic","code":{"text":"x"}}`), "")
		if !errs.Is(err, errs.UnsupportedType) {
			t.Fatalf("a Basic (served to no role): %v, want unsupported type", err)
		}
		_, _, err = e.rec.Create(ctx, g, "Consent", []byte(`{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"text":"x"}],"policyRule":{"text":"x"}}`), "")
		if !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "names no patient") {
			t.Fatalf("a Consent of no patient: %v, want forbidden naming the missing patient", err)
		}
		if all := e.entries(t, audit.Filter{Actor: "workflow-run:run-7"}); len(all) != 3 {
			t.Fatalf("the run has %d entries, want its 2 writes and 1 read", len(all))
		}
	})
}

// Deny by default: a caller that is neither a principal nor the system may
// do nothing, and a person is decided by the policy, the denial audited
// (after the flush) under the person's id, with nothing written.
func TestDenyByDefault(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		pat, _, err := e.rec.Create(ctx, e.svc.For(WorkflowRun("run-1", "s")), "Patient", []byte(`{"resourceType":"Patient"}`), "")
		if err != nil {
			t.Fatal(err)
		}
		nobody := e.svc.For(Caller{RequestID: "r-0"})
		if _, err := e.rec.Read(ctx, nobody, "Patient", pat.ID); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("read by no caller: %v, want unauthenticated", err)
		}
		if _, _, err := e.rec.Create(ctx, nobody, "Patient", []byte(`{"resourceType":"Patient"}`), ""); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("create by no caller: %v, want unauthenticated", err)
		}

		// A physician with no relationship to the patient: the record reads
		// like a missing one, and the denial is in the log.
		doc := e.svc.For(Caller{Principal: &auth.Principal{Subject: "u-doc", Kind: auth.KindUser, Role: auth.Physician, Scopes: []string{"user/*.cruds"}}, RequestID: "r-1", ClientAddr: "192.0.2.1"})
		if _, err := e.rec.Read(ctx, doc, "Patient", pat.ID); !errs.Is(err, errs.NotFound) {
			t.Fatalf("read out of reach: %v, want not found", err)
		}
		if _, _, err := e.rec.Create(ctx, doc, "Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+pat.ID+`"}}`), ""); err == nil {
			t.Fatal("a physician created an Observation for a patient out of reach")
		}
		if err := doc.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		denied := e.entries(t, audit.Filter{Actor: "u-doc", Outcome: audit.OutcomeDenied})
		if len(denied) != 2 {
			t.Fatalf("%d denials audited, want the read's and the create's: %+v", len(denied), denied)
		}
		for _, d := range denied {
			if d.Role != "physician" || d.RequestID != "r-1" || d.ClientAddr != "192.0.2.1" || d.PatientID != pat.ID {
				t.Fatalf("denial entry %+v: want the caller's role, request, address and the patient", d)
			}
		}
		if n := len(e.entries(t, audit.Filter{ResourceType: "Observation", Outcome: audit.OutcomeSuccess})); n != 0 {
			t.Fatalf("%d allowed Observation entries, want none (nothing was written), only the denial", n)
		}
	})
}

// The purpose of use a caller states is the one decided for, whether the
// surface states it in the Caller or in the context.
func TestStatedPurpose(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		doc := &auth.Principal{Subject: "u-doc", Kind: auth.KindUser, Role: auth.Physician, Scopes: []string{"user/*.cruds"}}
		req := auth.Request{Action: auth.ActionSearch, ResourceType: "Patient"}
		if d := e.svc.For(Caller{Principal: doc}).Check(ctx, req); d.Reason == auth.ReasonPurposeNotAllowed {
			t.Fatalf("the role's default purpose: %+v", d)
		}
		d := e.svc.For(Caller{Principal: doc, Purpose: auth.PurposeResearch}).Check(ctx, req)
		if d.Allowed || d.Reason != auth.ReasonPurposeNotAllowed {
			t.Fatalf("a physician stating research: %+v, want purpose_not_allowed", d)
		}
		d = e.svc.For(Caller{Principal: doc}).Check(auth.WithPurpose(ctx, auth.PurposeResearch), req)
		if d.Allowed || d.Reason != auth.ReasonPurposeNotAllowed {
			t.Fatalf("research stated in the context: %+v, want purpose_not_allowed", d)
		}
	})
}

// A grant over patients one by one does not cover a stored record that
// names no patient: AuthorizeRecord refuses it as patient_required and
// audits the refusal, where Authorize lets the listing through.
func TestAuthorizeRecordOfNoPatient(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		doc := &auth.Principal{Subject: "u-doc", Kind: auth.KindUser, Role: auth.Physician, Scopes: []string{"user/*.cruds"}}
		g := e.svc.For(Caller{Principal: doc, RequestID: "r-2"})
		a := Action{Req: auth.Request{Action: auth.ActionSearch, ResourceType: "Patient"}, ResourceID: "no-patient-record"}
		if d, err := g.Authorize(ctx, a); err != nil || !d.RecheckRecords {
			t.Fatalf("Authorize: %+v %v, want allowed to be rechecked per record", d, err)
		}
		d, err := g.AuthorizeRecord(ctx, a)
		if !errs.Is(err, errs.Forbidden) || d.Reason != auth.ReasonPatientRequired {
			t.Fatalf("AuthorizeRecord: %+v %v, want patient_required", d, err)
		}
		denied := e.entries(t, audit.Filter{Actor: "u-doc", Outcome: audit.OutcomeDenied})
		if len(denied) != 1 || denied[0].ResourceID != "no-patient-record" || denied[0].RequestID != "r-2" {
			t.Fatalf("denials %+v, want the record's", denied)
		}
		// The type question, unaudited: a physician may read Patients, and
		// may not read the audit log.
		if d := g.CheckType(ctx, auth.Request{Action: auth.ActionRead, ResourceType: "Patient"}); !d.Allowed {
			t.Fatalf("CheckType Patient: %+v", d)
		}
		if d := g.CheckType(ctx, auth.Request{Action: auth.ActionRead, ResourceType: "AuditEvent"}); d.Allowed {
			t.Fatalf("CheckType AuditEvent: %+v, want refused", d)
		}
		if n := len(e.entries(t, audit.Filter{Actor: "u-doc"})); n != 2 {
			t.Fatalf("%d entries, want Authorize's and AuthorizeRecord's only", n)
		}
	})
}
