package phi

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// patientsTable is a table shaped like the ones the domain packages own:
// a text id and a PHI column sealed with the record id as AAD.
func patientsTable(t *testing.T, db *store.DB) EncryptedColumns {
	t.Helper()
	blob := "BLOB"
	if db.Dialect() == store.Postgres {
		blob = "BYTEA"
	}
	err := db.Tx(context.Background(), func(tx store.Tx) error {
		_, err := tx.Exec(context.Background(), `CREATE TABLE test_patients (id TEXT PRIMARY KEY, name `+blob+` NOT NULL, note `+blob+`)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return EncryptedColumns{
		Table:   "test_patients",
		Key:     []KeyColumn{{Name: "id", Kind: KeyText}},
		Columns: []string{"name", "note"},
		AAD: func(key []any, column string) AAD {
			return AAD{Table: "test_patients", Field: column, Record: key[0].(string)}
		},
	}
}

func patientID(i int) string { return fmt.Sprintf("p%05d", i) }

func seedPatients(t *testing.T, db *store.DB, r *Ring, n int) map[string]string {
	t.Helper()
	ctx := context.Background()
	want := map[string]string{}
	err := db.Tx(ctx, func(tx store.Tx) error {
		for i := range n {
			id := patientID(i)
			name := "patient " + strconv.Itoa(i)
			ct, err := r.Seal(AAD{Table: "test_patients", Field: "name", Record: id}, []byte(name))
			if err != nil {
				return err
			}
			var note []byte // every third row has no note: NULLs must be skipped
			if i%3 != 0 {
				if note, err = r.Seal(AAD{Table: "test_patients", Field: "note", Record: id}, []byte("note "+strconv.Itoa(i))); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO test_patients (id, name, note) VALUES ($1, $2, $3)`, id, ct, note); err != nil {
				return err
			}
			want[id] = name
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// keysInUse counts the rows of test_patients by the key of each ciphertext.
func keysInUse(t *testing.T, db *store.DB) map[KeyID]int {
	t.Helper()
	rows, err := db.Reader().Query(context.Background(), `SELECT name, note FROM test_patients`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[KeyID]int{}
	for rows.Next() {
		var name, note []byte
		if err := rows.Scan(&name, &note); err != nil {
			t.Fatal(err)
		}
		for _, ct := range [][]byte{name, note} {
			if ct == nil {
				continue
			}
			id, err := KeyIDOf(ct)
			if err != nil {
				t.Fatal(err)
			}
			out[id]++
		}
	}
	return out
}

func keyStatus(r *Ring, id KeyID) Status {
	for _, k := range r.Keys() {
		if k.ID == id {
			return k.Status
		}
	}
	return ""
}

// TestRotationWhileRequestsRun is the acceptance test: rotate while
// two nodes read and write; no request fails, every row ends on the new key,
// the old key retires.
func TestRotationWhileRequestsRun(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		// Requests run under their own context, as HTTP requests would; the
		// test stops them with a flag so that no request is cut off half-way
		// (a commit cut off by cancellation has an unknown outcome).
		ctx := context.Background()
		refreshCtx, stopRefresh := context.WithCancel(ctx)
		defer stopRefresh()
		var stopped atomic.Bool
		table := patientsTable(t, db)
		nodeA := openTestRing(t, db)
		nodeB := openTestRing(t, db) // learns of the rotation only by refreshing or meeting the key
		go nodeB.RefreshEvery(refreshCtx, 20*time.Millisecond)
		const rows = 240
		want := seedPatients(t, db, nodeA, rows)
		oldKey := nodeA.Primary()

		var (
			mu      sync.Mutex // guards want
			ops     atomic.Int64
			failed  atomic.Int64
			firstMu sync.Mutex
			first   error
		)
		fail := func(err error) {
			failed.Add(1)
			firstMu.Lock()
			if first == nil {
				first = err
			}
			firstMu.Unlock()
		}
		var wg sync.WaitGroup
		const writers = 4
		for w := range writers {
			node := []*Ring{nodeA, nodeB}[w%2]
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 1))
				for seq := 0; !stopped.Load(); seq++ {
					// Each writer owns the rows i with i%writers == w, so the
					// expected value of a row has one author.
					i := rng.IntN(rows/writers)*writers + w
					id := patientID(i)
					name := fmt.Sprintf("patient %d v%d", i, seq)
					ct, err := node.Seal(AAD{Table: "test_patients", Field: "name", Record: id}, []byte(name))
					if err == nil {
						err = db.Tx(ctx, func(tx store.Tx) error {
							_, err := tx.Exec(ctx, `UPDATE test_patients SET name = $1 WHERE id = $2`, ct, id)
							return err
						})
					}
					if err != nil {
						fail(fmt.Errorf("write %s: %w", id, err))
						continue
					}
					mu.Lock()
					want[id] = name
					mu.Unlock()
					ops.Add(1)
				}
			})
		}
		for r := range 4 {
			node := []*Ring{nodeA, nodeB}[r%2]
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(r), 2))
				for !stopped.Load() {
					id := patientID(rng.IntN(rows))
					var name, note []byte
					err := db.Reader().QueryRow(ctx, `SELECT name, note FROM test_patients WHERE id = $1`, id).Scan(&name, &note)
					if err == nil {
						_, err = node.Open(ctx, AAD{Table: "test_patients", Field: "name", Record: id}, name)
					}
					if err == nil && note != nil {
						_, err = node.Open(ctx, AAD{Table: "test_patients", Field: "note", Record: id}, note)
					}
					if err != nil {
						fail(fmt.Errorf("read %s: %w", id, err))
						continue
					}
					ops.Add(1)
				}
			})
		}

		// Let traffic start, then rotate and re-encrypt under it.
		waitFor(t, func() bool { return ops.Load() > 50 })
		newKey, err := nodeA.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		reg := &Registry{}
		if err := reg.Register(table); err != nil {
			t.Fatal(err)
		}
		// The grace period covers node B's refresh interval several times.
		re := NewReencryptor(nodeA, reg, ReencryptOptions{BatchSize: 25, RetireGrace: 150 * time.Millisecond})
		runCtx, stopRun := context.WithTimeout(ctx, 30*time.Second)
		defer stopRun()
		last, err := re.RunUntilDone(runCtx)
		if err != nil {
			t.Fatalf("RunUntilDone: %v (progress %+v)", err, last)
		}
		resealed := last.Resealed
		opsAtEnd := ops.Load()
		waitFor(t, func() bool { return ops.Load() > opsAtEnd+50 }) // traffic continues after retirement
		stopped.Store(true)
		wg.Wait()

		if n := failed.Load(); n > 0 {
			t.Fatalf("%d requests failed during rotation; first: %v", n, first)
		}
		if resealed == 0 {
			t.Fatal("the re-encryptor resealed nothing")
		}
		if got := keysInUse(t, db); len(got) != 1 || got[newKey.ID] == 0 {
			t.Fatalf("rows by key after rotation: %v, want all on %v", got, newKey.ID)
		}
		if !last.Done || !slicesContain(last.Retired, oldKey) || keyStatus(nodeA, oldKey) != StatusRetired {
			t.Fatalf("old key %v not retired: progress %+v, keys %+v", oldKey, last, nodeA.Keys())
		}
		// Every row holds the last value its writer committed.
		for id, name := range want {
			var ct []byte
			if err := db.Reader().QueryRow(context.Background(), `SELECT name FROM test_patients WHERE id = $1`, id).Scan(&ct); err != nil {
				t.Fatal(err)
			}
			pt, err := nodeB.Open(context.Background(), AAD{Table: "test_patients", Field: "name", Record: id}, ct)
			if err != nil || string(pt) != name {
				t.Fatalf("row %s = %q, %v; want %q", id, pt, err, name)
			}
		}
		t.Logf("%d requests during rotation, %d rows resealed", ops.Load(), resealed)
	})
}

