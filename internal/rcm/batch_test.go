package rcm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// recordingJourneys stands in for the journeys' Service behind the port a
// batch declares: it starts a journey once per idempotency key (as
// StartJourney does), refuses a payer it does not know as the journeys
// do, and fails with a transient error where the test says so.
type recordingJourneys struct {
	mu       sync.Mutex
	byKey    map[string]string
	calls    int
	failAt   map[string]bool // idempotency keys whose next start fails transiently
	states   map[string]JourneyState
	batchIDs map[string]string
}

func newRecordingJourneys() *recordingJourneys {
	return &recordingJourneys{byKey: map[string]string{}, failAt: map[string]bool{}, states: map[string]JourneyState{}, batchIDs: map[string]string{}}
}

func (r *recordingJourneys) StartEntry(ctx context.Context, req JourneyRequest, opts BatchEntryOptions) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.failAt[opts.IdempotencyKey] {
		delete(r.failAt, opts.IdempotencyKey)
		return "", errs.E(errs.Unavailable, "the database is busy")
	}
	if req.Insurance.Payer != "payer-misr@hcx" {
		return "", errs.E(errs.Invalid, "is not a payer careflow can reach").InField("insurance.payer")
	}
	if id, ok := r.byKey[opts.IdempotencyKey]; ok {
		return id, nil
	}
	id := fmt.Sprintf("journey-%d", len(r.byKey))
	r.byKey[opts.IdempotencyKey] = id
	r.batchIDs[id] = opts.BatchID
	r.states[id] = JourneyState{State: "running"}
	return id, nil
}

func (r *recordingJourneys) States(ctx context.Context, ids []string) (map[string]JourneyState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]JourneyState{}
	for _, id := range ids {
		if s, ok := r.states[id]; ok {
			out[id] = s
		}
	}
	return out, nil
}

func journeyJSON(i int, payer string) string {
	b, _ := json.Marshal(JourneyRequest{
		Kind:           KindStandard,
		Patient:        PatientInput{NationalID: "29001011234567", Family: fmt.Sprintf("عبد الرحمن-%d", i), Given: []string{"Yasmin"}, BirthDate: "1990-01-01", Gender: "female"},
		Encounter:      EncounterInput{Start: "2026-03-01"},
		DiagnosisCodes: []string{"E11.9"},
		ProcedureCodes: []string{"99213"},
		Insurance:      InsuranceInput{Payer: payer, MemberID: fmt.Sprintf("MEM-%06d", i)},
	})
	return string(b)
}

