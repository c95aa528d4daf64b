package audit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testSigner makes a fresh signing key.
func testSigner(t testing.TB) *Signer {
	t.Helper()
	s, _, err := GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openLog opens a Log on db with a fresh key, a temporary checkpoint
// directory and a fake clock; adjust changes the options first.
func openLog(t testing.TB, db *store.DB, adjust func(*Options)) (*Log, *fakeClock, string) {
	t.Helper()
	clock := newFakeClock()
	dir := t.TempDir()
	opts := Options{Signer: testSigner(t), CheckpointDir: dir, Now: clock.Now, CheckpointInterval: -1}
	if adjust != nil {
		adjust(&opts)
	}
	l, err := New(context.Background(), db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l, clock, dir
}

// sampleEntry is a plausible entry; i varies its ids.
func sampleEntry(i int) Entry {
	e := Entry{
		Actor:        fmt.Sprintf("user-%d", i%7),
		Role:         "physician",
		Action:       ActionRead,
		ResourceType: "Observation",
		ResourceID:   fmt.Sprintf("obs-%d", i),
		PatientID:    fmt.Sprintf("pat-%d", i%5),
		Purpose:      PurposeTreatment,
		Outcome:      OutcomeSuccess,
		RequestID:    fmt.Sprintf("req-%d", i),
		ClientAddr:   "192.0.2.10",
	}
	if i%11 == 3 {
		e.Outcome, e.Severity = OutcomeDenied, SeverityWarning
	}
	if i%13 == 4 {
		e.Action, e.Purpose, e.Severity = ActionBreakGlass, PurposeEmergencyTreatment, SeverityHigh
	}
	return e
}

// appendN appends n sample entries one after another.
func appendN(t testing.TB, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := l.Append(context.Background(), sampleEntry(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// appendConcurrently appends n sample entries at once, so they commit in a
// few group commits instead of one fsync each: it keeps tests fast.
func appendConcurrently(t testing.TB, l *Log, from, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := from; i < from+n; i++ {
		wg.Go(func() {
			if _, err := l.Append(context.Background(), sampleEntry(i)); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// asAttacker runs statements the way someone with full database access
// would: with the append-only triggers out of the way.
func asAttacker(t testing.TB, db *store.DB, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	var disable []string
	if db.Dialect() == store.Postgres {
		for _, tbl := range []string{"audit_entries", "audit_hashes", "audit_checkpoints", "audit_head"} {
			disable = append(disable, "ALTER TABLE "+tbl+" DISABLE TRIGGER USER")
		}
	} else {
		for _, tr := range []string{"audit_entries_no_update", "audit_entries_no_delete", "audit_hashes_no_update",
			"audit_hashes_no_delete", "audit_checkpoints_no_update", "audit_checkpoints_no_delete", "audit_head_no_delete", "audit_head_only_grows"} {
			disable = append(disable, "DROP TRIGGER IF EXISTS "+tr)
		}
	}
	for _, s := range append(disable, stmts...) {
		if _, err := db.Writer().Exec(ctx, s); err != nil {
			t.Fatalf("attacker statement %q: %v", s, err)
		}
	}
}

// asAttackerArgs runs one parameterised statement as the attacker.
func asAttackerArgs(t testing.TB, db *store.DB, stmt string, args ...any) {
	t.Helper()
	asAttacker(t, db)
	if _, err := db.Writer().Exec(context.Background(), stmt, args...); err != nil {
		t.Fatalf("attacker statement %q: %v", stmt, err)
	}
}