func slicesContain(ids []KeyID, id KeyID) bool { return slices.Contains(ids, id) }

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestReencryptorResumesAfterCancellation(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		table := patientsTable(t, db)
		ring := openTestRing(t, db)
		want := seedPatients(t, db, ring, 100)
		oldKey := ring.Primary()
		newKey, err := ring.Rotate(context.Background())
		if err != nil {
			t.Fatal(err)
		}

		// Cancel the run in the middle of its third batch: the AAD function
		// runs once per ciphertext being moved.
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int64
		interrupted := table
		interrupted.AAD = func(key []any, column string) AAD {
			if calls.Add(1) == 60 {
				cancel()
			}
			return table.AAD(key, column)
		}
		reg := &Registry{}
		if err := reg.Register(interrupted); err != nil {
			t.Fatal(err)
		}
		const batch = 10 // 10 rows, ~17 ciphertexts per batch
		first := NewReencryptor(ring, reg, ReencryptOptions{BatchSize: batch, RetireGrace: time.Nanosecond})
		if _, err := first.RunOnce(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted RunOnce = %v, want context.Canceled", err)
		}
		// What committed is exactly the batches before the interrupted one.
		saved, err := first.loadCursor(context.Background(), table, newKey.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(saved.after) != 1 {
			t.Fatalf("no cursor saved: %+v", saved)
		}
		done := saved.after[0].(string)
		moved := keysInUse(t, db)[newKey.ID]
		if done != patientID(29) || moved == 0 || int64(moved) != saved.found {
			t.Fatalf("cursor at %s having moved %d (db has %d on the new key); want p00029", done, saved.found, moved)
		}

		// A fresh re-encryptor (another process) resumes after the cursor.
		reg2 := &Registry{}
		var resumedFrom string
		resumed := table
		resumed.AAD = func(key []any, column string) AAD {
			if resumedFrom == "" {
				resumedFrom = key[0].(string)
			}
			return table.AAD(key, column)
		}
		if err := reg2.Register(resumed); err != nil {
			t.Fatal(err)
		}
		second := NewReencryptor(ring, reg2, ReencryptOptions{BatchSize: batch, RetireGrace: time.Nanosecond})
		p, err := second.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if resumedFrom != patientID(30) {
			t.Errorf("resumed at %s, want p00030", resumedFrom)
		}
		if !p.Done || !slicesContain(p.Retired, oldKey) || p.Resealed+moved != keysInUse(t, db)[newKey.ID] {
			t.Fatalf("resumed run: %+v; keys %v", p, keysInUse(t, db))
		}
		if got := keysInUse(t, db); len(got) != 1 {
			t.Fatalf("rows by key: %v", got)
		}
		for id, name := range want {
			var ct []byte
			_ = db.Reader().QueryRow(context.Background(), `SELECT name FROM test_patients WHERE id = $1`, id).Scan(&ct)
			if pt, err := ring.Open(context.Background(), AAD{Table: "test_patients", Field: "name", Record: id}, ct); err != nil || string(pt) != name {
				t.Fatalf("row %s = %q, %v", id, pt, err)
			}
		}
		// Nothing left to do.
		if p, err := second.RunOnce(context.Background()); err != nil || !p.Done || p.Resealed != 0 {
			t.Fatalf("idle run: %+v, %v", p, err)
		}
	})
}