func TestDecodeBatchReadsArraysAndNDJSON(t *testing.T) {
	t.Parallel()
	a, b := journeyJSON(1, "p"), journeyJSON(2, "p")
	arr, err := DecodeBatch(strings.NewReader("["+a+","+b+"]"), false)
	if err != nil || len(arr.Entries) != 2 || arr.Entries[1].Request.Insurance.MemberID != "MEM-000002" || arr.Entries[0].Err != nil {
		t.Fatalf("array: %+v %v", arr, err)
	}
	nd, err := DecodeBatch(strings.NewReader(a+"\n\n"+b+"\n"), true)
	if err != nil || len(nd.Entries) != 2 || nd.Entries[0].Request.Patient.Family != "عبد الرحمن-1" {
		t.Fatalf("ndjson: %+v %v", nd, err)
	}
	if arr.SourceHash == nd.SourceHash || len(arr.SourceHash) != 64 {
		t.Errorf("hashes %s %s", arr.SourceHash, nd.SourceHash)
	}

	// Bad entries are refused one by one, naming the field, never the value.
	mixed, err := DecodeBatch(strings.NewReader(a+"\n"+`{"kind":"standard","colour":"blue"}`+"\n"+`{"kind":7}`+"\n"+`not json at all`+"\n"+`["x"]`+"\n"), true)
	if err != nil || len(mixed.Entries) != 5 {
		t.Fatalf("mixed: %+v %v", mixed, err)
	}
	wants := []struct{ field, msg string }{{"", ""}, {"colour", "is not a field"}, {"kind", "wrong JSON type"}, {"", "not valid JSON"}, {"", "must be a JSON object"}}
	for i, w := range wants {
		e := mixed.Entries[i].Err
		if w.msg == "" {
			if e != nil {
				t.Errorf("entry %d: %v", i, e)
			}
			continue
		}
		ee, ok := errs.As(e)
		if !ok || ee.Field != w.field || !strings.Contains(ee.Message, w.msg) || strings.Contains(e.Error(), "blue") {
			t.Errorf("entry %d: %v, want %s %q", i, e, w.field, w.msg)
		}
	}

	for name, body := range map[string]string{
		"an object":        a,
		"a broken array":   "[" + a + ",",
		"an empty array":   "[]",
		"two arrays":       "[" + a + "][" + b + "]",
		"a syntax error":   "[" + a + ", {]",
		"too many entries": "[" + strings.Repeat(a+",", MaxBatchEntries) + a + "]",
	} {
		if _, err := DecodeBatch(strings.NewReader(body), false); !errs.Is(err, errs.Invalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func batchOf(t *testing.T, n int, payerOf func(i int) string) DecodedBatch {
	t.Helper()
	var b strings.Builder
	for i := range n {
		b.WriteString(journeyJSON(i, payerOf(i)) + "\n")
	}
	d, err := DecodeBatch(strings.NewReader(b.String()), true)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBatchStartsEveryEntryOnceAndResumes(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		bs := NewBatches(db, nil)
		j := newRecordingJourneys()
		// 250 entries: three chunks; entry 7 names a payer nobody knows.
		batch := batchOf(t, 250, func(i int) string {
			if i == 7 {
				return "nobody@hcx"
			}
			return "payer-misr@hcx"
		})
		batch.Entries[12] = BatchEntry{Err: errs.E(errs.Invalid, "is not a field of a journey request").InField("colour")}
		// The database gives way at entry 150: the batch stops there.
		sub := BatchSubmission{CreatedBy: "user-1", IdempotencyKey: "upload-2026-03-01", Batch: batch}
		id, created, err := bs.Submit(ctx, sub, journeysFailingAt(j, 150))
		if !errs.Is(err, errs.Unavailable) || !created || id == "" {
			t.Fatalf("first submit: %s %v %v", id, created, err)
		}
		st, err := bs.Status(ctx, id, j)
		if err != nil {
			t.Fatal(err)
		}
		if st.Total != 250 || st.Started+st.Refused != 150 || st.Refused != 2 || st.Pending != 100 || st.Done {
			t.Fatalf("after the stop: %+v", st)
		}
		// The same POST again resumes at entry 150 and starts nothing twice.
		calls := j.calls
		id2, created, err := bs.Submit(ctx, sub, j)
		if err != nil || created || id2 != id {
			t.Fatalf("resume: %s %v %v", id2, created, err)
		}
		if got := j.calls - calls; got != 100 {
			t.Errorf("the resumed submit made %d starts, want 100", got)
		}
		if len(j.byKey) != 248 {
			t.Errorf("%d journeys started, want 248", len(j.byKey))
		}
		for jid, b := range j.batchIDs {
			if b != id {
				t.Fatalf("journey %s started with batch %q", jid, b)
			}
		}
		st, _ = bs.Status(ctx, id, j)
		if st.Started != 248 || st.Refused != 2 || st.Pending != 0 || st.States["running"] != 248 || st.Done {
			t.Fatalf("after resuming: %+v", st)
		}
		if len(st.Failures) != 2 || st.Failures[0].Index != 7 || st.Failures[0].Field != "insurance.payer" || st.Failures[1].Index != 12 || st.Failures[1].Field != "colour" {
			t.Errorf("failures = %+v", st.Failures)
		}

		// The journeys end: paid, denied, and one fails.
		j.mu.Lock()
		n := 0
		for jid := range j.states {
			switch {
			case jid == "journey-3":
				j.states[jid] = JourneyState{State: "failed", Final: true, Failed: true}
			case n%2 == 0:
				j.states[jid] = JourneyState{State: "paid", Final: true}
			default:
				j.states[jid] = JourneyState{State: "denied", Final: true}
			}
			n++
		}
		j.mu.Unlock()
		st, _ = bs.Status(ctx, id, j)
		if !st.Done || st.Final != 248 || st.States["failed"] != 1 || st.States["paid"]+st.States["denied"] != 247 || len(st.Failures) != 3 {
			t.Fatalf("at the end: %+v", st)
		}
		if f := st.Failures[0]; f.JourneyID != "journey-3" || f.State != "failed" || f.Index != 3 {
			t.Errorf("failed journey = %+v (all %+v)", f, st.Failures)
		}

		// The key with other content is refused; another principal's same
		// key is its own batch.
		other := batchOf(t, 3, func(int) string { return "payer-misr@hcx" })
		if _, _, err := bs.Submit(ctx, BatchSubmission{CreatedBy: "user-1", IdempotencyKey: "upload-2026-03-01", Batch: other}, j); !errs.Is(err, errs.Conflict) {
			t.Errorf("same key, other content: %v", err)
		}
		id3, created, err := bs.Submit(ctx, BatchSubmission{CreatedBy: "user-2", IdempotencyKey: "upload-2026-03-01", Batch: other}, j)
		if err != nil || !created || id3 == id {
			t.Errorf("another principal's key: %s %v %v", id3, created, err)
		}
		if _, err := bs.Status(ctx, "0190d6a4-0000-7000-8000-000000000000", j); !errs.Is(err, errs.NotFound) {
			t.Errorf("unknown batch: %v", err)
		}
		if _, err := bs.Status(ctx, "../etc", j); !errs.Is(err, errs.NotFound) {
			t.Errorf("malformed id: %v", err)
		}

		// The database holds outcomes, never the entries: no name, member
		// or national id.
		dump := storetest.Dump(t, db)
		for _, v := range []string{"عبد الرحمن", "Yasmin", "MEM-000001", "29001011234567"} {
			if bytes.Contains(dump, []byte(v)) {
				t.Errorf("the dump holds %q", v)
			}
		}
	})
}

// failingAt makes the journeys' start fail transiently at one entry.
type failingAt struct {
	*recordingJourneys
	index int
}

func journeysFailingAt(j *recordingJourneys, index int) BatchJourneys {
	return failingAt{recordingJourneys: j, index: index}
}

func (f failingAt) StartEntry(ctx context.Context, req JourneyRequest, opts BatchEntryOptions) (string, error) {
	if strings.HasSuffix(opts.IdempotencyKey, fmt.Sprintf(":%d", f.index)) {
		return "", errs.E(errs.Unavailable, "the database is busy")
	}
	return f.recordingJourneys.StartEntry(ctx, req, opts)
}

func TestBatchStopsWhenTheRequestEnds(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		bs := NewBatches(db, nil)
		j := newRecordingJourneys()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The client goes away while the third entry starts.
		stopper := cancellingAt{recordingJourneys: j, after: 3, cancel: cancel}
		id, _, err := bs.Submit(ctx, BatchSubmission{CreatedBy: "u", Batch: batchOf(t, 5, func(int) string { return "payer-misr@hcx" })}, stopper)
		if !errs.Is(err, errs.Unavailable) || id == "" {
			t.Fatalf("cancelled submit: %v", err)
		}
		// What was started before the end is recorded.
		st, err := bs.Status(context.Background(), id, j)
		if err != nil || st.Started != 3 || st.Pending != 2 || st.Done {
			t.Errorf("status %+v %v", st, err)
		}
	})
}

