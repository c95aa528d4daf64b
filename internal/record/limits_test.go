package record

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// givenNames is a Patient with n given names.
func givenNames(n int, name string) []byte {
	return []byte(`{"resourceType":"Patient","name":[{"family":"Limit","given":["` + strings.Repeat(name+`","`, n-1) + name + `"]}]}`)
}

// wantLimit checks err is the 413 answer of a crossed limit: one too-costly
// issue naming the limit and the element path.
func wantLimit(t *testing.T, err error, limit, path string) {
	t.Helper()
	if !errs.Is(err, errs.TooLarge) {
		t.Fatalf("got %v, want a too_large refusal", err)
	}
	var ie *IssuesError
	if !errors.As(err, &ie) || len(ie.Issues) != 1 {
		t.Fatalf("got %v, want one issue", err)
	}
	is := ie.Issues[0]
	if is.Code != fhir.IssueTooCostly || is.Severity != fhir.SeverityError || len(is.Expression) != 1 || is.Expression[0] != path || !strings.Contains(is.Diagnostics, limit) {
		t.Fatalf("issue %+v, want too-costly naming %s at %s", is, limit, path)
	}
}

// storedRows counts every row the record keeps, resources and indexes.
func storedRows(t *testing.T, db *store.DB) int {
	t.Helper()
	total := 0
	for _, table := range append([]string{"resources", "resource_history"}, indexTables...) {
		var n int
		if err := db.Reader().QueryRow(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// TestHalfAMillionGivenNamesAreRefusedBeforeAnyWork is issue #8's attack
// on the record: every way in (create, update, conditional update, a
// batch and a transaction Bundle) refuses it at once, stores nothing, and
// names the array, never a value.
func TestHalfAMillionGivenNamesAreRefusedBeforeAnyWork(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		body := givenNames(500_000, "Secretname")
		entry := func(typ string) []byte {
			return []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[{"fullUrl":"urn:uuid:5f0c3a1e-0000-4000-8000-000000000001","resource":` + string(body) + `,"request":{"method":"POST","url":"Patient"}}]}`)
		}
		for _, tc := range []struct {
			name string
			path string
			do   func() error
		}{
			{"create", "Patient.name[0].given", func() error { _, _, err := s.Create(ctx, nil, "Patient", body, ""); return err }},
			{"update", "Patient.name[0].given", func() error { _, _, err := s.Update(ctx, nil, "Patient", "p1", body, ""); return err }},
			{"conditional update", "Patient.name[0].given", func() error {
				_, _, err := s.ConditionalUpdate(ctx, nil, "Patient", "identifier=x", body, "")
				return err
			}},
			{"batch", "Bundle.entry[0].resource.name[0].given", func() error { _, err := s.ProcessBundle(ctx, nil, entry("batch")); return err }},
			{"transaction", "Bundle.entry[0].resource.name[0].given", func() error { _, err := s.ProcessBundle(ctx, nil, entry("transaction")); return err }},
		} {
			start := time.Now()
			err := tc.do()
			took := time.Since(start)
			wantLimit(t, err, fhir.LimitArrayItems, tc.path)
			if strings.Contains(err.Error(), "Secretname") {
				t.Errorf("%s: the error repeats a value: %v", tc.name, err)
			}
			if took > time.Second {
				t.Errorf("%s: refused after %v, want well under a second", tc.name, took)
			}
		}
		if n := storedRows(t, db); n != 0 {
			t.Errorf("%d rows stored after the refusals", n)
		}
	})
}

// TestIndexRowsAreCappedWhileBuilt: a resource inside every structural
// limit whose names would need more search rows than allowed is refused
// by extraction, inside the write, with nothing stored.
func TestIndexRowsAreCappedWhileBuilt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		// One given name of 2,000 20-letter parts that differ from their
		// third letter on: 18 prefix rows each, 36,000 rows in one string,
		// far past the default of 10,000.
		var parts []string
		for i := range 2000 {
			parts = append(parts, string([]byte{'a' + byte(i/676), 'a' + byte(i/26%26), 'a' + byte(i%26)})+"defghijklmnopqrst")
		}
		body := []byte(`{"resourceType":"Patient","name":[{"given":["` + strings.Join(parts, " ") + `"]}]}`)
		if e := s.limits.Check(body, "Patient"); e != nil {
			t.Fatalf("the body is over a structural limit (%v), so it would not reach extraction", e)
		}
		_, _, err := s.Create(ctx, nil, "Patient", body, "")
		wantLimit(t, err, fhir.LimitIndexRows, "Patient.name.given")
		tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:5f0c3a1e-0000-4000-8000-000000000002","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},{"fullUrl":"urn:uuid:5f0c3a1e-0000-4000-8000-000000000003","resource":` + string(body) + `,"request":{"method":"POST","url":"Patient"}}]}`)
		if _, err := s.ProcessBundle(ctx, nil, tx); !errs.Is(err, errs.TooLarge) {
			t.Errorf("transaction: got %v, want too_large", err)
		}
		if n := storedRows(t, db); n != 0 {
			t.Errorf("%d rows stored after the refusals", n)
		}

		// The cap is the configured one: a small cap refuses an ordinary
		// Patient, the default takes it.
		ordinary := []byte(`{"resourceType":"Patient","name":[{"family":"Limit","given":["Ordinary","Person"]}],"gender":"other"}`)
		s.limits = Limits{IndexRows: 5}.WithDefaults()
		_, _, err = s.Create(ctx, nil, "Patient", ordinary, "")
		if !errs.Is(err, errs.TooLarge) {
			t.Fatalf("with 5 rows allowed: got %v, want too_large", err)
		}
		s.limits = Limits{}.WithDefaults()
		mustCreate(t, s, "Patient", string(ordinary))
	})
}