// fakeClock is a settable clock shared by a ring and a re-encryptor.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestRetirementWaitsForTheGracePeriod(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := &fakeClock{now: time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)}
		table := patientsTable(t, db)
		ring, err := OpenRing(ctx, db, testMasterKey(t, 1), Options{Clock: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		seedPatients(t, db, ring, 30)
		oldKey := ring.Primary()
		newKey, err := ring.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		reg := &Registry{}
		_ = reg.Register(table)
		re := NewReencryptor(ring, reg, ReencryptOptions{BatchSize: 8, RetireGrace: time.Hour, Clock: clock.Now})

		p, err := re.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Done || p.Resealed == 0 || !p.WaitUntil.Equal(newKey.CreatedAt.Add(time.Hour)) {
			t.Fatalf("within the grace period: %+v, want rows moved and a wait until %v", p, newKey.CreatedAt.Add(time.Hour))
		}
		if keyStatus(ring, oldKey) != StatusActive {
			t.Fatal("old key retired before the grace period ended")
		}
		// A node that has not seen the rotation writes with the old key
		// during the grace period; the verification pass must catch it.
		straggler, err := ring.cur.Load().sealWith(ring.cur.Load().keys[oldKey], AAD{Table: "test_patients", Field: "name", Record: patientID(3)}, []byte("late write"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Writer().Exec(ctx, `UPDATE test_patients SET name = $1 WHERE id = $2`, straggler, patientID(3)); err != nil {
			t.Fatal(err)
		}
		if p, err := re.RunOnce(ctx); err != nil || p.Done || p.Resealed != 0 {
			t.Fatalf("second run inside the grace period: %+v, %v; want a wait without a scan", p, err)
		}

		clock.Advance(time.Hour)
		p, err = re.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Done || p.Resealed != 1 || !slicesContain(p.Retired, oldKey) {
			t.Fatalf("after the grace period: %+v, want the late row moved and the old key retired", p)
		}
		if got := keysInUse(t, db); len(got) != 1 || got[newKey.ID] == 0 {
			t.Fatalf("rows by key: %v", got)
		}
		// A retired key still opens (its material is kept).
		var ct []byte
		_ = db.Reader().QueryRow(ctx, `SELECT name FROM test_patients WHERE id = $1`, patientID(3)).Scan(&ct)
		if pt, err := ring.Open(ctx, AAD{Table: "test_patients", Field: "name", Record: patientID(3)}, ct); err != nil || string(pt) != "late write" {
			t.Fatalf("late row = %q, %v", pt, err)
		}
		if pt, err := ring.Open(ctx, AAD{Table: "test_patients", Field: "name", Record: patientID(3)}, straggler); err != nil || string(pt) != "late write" {
			t.Fatalf("a ciphertext on the retired key (an old backup) = %q, %v", pt, err)
		}
	})
}

func TestReencryptorCompositeKeys(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		blob := map[store.Dialect]string{store.SQLite: "BLOB", store.Postgres: "BYTEA"}[db.Dialect()]
		if _, err := db.Writer().Exec(ctx, `CREATE TABLE test_history (rtype TEXT NOT NULL, id TEXT NOT NULL, version BIGINT NOT NULL, body `+blob+`, PRIMARY KEY (rtype, id, version))`); err != nil {
			t.Fatal(err)
		}
		aad := func(key []any, column string) AAD {
			return AAD{Table: "test_history", Field: column, Record: fmt.Sprintf("%s/%s/_history/%d", key[0], key[1], key[2])}
		}
		ring := openTestRing(t, db)
		type rec struct {
			rtype, id string
			version   int64
		}
		var recs []rec
		for _, rtype := range []string{"Claim", "Patient"} {
			for i := range 5 {
				for v := int64(1); v <= 12; v++ { // 12 > 9: integer order, not text order
					recs = append(recs, rec{rtype, fmt.Sprintf("id%d", i), v})
				}
			}
		}
		err := db.Tx(ctx, func(tx store.Tx) error {
			for _, r := range recs {
				ct, _ := ring.Seal(aad([]any{r.rtype, r.id, r.version}, "body"), []byte(r.rtype+r.id))
				if _, err := tx.Exec(ctx, `INSERT INTO test_history (rtype, id, version, body) VALUES ($1, $2, $3, $4)`, r.rtype, r.id, r.version, ct); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		oldKey := ring.Primary()
		newKey, _ := ring.Rotate(ctx)
		reg := &Registry{}
		if err := reg.Register(EncryptedColumns{
			Table:   "test_history",
			Key:     []KeyColumn{{"rtype", KeyText}, {"id", KeyText}, {"version", KeyInteger}},
			Columns: []string{"body"},
			AAD:     aad,
		}); err != nil {
			t.Fatal(err)
		}
		re := NewReencryptor(ring, reg, ReencryptOptions{BatchSize: 7, RetireGrace: time.Nanosecond})
		p, err := re.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Done || p.Resealed != len(recs) || !slicesContain(p.Retired, oldKey) {
			t.Fatalf("progress %+v, want %d resealed and %v retired", p, len(recs), oldKey)
		}
		for _, r := range recs {
			var ct []byte
			if err := db.Reader().QueryRow(ctx, `SELECT body FROM test_history WHERE rtype = $1 AND id = $2 AND version = $3`, r.rtype, r.id, r.version).Scan(&ct); err != nil {
				t.Fatal(err)
			}
			if id, _ := KeyIDOf(ct); id != newKey.ID {
				t.Fatalf("%v on %v", r, id)
			}
			if pt, err := ring.Open(ctx, aad([]any{r.rtype, r.id, r.version}, "body"), ct); err != nil || string(pt) != r.rtype+r.id {
				t.Fatalf("%v = %q, %v", r, pt, err)
			}
		}
	})
}

func TestReencryptorStopsOnUnreadableRow(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		table := patientsTable(t, db)
		ring := openTestRing(t, db)
		seedPatients(t, db, ring, 5)
		oldKey := ring.Primary()
		// A ciphertext sealed for another row (a copy-paste in the database)
		// cannot be moved: the run must stop and name the row, not the value.
		var ct []byte
		_ = db.Reader().QueryRow(ctx, `SELECT name FROM test_patients WHERE id = $1`, patientID(1)).Scan(&ct)
		if _, err := db.Writer().Exec(ctx, `UPDATE test_patients SET name = $1 WHERE id = $2`, ct, patientID(2)); err != nil {
			t.Fatal(err)
		}
		_, _ = ring.Rotate(ctx)
		reg := &Registry{}
		_ = reg.Register(table)
		re := NewReencryptor(ring, reg, ReencryptOptions{RetireGrace: time.Nanosecond})
		_, err := re.RunOnce(ctx)
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("RunOnce = %v, want ErrAuth", err)
		}
		if msg := err.Error(); !strings.Contains(msg, patientID(2)) || strings.Contains(msg, "patient 1") {
			t.Errorf("error %q should name the row and not the value", msg)
		}
		if keyStatus(ring, oldKey) != StatusActive {
			t.Error("a key still in use by an unreadable row was retired")
		}
	})
}