// cancellingAt cancels the submitting request's context once the after'th
// entry has started.
type cancellingAt struct {
	*recordingJourneys
	after  int
	cancel context.CancelFunc
}

func (c cancellingAt) StartEntry(ctx context.Context, req JourneyRequest, opts BatchEntryOptions) (string, error) {
	id, err := c.recordingJourneys.StartEntry(ctx, req, opts)
	c.recordingJourneys.mu.Lock()
	n := len(c.byKey)
	c.recordingJourneys.mu.Unlock()
	if n == c.after {
		c.cancel()
	}
	return id, err
}

// A batch through the real journeys: the service starts each entry as the
// billing clerk's own start, the fake payer pays, and the batch's counts
// follow the journeys to their outcomes.
func TestBatchOfFiveClaimsThroughTheJourneys(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, claim: "approve", approvedPct: 100, paidPct: 100})
		ctx := context.Background()
		var lines []string
		for i, nid := range []string{"29001011234567", "28502151234561", "29911221234568", "30005051234563", "29203031234565"} {
			req := request(KindStandard, nid, []string{"E11.9"}, []string{"99213"})
			req.Patient.Family = fmt.Sprintf("حسن-%d", i)
			switch i {
			case 1:
				req.Insurance.Payer = "nobody@hcx" // refused at the start
			case 3:
				req.ProcedureCodes = []string{"99285"}
			}
			b, _ := json.Marshal(req)
			lines = append(lines, string(b))
		}
		batch, err := DecodeBatch(strings.NewReader(strings.Join(lines, "\n")), true)
		if err != nil {
			t.Fatal(err)
		}
		bs := NewBatches(db, nil)
		sub := BatchSubmission{CreatedBy: "u-billing", IdempotencyKey: "five", Batch: batch}
		id, created, err := bs.Submit(ctx, sub, e.svc.BatchJourneys(billing(e)))
		if err != nil || !created {
			t.Fatalf("submit: %v %v", created, err)
		}
		// Sent again, the batch starts no second journey.
		if again, created, err := bs.Submit(ctx, sub, e.svc.BatchJourneys(billing(e))); err != nil || created || again != id {
			t.Fatalf("resubmit: %s %v %v", again, created, err)
		}
		page, err := e.svc.Journeys(ctx, billing(e), JourneyFilter{BatchID: id})
		if err != nil || len(page.Journeys) != 4 {
			t.Fatalf("journeys of the batch: %d %v", len(page.Journeys), err)
		}
		deadline := time.Now().Add(waitLimit)
		var st *BatchStatus
		for {
			st, err = bs.Status(ctx, id, e.svc.BatchJourneys(billing(e)))
			if err != nil {
				t.Fatal(err)
			}
			if st.Done || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !st.Done || st.Started != 4 || st.Refused != 1 || st.States[OutcomePaid] != 4 || st.Final != 4 {
			t.Fatalf("status %+v", st)
		}
		if len(st.Failures) != 1 || st.Failures[0].Index != 1 || st.Failures[0].Field != "insurance.payer" || strings.Contains(st.Failures[0].Reason, "nobody") {
			t.Errorf("failures %+v", st.Failures)
		}
	})
}

