package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// newIdleEngineServer is the authorization fixture served with an engine
// that is built but not started: runs started on it stay where they start,
// so a test can store thousands of them without workers running them.
func newIdleEngineServer(t *testing.T, db *store.DB) (*authzFixture, *engine.Engine) {
	t.Helper()
	f := newAuthzFixture(t, db, nil)
	if _, err := engine.MigrateRiver(context.Background(), db, nil); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	if err := reg.Register(approvalDef()); err != nil {
		t.Fatal(err)
	}
	ring := newTestRing(t, db)
	eng, err := engine.New(engine.Config{DB: db, Registry: reg, Ring: ring, Records: record.New(db, ring, record.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = New(Options{DB: db, Access: f.access, Audit: f.log, Engine: eng,
		TestPrincipal: func(r *http.Request) *auth.Principal {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.principals[r.Header.Get(testPrincipalHeader)]
		}})
	f.ts = httptest.NewServer(f.srv.Handler())
	t.Cleanup(f.ts.Close)
	return f, eng
}

// A clinician's run listing is confined to their patients in the query: a
// page is full, and paging ends, even when more runs out of their reach
// come first than any scan of the listing could examine (the handler used
// to filter engine pages after the fact, 5,000 records a request, and gave
// back an empty page with a cursor here).
func TestWorkflowRunPagesAreFullWhenMostRunsAreOutOfReach(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f, eng := newIdleEngineServer(t, db)
		doc := f.principal(t, "run-pager", auth.Physician, "")
		ctx := context.Background()
		const outOfReach = 5001
		// Started in transactions of 500: the test is about the listing,
		// and a commit a run made it the slowest test of the package.
		for from := 0; from < outOfReach; from += 500 {
			err := db.Tx(ctx, func(tx store.Tx) error {
				for i := from; i < min(from+500, outOfReach); i++ {
					if _, _, err := eng.StartRunTx(ctx, tx, engine.StartOptions{Definition: approvalDefinition, PatientID: otherPatient}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		var want []string
		for i := 0; i < 3; i++ {
			run, _, err := eng.StartRun(ctx, engine.StartOptions{Definition: approvalDefinition, PatientID: ownPatient})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, run.ID)
		}
		var got []string
		path := "/api/v1/workflow-runs?limit=2"
		for pages := 0; path != ""; pages++ {
			if pages > 2 {
				t.Fatalf("more than two pages for three runs: %v", got)
			}
			page := must[runPage](t, f.do(t, doc, "GET", path, ""), http.StatusOK)
			if page.Next != "" && len(page.Runs) != 2 {
				t.Fatalf("page %d holds %d runs and has a next cursor", pages, len(page.Runs))
			}
			for _, raw := range page.Runs {
				var run engine.Run
				if err := json.Unmarshal(raw, &run); err != nil {
					t.Fatal(err)
				}
				got = append(got, run.ID)
			}
			path = ""
			if page.Next != "" {
				path = "/api/v1/workflow-runs?limit=2&after=" + page.Next
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("walked %v, want the caller's runs %v", got, want)
		}
	})
}

// The SQL confinement of run and task lists lets through exactly the runs
// and tasks Decide allows one by one, for every role, purpose and kind of
// patient (in the caller's care team, another team's, assigned, behind an
// ended assignment, reached by breaking the glass, refusing treatment,
// permitting research, and no patient at all): a disagreement is either a
// leak (the response filter would catch it, but the page would be short)
// or a record the caller may see that no page ever shows.
func TestWorkflowListReachAgreesWithDecide(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		ctx := context.Background()
		const (
			assigned = "pat-l-assigned"
			glass    = "pat-l-glass"
			expired  = "pat-l-expired"
			refusing = "pat-l-refusing"
			research = "pat-l-research"
		)
		for _, p := range []string{refusing, research} {
			if err := f.access.CareTeams.AddPatient(ctx, f.teamA, p); err != nil {
				t.Fatal(err)
			}
		}
		f.setConsent(t, refusing, "treatment=deny")
		f.setConsent(t, research, "research=permit")
		var who []string
		for _, c := range []struct {
			role   auth.Role
			scopes string
		}{
			{auth.Physician, ""}, {auth.Nurse, ""}, {auth.Billing, ""}, {auth.ClinicalAdmin, ""}, {auth.Integration, ""},
			{auth.Admin, ""}, {auth.Auditor, ""}, {auth.Physician, "user/WorkflowRun.rs"}, {auth.Nurse, "session"},
		} {
			id := f.principal(t, fmt.Sprintf("lister-%d-%s", len(who), c.role), c.role, c.scopes)
			if c.role == auth.Physician || c.role == auth.Nurse {
				f.relate(t, id, string(c.role), "assigned", assigned)
				f.relate(t, id, string(c.role), "glass", glass)
				f.relate(t, id, string(c.role), "expired", expired)
			}
			who = append(who, id)
		}
		patients := []string{ownPatient, otherPatient, assigned, glass, expired, refusing, research, ""}
		for _, p := range patients {
			f.taskOf(t, f.startRun(t, approvalDefinition, p, nil).ID)
		}
		allRuns, err := f.eng.ListRuns(ctx, engine.RunFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		allTasks, err := f.eng.ListTasks(ctx, engine.TaskFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(allRuns) != len(patients) || len(allTasks) != len(patients) {
			t.Fatalf("%d runs and %d tasks stored, want %d of each", len(allRuns), len(allTasks), len(patients))
		}
		purposes := []auth.Purpose{"", auth.PurposeTreatment, auth.PurposePayment, auth.PurposeOperations, auth.PurposeResearch}
		compared, allowed := 0, 0
		for _, id := range who {
			f.mu.Lock()
			p := f.principals[id]
			f.mu.Unlock()
			for _, purpose := range purposes {
				for _, typ := range []string{runType, taskType} {
					req := auth.Request{Action: auth.ActionRead, ResourceType: typ, Purpose: purpose}
					ar, err := f.access.Authorizer.Reach(ctx, p, req)
					if err != nil {
						t.Fatal(err)
					}
					reach := engine.Reach(ar)
					var listed, want []string
					if typ == runType {
						runs, err := f.eng.ListRuns(ctx, engine.RunFilter{Reach: &reach, Limit: 1000})
						if err != nil {
							t.Fatal(err)
						}
						for _, r := range runs {
							listed = append(listed, r.ID)
						}
						for _, r := range allRuns {
							one := req
							one.PatientID = r.PatientID
							if f.access.Authorizer.Decide(ctx, p, one).Allowed {
								want = append(want, r.ID)
							}
						}
					} else {
						tasks, err := f.eng.ListTasks(ctx, engine.TaskFilter{Reach: &reach, Limit: 1000})
						if err != nil {
							t.Fatal(err)
						}
						for _, tk := range tasks {
							listed = append(listed, tk.ID)
						}
						for _, tk := range allTasks {
							one := req
							one.PatientID = tk.PatientID
							if f.access.Authorizer.Decide(ctx, p, one).Allowed {
								want = append(want, tk.ID)
							}
						}
					}
					if !slices.Equal(listed, want) {
						t.Errorf("%s (%s, scopes %v) %s for %q: listed %v, Decide allows %v (reach %+v)", id, p.Role, p.Scopes, typ, purpose, listed, want, reach)
					}
					compared += len(patients)
					allowed += len(want)
				}
			}
		}
		// The comparison means something only if both answers occur.
		if allowed == 0 || allowed == compared {
			t.Fatalf("%d of %d decisions allowed", allowed, compared)
		}
	})
}

// A clinician's task listing pages through exactly the tasks of their
// patients' runs, the patient read with each task in the listing's query:
// every page but the last is full, and the tasks of other patients' runs,
// stored first, take no room in any page.
func TestWorkflowTaskPagesHoldOnlyTasksInReach(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		doc := f.principal(t, "task-pager", auth.Physician, "")
		for i := 0; i < 6; i++ {
			f.taskOf(t, f.startRun(t, approvalDefinition, otherPatient, nil).ID)
		}
		var want []string
		for i := 0; i < 3; i++ {
			want = append(want, f.taskOf(t, f.startRun(t, approvalDefinition, ownPatient, nil).ID).ID)
		}
		var got []string
		path := "/api/v1/tasks?status=open&limit=2"
		for pages := 0; path != ""; pages++ {
			if pages > 2 {
				t.Fatalf("more than two pages for three tasks: %v", got)
			}
			page := must[taskPage](t, f.do(t, doc, "GET", path, ""), http.StatusOK)
			if page.Next != "" && len(page.Tasks) != 2 {
				t.Fatalf("page %d holds %d tasks and has a next cursor", pages, len(page.Tasks))
			}
			for _, raw := range page.Tasks {
				var task engine.Task
				if err := json.Unmarshal(raw, &task); err != nil {
					t.Fatal(err)
				}
				got = append(got, task.ID)
			}
			path = ""
			if page.Next != "" {
				path = "/api/v1/tasks?status=open&limit=2&after=" + page.Next
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("walked %v, want the caller's tasks %v", got, want)
		}
	})
}

// When the authorizer's sources cannot list patients (auth.ErrReachUnknown)
// the listing runs unconfined and the response filter decides every run:
// pages may come back short, but paging still walks to the caller's runs
// and nothing else is shown.
func TestWorkflowRunListWithoutAReachFiltersEachRun(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	f, eng := newIdleEngineServer(t, db)
	doc := f.principal(t, "unlisted-runs", auth.Physician, "")
	ctx := context.Background()
	var want []string
	for _, patient := range []string{otherPatient, otherPatient, otherPatient, ownPatient} {
		run, _, err := eng.StartRun(ctx, engine.StartOptions{Definition: approvalDefinition, PatientID: patient})
		if err != nil {
			t.Fatal(err)
		}
		if patient == ownPatient {
			want = append(want, run.ID)
		}
	}
	access := *f.access
	access.Authorizer = auth.NewAuthorizer(f.access.Policy, perPatientRelations{auth.NewRelationships(db)},
		perPatientConsents{f.access.Consents}, nil)
	opts := f.srv.opts
	opts.Access, opts.Registry = &access, nil
	ts := httptest.NewServer(New(opts).Handler())
	t.Cleanup(ts.Close)
	g := &authzFixture{db: db, access: &access, log: f.log, ts: ts, principals: f.principals}
	var got []string
	path := "/api/v1/workflow-runs?limit=2"
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatalf("paging does not end: %v", got)
		}
		page := must[runPage](t, g.do(t, doc, "GET", path, ""), http.StatusOK)
		for _, raw := range page.Runs {
			var run engine.Run
			if err := json.Unmarshal(raw, &run); err != nil {
				t.Fatal(err)
			}
			got = append(got, run.ID)
		}
		path = ""
		if page.Next != "" {
			path = "/api/v1/workflow-runs?limit=2&after=" + page.Next
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("walked %v, want the caller's run %v", got, want)
	}
}
