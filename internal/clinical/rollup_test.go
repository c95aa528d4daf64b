package clinical

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// A bucket's value is within 1 % of every duration filed in it (and its
// rounding to a tenth of a minute; exact to a tenth under ten minutes), and buckets grow with durations.
func TestBucketsKeepDurationsWithinOnePercent(t *testing.T) {
	prev := int64(-1)
	for tenths := int64(0); tenths < 60*24*400*10; tenths += 1 + tenths/500 {
		d := time.Duration(tenths) * time.Minute / 10
		b := bucketOf(d)
		if b < prev {
			t.Fatalf("bucket of %v (%d) below the one before (%d)", d, b, prev)
		}
		prev = b
		got, want := bucketMinutes(b), d.Minutes()
		if want < 10 {
			if math.Abs(got-want) > 0.051 {
				t.Fatalf("%v: bucket value %v minutes", d, got)
			}
			continue
		}
		if math.Abs(got-want) > 0.01*want+0.05 {
			t.Fatalf("%v: bucket value %v minutes, %.2f %% off", d, got, 100*math.Abs(got-want)/want)
		}
	}
	if bucketOf(-time.Minute) != 0 {
		t.Errorf("a negative duration (clock skew) is not filed as zero")
	}
}

// A cellset comes back from its bytes as it went in; damaged bytes are an
// error, never a panic or a huge allocation.
func TestCellsetRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pairs := func() []pair {
		var ps []pair
		k := int64(r.IntN(1000))
		for range r.IntN(6) {
			k += 1 + int64(r.IntN(100000))
			ps = append(ps, pair{k, 1 + int64(r.IntN(50))})
		}
		return ps
	}
	var cs cellset
	for i := range 20 {
		c := cell{status: pairs(), ttc: pairs(), done: pairs()}
		for j := range r.IntN(4) {
			c.steps = append(c.steps, stepCell{code: "step_" + string(rune('a'+j)), role: "nurse", wait: pairs(), pending: pairs(), due: pairs()})
		}
		cs = append(cs, entry{key: subKey{typ: TypeAdmission, rank: int64(i % 3), provider: "p-" + string(rune('a'+i))}, c: c})
	}
	b := encodeCellset(cs)
	got, err := decodeCellset(b)
	if err != nil {
		t.Fatal(err)
	}
	if dumpCells(got) != dumpCells(cs) {
		t.Fatalf("round trip:\n%s\n%s", dumpCells(got), dumpCells(cs))
	}
	for i := range len(b) {
		if _, err := decodeCellset(b[:i]); err == nil {
			t.Fatalf("a cellset cut at %d of %d bytes decoded", i, len(b))
		}
	}
	if _, err := decodeCellset([]byte{cellsetVersion, 0xff, 0xff, 0xff, 0xff, 0x0f}); err == nil {
		t.Fatal("a cellset claiming 4 billion entries decoded")
	}
}

