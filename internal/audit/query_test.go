package audit

import (
	"context"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestListFiltersAndPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, clock, _ := openLog(t, db, nil)
		start := stampTime(clock.Now())
		for i := range 30 {
			if _, err := l.Append(ctx, sampleEntry(i)); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Minute)
		}
		seqs := func(p Page) []int64 {
			var out []int64
			for _, e := range p.Entries {
				out = append(out, e.Seq)
			}
			return out
		}
		cases := []struct {
			name string
			f    Filter
			want []int64
		}{
			{"by patient", Filter{PatientID: "pat-2"}, []int64{2, 7, 12, 17, 22, 27}},
			{"by actor and outcome", Filter{Actor: "user-3", Outcome: OutcomeDenied}, []int64{3}},
			{"by resource", Filter{ResourceType: "Observation", ResourceID: "obs-9"}, []int64{9}},
			{"by request", Filter{RequestID: "req-21"}, []int64{21}},
			{"break-the-glass for review", Filter{Severity: SeverityHigh}, []int64{4, 17}},
			{"by action", Filter{Action: ActionBreakGlass}, []int64{4, 17}},
			{"by time range", Filter{Since: start.Add(10 * time.Minute), Until: start.Add(13 * time.Minute)}, []int64{10, 11, 12}},
			{"newest first", Filter{PatientID: "pat-2", Newest: true, Limit: 3}, []int64{27, 22, 17}},
			{"newest first, next page", Filter{PatientID: "pat-2", Newest: true, Limit: 3, After: ptr(int64(17))}, []int64{12, 7, 2}},
			{"oldest first after a cursor", Filter{PatientID: "pat-2", After: ptr(int64(12))}, []int64{17, 22, 27}},
			{"nothing matches", Filter{PatientID: "pat-none"}, nil},
		}
		for _, c := range cases {
			p, err := List(ctx, db, c.f)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := seqs(p); !equalInt64(got, c.want) {
				t.Errorf("%s: seqs %v, want %v", c.name, got, c.want)
			}
		}
		// Paging hands out a cursor exactly when there is more.
		p, err := List(ctx, db, Filter{Limit: 10})
		if err != nil || len(p.Entries) != 10 || p.Next == nil || *p.Next != 9 {
			t.Fatalf("first page: %v entries, next %v, %v", len(p.Entries), p.Next, err)
		}
		p, err = List(ctx, db, Filter{Limit: 10, After: ptr(int64(19))})
		if err != nil || len(p.Entries) != 10 || p.Next != nil {
			t.Fatalf("last page: %v entries, next %v, %v", len(p.Entries), p.Next, err)
		}
		// Entries read back as they were written.
		e, err := Get(ctx, db, 4)
		want := sampleEntry(4)
		want.Seq, want.Time = 4, start.Add(4*time.Minute)
		if err != nil || e != want {
			t.Fatalf("Get(4) = %+v, %v; want %+v", e, err, want)
		}
		if _, err := Get(ctx, db, 999); !errs.Is(err, errs.NotFound) {
			t.Fatalf("Get(999) = %v, want not found", err)
		}
		for _, f := range []Filter{{Limit: -1}, {Limit: MaxListLimit + 1}, {Severity: "critical"}} {
			if _, err := List(ctx, db, f); !errs.Is(err, errs.Invalid) {
				t.Errorf("List(%+v) = %v, want invalid", f, err)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

func equalInt64(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