func TestBatchStopsStartingAtItsDeadlineAndContinues(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var mu sync.Mutex
		now := day("2026-03-01")
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		bs := NewBatches(db, clock)
		j := newRecordingJourneys()
		// Each start takes a minute of the clock; the request may start
		// entries for two and a half.
		ticking := tickingJourneys{recordingJourneys: j, tick: func() { mu.Lock(); now = now.Add(time.Minute); mu.Unlock() }}
		sub := BatchSubmission{CreatedBy: "u", Batch: batchOf(t, 5, func(int) string { return "payer-misr@hcx" }), StopAfter: clock().Add(150 * time.Second)}
		id, created, err := bs.Submit(ctx, sub, ticking)
		if err != nil || !created {
			t.Fatal(err)
		}
		st, _ := bs.Status(ctx, id, j)
		if st.Started != 3 || st.Pending != 2 {
			t.Fatalf("after the deadline: %+v", st)
		}
		// Without a client key the batch's id is its key.
		sub.IdempotencyKey, sub.StopAfter = id, time.Time{}
		again, created, err := bs.Submit(ctx, sub, ticking)
		if err != nil || created || again != id {
			t.Fatalf("continue: %s %v %v", again, created, err)
		}
		if st, _ = bs.Status(ctx, id, j); st.Started != 5 || st.Pending != 0 || len(j.byKey) != 5 {
			t.Fatalf("after continuing: %+v", st)
		}
	})
}

type tickingJourneys struct {
	*recordingJourneys
	tick func()
}

func (tj tickingJourneys) StartEntry(ctx context.Context, req JourneyRequest, opts BatchEntryOptions) (string, error) {
	tj.tick()
	return tj.recordingJourneys.StartEntry(ctx, req, opts)
}
