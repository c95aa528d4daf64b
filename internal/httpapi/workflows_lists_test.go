package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
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
		var wg sync.WaitGroup
		errc := make(chan error, 4)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < outOfReach; i += 4 {
					if _, _, err := eng.StartRun(ctx, engine.StartOptions{Definition: approvalDefinition, PatientID: otherPatient}); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
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