// Adding a contribution and taking it away leaves nothing; a priority
// change moves a workflow from one cell to another.
func TestContributionsAddAndTakeAway(t *testing.T) {
	created := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	started, due := created.Add(12*time.Minute), created.Add(30*time.Minute)
	w := &workflowRow{ID: "w", Type: TypeAdmission, Priority: PriorityRoutine, Status: StatusActive, PatientID: "p1", ProviderID: "d1", CreatedAt: created}
	steps := []*stepRow{
		{Code: "triage", Role: "nurse", Status: StepInProgress, CreatedAt: created, StartedAt: &started, DueAt: &due},
		{Code: "assessment", Role: "physician", Status: StepPending, CreatedAt: created, DueAt: &due},
	}
	d := &rollupDelta{global: map[globalKey]*cellset{}, patient: map[patientKey]*cellset{}}
	before := contributionOf(w, steps)
	d.add(&before, 1)
	w.Priority = PriorityEmergency
	after := contributionOf(w, steps)
	d.add(&before, -1)
	d.add(&after, 1)
	var nonEmpty []globalKey
	for k, cs := range d.global {
		if len(*cs) > 0 {
			nonEmpty = append(nonEmpty, k)
		}
	}
	if len(nonEmpty) != 1 || nonEmpty[0].key.rank != 0 {
		t.Fatalf("after a priority change the global cells are %v", rollupDump(d.global, nil))
	}
	pc := d.patient[patientKey{"p1", unixDay(created)}]
	if len(*pc) != 1 || (*pc)[0].key.rank != 0 {
		t.Fatalf("after a priority change the patient's cells are %s", dumpCells(*pc))
	}
	want := cell{status: []pair{{0, 1}}, steps: []stepCell{
		{code: "assessment", role: "physician", pending: []pair{{created.Unix() / 60, 1}}, due: []pair{{due.Unix() / 60, 1}}},
		{code: "triage", role: "nurse", wait: []pair{{bucketOf(12 * time.Minute), 1}}, due: []pair{{due.Unix() / 60, 1}}},
	}}
	if !reflect.DeepEqual((*pc)[0].c, want) {
		t.Fatalf("cell %s, want %s", dumpCells(*pc), dumpCells(cellset{{key: (*pc)[0].key, c: want}}))
	}
	d.add(&after, -1)
	for _, cs := range d.patient {
		if len(*cs) != 0 {
			t.Fatalf("taken away, the cells still hold %s", dumpCells(*cs))
		}
	}
}

// BenchmarkAnalyticsOfCells is the analytics' own work for a
// clinical_admin's 30 days at the benchmark's density (100,000 workflows
// over 60 days, 6 types, 3 priorities, 12 providers: 6,480 cells of about
// 8 workflows, most active, each with 5 steps): decoding the cells and
// summing them, without the database.
func BenchmarkAnalyticsOfCells(b *testing.B) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var blobs [][]byte
	var days []int64
	n := 0
	for d := range 30 {
		for typ := range 6 {
			for rank := range 3 {
				for p := range 12 {
					cs := cellset{}
					for range 8 {
						n++
						created := now.AddDate(0, 0, -d).Add(-time.Duration(n%1440) * time.Minute)
						w := &workflowRow{Type: WorkflowType(rune('a' + typ)), Priority: priorityOfRank(int64(rank)), ProviderID: string(rune('a' + p)),
							Status:    []Status{StatusActive, StatusActive, StatusActive, StatusActive, StatusActive, StatusActive, StatusCompleted, StatusCancelled}[n%8],
							PatientID: "p", CreatedAt: created}
						var steps []*stepRow
						for s := range 5 {
							due := created.Add(time.Duration(30*(s+1)) * time.Minute)
							st := &stepRow{Code: "step" + string(rune('a'+s)), Role: "nurse", Status: StepPending, CreatedAt: created, DueAt: &due}
							if w.Status == StatusCompleted {
								started := created.Add(time.Duration(5+n%50) * time.Minute)
								st.Status, st.StartedAt = StepCompleted, &started
							}
							steps = append(steps, st)
						}
						if w.Status == StatusCompleted {
							done := created.Add(time.Duration(60+n%600) * time.Minute)
							w.CompletedAt = &done
						}
						c := contributionOf(w, steps)
						cs.add(c.key, &c.c, 1)
					}
					blobs = append(blobs, encodeCellset(cs))
					days = append(days, unixDay(now)-int64(d))
				}
			}
		}
	}
	size := 0
	for _, bl := range blobs {
		size += len(bl)
	}
	b.ReportMetric(float64(size)/float64(len(blobs)), "bytes/cell")
	b.ResetTimer()
	for range b.N {
		agg := newAggregate(Filter{}, now)
		for i, bl := range blobs {
			if err := agg.addBlob(days[i], bl, 1); err != nil {
				b.Fatal(err)
			}
		}
		if a := agg.result(); a.Total != n {
			b.Fatalf("total %d, want %d", a.Total, n)
		}
	}
}
