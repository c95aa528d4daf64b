package rcm

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// mrnRequest is a journey of the patient with medical record number n.
func mrnRequest(n int) JourneyRequest {
	r := request(KindStandard, "", []string{"E11.9"}, []string{"99213"})
	r.Patient.Identifiers = []Identifier{{System: "urn:example:mrn", Value: fmt.Sprintf("mrn-%d", n)}}
	return r
}

// Starts never wait for a second connection while their transaction holds
// one: on a pool of four, 32 concurrent starts (16 patients, each started
// twice at once, so that registrations contend for the identifier's lock)
// finish in seconds while other journeys run. A decision made inside the
// start's transaction that asked the pool for its consent or care-team
// read held every connection and waited for a fifth: every start then
// timed out (consent_unavailable) on PostgreSQL. SQLite's writes share
// one connection that no read waits for, so the test is PostgreSQL's.
//
// Not parallel: it measures time, and it runs before the package's
// parallel tests, alone.
func TestStartsOnASmallPoolDoNotStall(t *testing.T) {
	for _, d := range []store.Dialect{store.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			db := storetest.OpenMaxConns(t, d, 4)
			e := newEnv(t, db, plan{inforce: true, claim: "silent"})
			ctx := context.Background()
			for i := range 4 {
				if _, _, err := e.svc.StartJourney(ctx, billing(e), mrnRequest(1000+i), StartOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			const bound = 15 * time.Second
			sctx, cancel := context.WithTimeout(ctx, bound)
			defer cancel()
			var (
				wg       sync.WaitGroup
				patients [32]string
				errs32   [32]error
			)
			start := time.Now()
			for i := range patients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					j, _, err := e.svc.StartJourney(sctx, billing(e), mrnRequest(i%16), StartOptions{})
					errs32[i] = err
					if err == nil {
						patients[i] = j.Patient
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			for i, err := range errs32 {
				if err != nil {
					t.Fatalf("start %d of 32 after %v: %v", i, took, err)
				}
				if patients[i] != patients[i%16] {
					t.Fatalf("patient %d registered twice: %s and %s", i%16, patients[i], patients[i%16])
				}
			}
			t.Logf("%s: 32 concurrent starts on a pool of 4 in %v", d, took)
			if n := count(t, db, `SELECT count(*) FROM resources WHERE type = 'Patient'`); n != 20 {
				t.Fatalf("%d Patients for 20 people", n)
			}
		})
	}
}

// timedJourneys remembers the slowest start of a batch.
type timedJourneys struct {
	BatchJourneys
	mu      sync.Mutex
	slowest time.Duration
}

func (j *timedJourneys) StartEntry(ctx context.Context, req JourneyRequest, opts BatchEntryOptions) (string, error) {
	t0 := time.Now()
	id, err := j.BatchJourneys.StartEntry(ctx, req, opts)
	j.mu.Lock()
	j.slowest = max(j.slowest, time.Since(t0))
	j.mu.Unlock()
	return id, err
}

// A batch's starts, one after another while the journeys it started run,
// each take a moment on PostgreSQL as on SQLite: the loop that stalled
// took about 30 s on some starts and started 8 entries of 100 in 100 s
// (SQLite: 2.2 s). 24 entries here; 200 under make soak. PostgreSQL's: its
// pool is what the stall exhausted.
//
// Not parallel, as TestStartsOnASmallPoolDoNotStall.
func TestBatchStartsWhileJourneysRun(t *testing.T) {
	n := 24
	if os.Getenv("CAREFLOW_SOAK") == "1" {
		n = 200
	}
	t.Run(string(store.Postgres), func(t *testing.T) {
		db := storetest.Open(t, store.Postgres)
		e := newEnv(t, db, plan{inforce: true, claim: "silent"})
		batch := DecodedBatch{SourceHash: "test-batch"}
		for i := range n {
			// A few patients come twice: the second start reuses them.
			batch.Entries = append(batch.Entries, BatchEntry{Request: mrnRequest(i % (n - n/8))})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Duration(n)*time.Second)
		defer cancel()
		bs := NewBatches(db, nil)
		j := &timedJourneys{BatchJourneys: e.svc.BatchJourneys(billing(e))}
		start := time.Now()
		id, _, err := bs.Submit(ctx, BatchSubmission{CreatedBy: "u-billing", IdempotencyKey: "batch-1", Batch: batch}, j)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("after %v: %v", took, err)
		}
		st, err := bs.Status(context.Background(), id, j)
		if err != nil {
			t.Fatal(err)
		}
		if st.Started != n || st.Refused != 0 {
			t.Fatalf("status %+v", st)
		}
		t.Logf("%s: a batch of %d starts in %v, the slowest %v", db.Dialect(), n, took, j.slowest)
		if j.slowest > 10*time.Second {
			t.Errorf("a start took %v: it waited on something other than its own work", j.slowest)
		}
	})
}