func TestOneReencryptorAtATime(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		table := patientsTable(t, db)
		ring := openTestRing(t, db)
		seedPatients(t, db, ring, 5)
		_, _ = ring.Rotate(ctx)
		reg := &Registry{}
		_ = reg.Register(table)
		holder := NewReencryptor(ring, reg, ReencryptOptions{RetireGrace: time.Nanosecond})
		if got, err := holder.acquireLease(ctx); err != nil || !got {
			t.Fatalf("first lease: %v %v", got, err)
		}
		other := NewReencryptor(ring, reg, ReencryptOptions{RetireGrace: time.Nanosecond})
		p, err := other.RunOnce(ctx)
		if err != nil || !p.Busy || p.Resealed != 0 {
			t.Fatalf("second node while the lease is held: %+v, %v; want busy", p, err)
		}
		holder.releaseLease(ctx)
		if p, err := other.RunOnce(ctx); err != nil || !p.Done {
			t.Fatalf("after release: %+v, %v", p, err)
		}
	})
}

func TestRegistryRefusesBadDeclarations(t *testing.T) {
	t.Parallel()
	aad := func([]any, string) AAD { return AAD{} }
	good := EncryptedColumns{Table: "t", Key: []KeyColumn{{Name: "id"}}, Columns: []string{"c"}, AAD: aad}
	tests := []struct {
		name string
		edit func(c *EncryptedColumns)
	}{
		{"a table name with SQL in it", func(c *EncryptedColumns) { c.Table = "t; DROP TABLE phi_keys" }},
		{"no key column", func(c *EncryptedColumns) { c.Key = nil }},
		{"no ciphertext column", func(c *EncryptedColumns) { c.Columns = nil }},
		{"a quoted column name", func(c *EncryptedColumns) { c.Columns = []string{`"c"`} }},
		{"a ciphertext column that is also the key", func(c *EncryptedColumns) { c.Columns = []string{"id"} }},
		{"no AAD function", func(c *EncryptedColumns) { c.AAD = nil }},
		{"an unknown key kind", func(c *EncryptedColumns) { c.Key = []KeyColumn{{Name: "id", Kind: 9}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			if err := (&Registry{}).Register(c); err == nil {
				t.Fatal("registered")
			}
		})
	}
	reg := &Registry{}
	if err := reg.Register(good); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(good); err == nil {
		t.Fatal("a column registered twice")
	}
}

func TestReencryptorUUIDKeys(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		// PostgreSQL tables key resources by a native UUID; the re-encryptor
		// must read it as the text the writer put in the AAD.
		ddl := `CREATE TABLE test_resources (id TEXT PRIMARY KEY, body BLOB NOT NULL)`
		if db.Dialect() == store.Postgres {
			ddl = `CREATE TABLE test_resources (id UUID PRIMARY KEY, body BYTEA NOT NULL)`
		}
		if _, err := db.Writer().Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
		ring := openTestRing(t, db)
		aad := func(key []any, column string) AAD {
			return AAD{Table: "test_resources", Field: column, Record: key[0].(string)}
		}
		ids := []string{"0192f1d2-7c1e-7a00-8000-00000000000a", "0192f1d2-7c1e-7a00-8000-00000000000b", "0192f1d2-7c1e-7a00-8000-00000000000c"}
		for _, id := range ids {
			ct, _ := ring.Seal(aad([]any{id}, "body"), []byte("resource "+id))
			if _, err := db.Writer().Exec(ctx, `INSERT INTO test_resources (id, body) VALUES ($1, $2)`, id, ct); err != nil {
				t.Fatal(err)
			}
		}
		oldKey := ring.Primary()
		if _, err := ring.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		reg := &Registry{}
		if err := reg.Register(EncryptedColumns{Table: "test_resources", Key: []KeyColumn{{Name: "id"}}, Columns: []string{"body"}, AAD: aad}); err != nil {
			t.Fatal(err)
		}
		p, err := NewReencryptor(ring, reg, ReencryptOptions{BatchSize: 2, RetireGrace: time.Nanosecond}).RunUntilDone(ctx)
		if err != nil || p.Resealed != len(ids) || !slicesContain(p.Retired, oldKey) {
			t.Fatalf("progress %+v, %v", p, err)
		}
	})
}