// TestConfiguredLimitsAreApplied: Options.Limits reach every check, and a
// resource at a limit passes where one past it does not.
func TestConfiguredLimitsAreApplied(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		s.limits = Limits{Limits: fhir.Limits{ArrayItems: 3, Elements: 40, Depth: 6, StringBytes: 32, BundleEntries: 2}}.WithDefaults()
		mustCreate(t, s, "Patient", string(givenNames(3, "Ann")))
		_, _, err := s.Create(ctx, nil, "Patient", givenNames(4, "Ann"), "")
		wantLimit(t, err, fhir.LimitArrayItems, "Patient.name[0].given")
		_, _, err = s.Create(ctx, nil, "Patient", []byte(`{"resourceType":"Patient","gender":"other","name":[{"text":"`+strings.Repeat("x", 33)+`"}]}`), "")
		wantLimit(t, err, fhir.LimitStringBytes, "Patient.name[0].text")
		_, err = s.ProcessBundle(ctx, nil, []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient"}},{"request":{"method":"GET","url":"Patient"}},{"request":{"method":"GET","url":"Patient"}}]}`))
		wantLimit(t, err, fhir.LimitBundleEntries, "Bundle.entry")
	})
}

// TestSampleIndexRowsStayFarBelowTheLimit extracts the index rows of every
// shared sample resource (Bundle entries one by one) and checks the
// default cap is more than ten times the most any needs.
func TestSampleIndexRowsStayFarBelowTheLimit(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	s := newService(t, db)
	dir, files := sampleFiles(t)
	most, where := 0, ""
	rowsOf := func(name string, raw []byte) {
		env, err := fhir.ReadEnvelope(raw)
		if err != nil {
			return
		}
		doc, err := decodeDoc(raw)
		if err != nil {
			return
		}
		rows, err := extract(s.ring, env.ResourceType, doc, 1<<30)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if n := rows.count(); n > most {
			most, where = n, name
		}
	}
	for _, name := range files {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		rowsOf(name, raw)
		if b, err := fhir.ParseBundle(raw); err == nil {
			for i, e := range b.Entry {
				if len(e.Resource) > 0 {
					rowsOf(name+"#entry["+strconv.Itoa(i)+"]", e.Resource)
				}
			}
		}
	}
	t.Logf("the most index rows of any sample resource: %d (%s)", most, where)
	if most == 0 || most*10 > DefaultMaxIndexRows {
		t.Errorf("the default index-row cap (%d) is within 10× of a real sample (%d)", DefaultMaxIndexRows, most)
	}
}

