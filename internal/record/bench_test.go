package record

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// benchPatient is a realistic registration: names, a national id, an MRN,
// birth date, phone, address.
func benchPatient(i int) []byte {
	given := []string{"Mohamed", "Ahmed", "Mona", "Fatma", "Omar", "Sara", "Youssef", "Nour", "Karim", "Laila"}[i%10]
	family := []string{"Hassan", "Saleh", "Mahmoud", "Ibrahim", "Abdelrahman", "Farouk", "Nasser", "Gamal"}[(i/10)%8]
	return []byte(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:eg:nid","value":"%014d"},{"system":"urn:careflow:mrn","value":"MRN-%08d"}],"active":true,"name":[{"use":"official","family":"%s","given":["%s","%s"]}],"telecom":[{"system":"phone","value":"+20 10 %08d","use":"mobile"}],"gender":"%s","birthDate":"19%02d-%02d-%02d","address":[{"line":["%d Nile St"],"city":"Cairo","postalCode":"%05d","country":"EG"}]}`,
		29000000000000+i, i, family, given, family, i, []string{"male", "female"}[i%2], 40+i%60, 1+i%12, 1+i%28, i%500, 11000+i%900))
}

// bulkLoad stores n patients in transactions of 500, the way an import
// would, so that large sizes load in minutes instead of hours.
func bulkLoad(t testing.TB, s *Service, from, n int) {
	t.Helper()
	ctx := context.Background()
	for start := from; start < from+n; start += 500 {
		end := min(start+500, from+n)
		err := s.db.Tx(ctx, func(tx store.Tx) error {
			for i := start; i < end; i++ {
				if _, _, err := s.createTx(ctx, tx, nil, "Patient", "", benchPatient(i), ""); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func benchDB(b *testing.B, d store.Dialect) *store.DB {
	b.Helper()
	if d == store.Postgres && os.Getenv(storetest.EnvPostgres) == "" {
		b.Skip("CAREFLOW_TEST_POSTGRES not set")
	}
	return storetest.Open(b, d)
}

func BenchmarkCreatePatient(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, _, err := s.Create(ctx, nil, "Patient", benchPatient(i), ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadPatient(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			bulkLoad(b, s, 0, 2000)
			ids := patientIDs(b, s, 2000)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.Read(ctx, nil, "Patient", ids[i%len(ids)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSearchPatientByIdentifier(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			bulkLoad(b, s, 0, 2000)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				q, err := s.ParseQuery("Patient", url.Values{"identifier": {fmt.Sprintf("urn:eg:nid|%014d", 29000000000000+i%2000)}})
				if err != nil {
					b.Fatal(err)
				}
				res, err := s.Search(ctx, nil, q)
				if err != nil || len(res.Matches) != 1 {
					b.Fatalf("%v, %d matches", err, len(res.Matches))
				}
			}
		})
	}
}

func patientIDs(t testing.TB, s *Service, n int) []string {
	t.Helper()
	rows, err := s.db.Reader().Query(context.Background(), "SELECT id FROM resources WHERE type = 'Patient' LIMIT $1", n)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		ids = append(ids, id)
	}
	return ids
}

// TestScale is the load harness behind BENCHMARKS.md. It runs only when
// CAREFLOW_SCALE lists patient counts (e.g. "10000,100000"); for each
// backend and size it loads the patients, then measures the durable
// commit rate of a bare one-row transaction, create throughput (one
// patient per transaction, as the API does), read p99 and identifier
// search p99 over random patients, and the process's heap.
func TestScale(t *testing.T) {
	sizes := os.Getenv("CAREFLOW_SCALE")
	if sizes == "" {
		t.Skip("set CAREFLOW_SCALE=10000,100000 (and CAREFLOW_TEST_POSTGRES) to run the load harness")
	}
	for _, d := range storetest.Backends() {
		for sz := range strings.SplitSeq(sizes, ",") {
			n, err := strconv.Atoi(sz)
			if err != nil {
				t.Fatal(err)
			}
			t.Run(fmt.Sprintf("%s/%d", d, n), func(t *testing.T) { scaleRun(t, d, n) })
		}
	}
}

func scaleRun(t *testing.T, d store.Dialect, n int) {
	ctx := context.Background()
	db := storetest.Open(t, d)
	s := newService(t, db)
	start := time.Now()
	bulkLoad(t, s, 0, n)
	load := time.Since(start)

	// Raw durable commit rate: one small row per transaction.
	if _, err := db.Writer().Exec(ctx, "CREATE TABLE bench_commit (id BIGINT PRIMARY KEY, v TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	// Interleave raw commits and creates in rounds, so that load from
	// other processes on a shared machine weighs on both alike.
	const rounds, perRound = 10, 50
	var rawTime, createTime time.Duration
	for round := range rounds {
		t0 := time.Now()
		for i := range perRound {
			id := round*perRound + i
			if err := db.Tx(ctx, func(tx store.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO bench_commit (id, v) VALUES ($1, $2)", id, "x")
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		rawTime += time.Since(t0)
		t0 = time.Now()
		for i := range perRound {
			if _, _, err := s.Create(ctx, nil, "Patient", benchPatient(n+round*perRound+i), ""); err != nil {
				t.Fatal(err)
			}
		}
		createTime += time.Since(t0)
	}
	rawRate := rounds * perRound / rawTime.Seconds()
	createRate := rounds * perRound / createTime.Seconds()

	// Creates from 8 concurrent clients, which the group committer turns
	// into shared transactions.
	const clients, perClient = 8, 100
	t0 := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				if _, _, err := s.Create(ctx, nil, "Patient", benchPatient(n+10000+c*perClient+i), ""); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	concurrentRate := clients * perClient / time.Since(t0).Seconds()

	rng := rand.New(rand.NewPCG(1, uint64(n)))
	searches, reads := searchAndRead(t, s, rng, n)
	// Two more rounds over other random patients: on a shared machine one
	// round's p99 is often another process's pause, so the spread is
	// logged beside the table's (first) round.
	for round := 2; round <= 3; round++ {
		ss, rs := searchAndRead(t, s, rng, n)
		t.Logf("round %d %s/%d: read p50 %s p99 %s, search p50 %s p99 %s", round, d, n, pct(rs, 50), pct(rs, 99), pct(ss, 50), pct(ss, 99))
	}
	var size int64
	if d == store.SQLite {
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(db.SQLitePath() + suffix); err == nil {
				size += fi.Size()
			}
		}
	} else if err := db.Reader().QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&size); err != nil {
		t.Fatal(err)
	}
	logSizes(t, db, n)
	if d == store.SQLite {
		logWALPerCreate(t, s, n+20000)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("| %s | %d | %s | %.0f/s | %.0f/s | %.2f | %.0f/s | %.2f | %s | %s | %s | %s | %d MiB heap, %d MiB from OS | %d MiB |",
		d, n, load.Round(time.Second), rawRate, createRate, createRate/rawRate, concurrentRate, concurrentRate/rawRate,
		pct(reads, 50), pct(reads, 99), pct(searches, 50), pct(searches, 99),
		ms.HeapInuse>>20, ms.Sys>>20, size>>20)
}

func pct(ds []time.Duration, p int) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond).String()
}

// logSizes logs what the load costs per patient, table by table and index
// by index: SQLite's dbstat (pages in use, so free pages and the WAL are
// not counted) or PostgreSQL's relation sizes (run after VACUUM (ANALYZE),
// which the harness does, since the box's PostgreSQL runs without
// autovacuum). The patients are the load's n plus the creates measured
// after it.
func logSizes(t *testing.T, db *store.DB, n int) {
	t.Helper()
	ctx := context.Background()
	patients := float64(n + 10*50 + 8*100)
	var q string
	if db.Dialect() == store.SQLite {
		q = `SELECT name, SUM(pgsize), SUM(ncell) FROM dbstat WHERE name LIKE 'resource%' OR name LIKE 'sqlite_autoindex_resource%' GROUP BY name ORDER BY SUM(pgsize) DESC`
	} else {
		if _, err := db.Writer().Exec(ctx, "VACUUM (ANALYZE)"); err != nil {
			t.Fatal(err)
		}
		q = `SELECT c.relname, pg_relation_size(c.oid), COALESCE(c.reltuples, 0)::bigint FROM pg_class c
			JOIN pg_namespace ns ON ns.oid = c.relnamespace
			WHERE ns.nspname = current_schema() AND c.relname LIKE 'resource%' AND c.relkind IN ('r', 'i')
			ORDER BY pg_relation_size(c.oid) DESC`
	}
	rows, err := db.Reader().Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var name string
		var size, cells int64
		if err := rows.Scan(&name, &size, &cells); err != nil {
			t.Fatal(err)
		}
		total += size
		t.Logf("size %s/%d %-32s %8.0f B/patient %6.1f entries/patient", db.Dialect(), n, name, float64(size)/patients, float64(cells)/patients)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("size %s/%d %-32s %8.0f B/patient", db.Dialect(), n, "total (resource tables and indexes)", float64(total)/patients)
}

// logWALPerCreate logs how many pages one create writes to SQLite's WAL
// (a create's cost in I/O: the raw commit writes one or two), from 100
// creates of one patient per transaction, with the WAL emptied first and
// no checkpoint while they run (the setting is put back after). from
// numbers the patients past the others.
func logWALPerCreate(t *testing.T, s *Service, from int) {
	t.Helper()
	ctx := context.Background()
	w := s.db.Writer()
	if _, err := w.Exec(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := w.Exec(ctx, "PRAGMA wal_autocheckpoint=1000"); err != nil {
			t.Error(err)
		}
	}()
	var busy, logged, moved, pageSize int
	if err := w.QueryRow(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &moved); err != nil {
		t.Fatal(err)
	}
	if err := w.QueryRow(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	const creates = 100
	for i := range creates {
		if _, _, err := s.Create(ctx, nil, "Patient", benchPatient(from+i), ""); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(s.db.SQLitePath() + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// A WAL file is a 32-byte header, then frames of a 24-byte header and
	// a page.
	t.Logf("wal sqlite: %.1f pages of %d bytes written per create (one patient per transaction)", float64(fi.Size()-32)/float64(pageSize+24)/creates, pageSize)
}

// searchAndRead times identifier searches for 2000 random patients, then
// reads of the patients found, in another order; their ids drive the
// reads (holding every id of a million patients would weigh on the heap
// figure).
func searchAndRead(t *testing.T, s *Service, rng *rand.Rand, n int) (searches, reads []time.Duration) {
	t.Helper()
	ctx := context.Background()
	const samples = 2000
	searches = make([]time.Duration, samples)
	ids := make([]string, samples)
	for i := range searches {
		k := rng.IntN(n)
		t0 := time.Now()
		q, err := s.ParseQuery("Patient", url.Values{"identifier": {fmt.Sprintf("urn:eg:nid|%014d", 29000000000000+k)}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Search(ctx, nil, q)
		if err != nil || len(res.Matches) != 1 {
			t.Fatalf("identifier search: %v, %d matches", err, len(res.Matches))
		}
		searches[i] = time.Since(t0)
		ids[i] = res.Matches[0].ID
	}
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	reads = make([]time.Duration, samples)
	for i := range reads {
		t0 := time.Now()
		if _, err := s.Read(ctx, nil, "Patient", ids[i]); err != nil {
			t.Fatal(err)
		}
		reads[i] = time.Since(t0)
	}
	return searches, reads
}