func TestRetirementWaitsEvenWithNothingRegistered(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := &fakeClock{now: time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)}
		ring, err := OpenRing(ctx, db, testMasterKey(t, 1), Options{Clock: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		oldKey := ring.Primary()
		if _, err := ring.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		re := NewReencryptor(ring, &Registry{}, ReencryptOptions{RetireGrace: time.Minute, Clock: clock.Now})
		if p, err := re.RunOnce(ctx); err != nil || p.Done || p.WaitUntil.IsZero() {
			t.Fatalf("inside the grace period: %+v, %v", p, err)
		}
		clock.Advance(time.Minute)
		if p, err := re.RunOnce(ctx); err != nil || !p.Done || !slicesContain(p.Retired, oldKey) {
			t.Fatalf("after the grace period: %+v, %v", p, err)
		}
	})
}

func TestTwoRotationsBeforeTheReencryptorRuns(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		table := patientsTable(t, db)
		ring := openTestRing(t, db)
		want := seedPatients(t, db, ring, 20) // on the first key
		first := ring.Primary()
		second, err := ring.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Half the rows are rewritten under the second key.
		for i := 0; i < 20; i += 2 {
			id := patientID(i)
			ct, _ := ring.Seal(AAD{Table: "test_patients", Field: "name", Record: id}, []byte(want[id]))
			if _, err := db.Writer().Exec(ctx, `UPDATE test_patients SET name = $1 WHERE id = $2`, ct, id); err != nil {
				t.Fatal(err)
			}
		}
		third, err := ring.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := keysInUse(t, db); got[first] == 0 || got[second.ID] != 10 {
			t.Fatalf("setup: rows by key %v", got)
		}
		reg := &Registry{}
		_ = reg.Register(table)
		p, err := NewReencryptor(ring, reg, ReencryptOptions{BatchSize: 6, RetireGrace: time.Nanosecond}).RunUntilDone(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slicesContain(p.Retired, first) || !slicesContain(p.Retired, second.ID) || p.Target != third.ID {
			t.Fatalf("progress %+v: want keys %v and %v retired for %v", p, first, second.ID, third.ID)
		}
		if got := keysInUse(t, db); len(got) != 1 || got[third.ID] == 0 {
			t.Fatalf("rows by key %v", got)
		}
	})
}

// TestVerificationPassReadsNoBodies checks that the sweep's SELECT returns
// NULL for ciphertexts already on the target key, on both dialects, so a
// verification pass over a table of large resources reads only keys.
func TestVerificationPassReadsNoBodies(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		table := patientsTable(t, db)
		ring := openTestRing(t, db)
		seedPatients(t, db, ring, 6)
		selects, _ := sweepSQL(table, 100)
		header := func(id KeyID) []byte {
			return []byte{formatV1, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
		}
		count := func(id KeyID) (bodies int) {
			rows, err := db.Reader().Query(ctx, selects[0], header(id))
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var key string
				var name, note []byte
				if err := rows.Scan(&key, &name, &note); err != nil {
					t.Fatal(err)
				}
				if name != nil {
					bodies++
				}
				if note != nil {
					bodies++
				}
			}
			return bodies
		}
		if n := count(ring.Primary()); n != 0 {
			t.Errorf("%d bodies read for rows already on the target key, want 0", n)
		}
		if n := count(ring.Primary() + 1); n != 6+4 { // 6 names, 4 notes
			t.Errorf("%d bodies read for rows on another key, want 10", n)
		}
	})
}