// holdBig holds the write of any resource longer than min inside its
// transaction, saying when it got there, until release is closed.
type holdBig struct {
	min         int
	in, release chan struct{}
}

func (h *holdBig) Written(_ context.Context, _ store.Tx, _, _ string, raw []byte) error {
	if len(raw) > h.min {
		close(h.in)
		<-h.release
	}
	return nil
}

// TestABigCreateDoesNotHoldTheGroup: a create far larger than a real
// record commits in a transaction of its own, so the creates that arrive
// while it is being written commit beside it instead of queueing behind it
// in its group. PostgreSQL only: SQLite has one writer, and every create
// waits for the big one's transaction whatever the grouping.
func TestABigCreateDoesNotHoldTheGroup(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		if db.Dialect() == store.SQLite {
			t.Skip("one writer: creates wait for any open write transaction")
		}
		ctx := context.Background()
		s := newService(t, db)
		hold := &holdBig{min: maxGroupedBody, in: make(chan struct{}), release: make(chan struct{})}
		s.hooks = append(s.hooks, hold)
		var b strings.Builder
		b.WriteString(`{"resourceType":"Patient","extension":[`)
		for i := range 2000 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"url":"http://example.org/x","valueString":"v` + strconv.Itoa(i) + `"}`)
		}
		b.WriteString(`]}`)
		big := []byte(b.String())
		if len(big) <= maxGroupedBody {
			t.Fatalf("the big body is only %d bytes", len(big))
		}
		bigDone := make(chan error, 1)
		go func() { _, _, err := s.Create(ctx, nil, "Patient", big, ""); bigDone <- err }()
		<-hold.in

		smallDone := make(chan error, 1)
		go func() {
			_, _, err := s.Create(ctx, nil, "Patient", []byte(`{"resourceType":"Patient","active":true}`), "")
			smallDone <- err
		}()
		waited := false
		select {
		case err := <-smallDone:
			if err != nil {
				t.Errorf("small create: %v", err)
			}
		case <-time.After(10 * time.Second):
			waited = true
			t.Error("a small create waited for the big create's transaction")
		}
		close(hold.release)
		if err := <-bigDone; err != nil {
			t.Fatalf("big create: %v", err)
		}
		if waited {
			<-smallDone
		}
	})
}

// TestCapabilityStatementStatesTheLimits: clients learn the configured
// limits from the CapabilityStatement, before they are refused by one.
func TestCapabilityStatementStatesTheLimits(t *testing.T) {
	for _, tc := range []struct {
		limits Limits
		want   []string
	}{
		{Limits{}, []string{"at most 100000 elements", "10000 items per array", "nesting 64 deep", "10000 search-index rows", "too-costly"}},
		{Limits{Limits: fhir.Limits{ArrayItems: 250}, IndexRows: 777}, []string{"250 items per array", "777 search-index rows", "at most 100000 elements"}},
	} {
		raw := CapabilityStatementFor("test", time.Now(), CapabilityOptions{Limits: tc.limits})
		readCap(t, raw) // valid R4
		var doc struct {
			Rest []struct {
				Documentation string `json:"documentation"`
			} `json:"rest"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Rest) != 1 {
			t.Fatalf("decode: %v", err)
		}
		for _, w := range tc.want {
			if !strings.Contains(doc.Rest[0].Documentation, w) {
				t.Errorf("rest.documentation lacks %q: %s", w, doc.Rest[0].Documentation)
			}
		}
	}
}
