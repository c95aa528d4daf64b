package record

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// fieldGuard grants writes the listed fields (nil: every one) and records
// the elements each write was decided with. It does not check them itself,
// so the record's own check is what refuses.
type fieldGuard struct {
	fields []string

	mu       sync.Mutex
	elements [][]string
	patients []string
}

func (g *fieldGuard) Allow(context.Context, Access) error { return nil }

func (g *fieldGuard) AllowTx(_ context.Context, _ store.Tx, a Access, elements []string) (Grant, error) {
	g.mu.Lock()
	g.elements = append(g.elements, elements)
	g.patients = append(g.patients, a.PatientID)
	g.mu.Unlock()
	return Grant{Fields: g.fields}, nil
}

// storedDoc reads typ/id unguarded and decodes it.
func storedDoc(t *testing.T, s *Service, typ, id string) (Record, map[string]json.RawMessage) {
	t.Helper()
	rec, err := s.Read(context.Background(), nil, typ, id)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(rec.JSON, &doc); err != nil {
		t.Fatal(err)
	}
	return rec, doc
}

func TestWriteKeepsAndRefusesElementsOutsideTheGrant(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		// What a physician (every field) wrote.
		full := `{"resourceType":"Patient","id":"p1",` +
			`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Seen by Dr A</div>"},` +
			`"extension":[{"url":"http://example.org/fhir/StructureDefinition/religion","valueString":"x"}],` +
			`"name":[{"family":"Old"}],"birthDate":"1980-02-03","_birthDate":{"extension":[{"url":"http://example.org/fhir/StructureDefinition/approx","valueBoolean":true}]},` +
			`"deceasedBoolean":false}`
		if _, _, err := s.Update(ctx, nil, "Patient", "p1", []byte(full), ""); err != nil {
			t.Fatal(err)
		}
		demographics := &fieldGuard{fields: []string{"id", "meta", "resourceType", "name", "gender", "birthDate"}}

		// The writer's body replaces what it may write; the rest is kept.
		rec, _, err := s.Update(ctx, demographics, "Patient", "p1", []byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"New"}],"birthDate":"1980-02-03"}`), `W/"1"`)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Version != 2 {
			t.Fatalf("version %d, want 2", rec.Version)
		}
		if got := demographics.elements[0]; !slices.Equal(got, []string{"birthDate", "meta", "name"}) {
			t.Fatalf("guard told elements %v", got)
		}
		_, doc := storedDoc(t, s, "Patient", "p1")
		if string(doc["name"]) != `[{"family":"New"}]` || string(doc["deceasedBoolean"]) != "false" ||
			doc["text"] == nil || doc["extension"] == nil {
			t.Fatalf("stored %s: want the new name with text, extension and deceasedBoolean kept", mustRead(t, s, "Patient", "p1"))
		}
		if doc["_birthDate"] != nil {
			t.Fatal("_birthDate follows birthDate, which the writer may write and left without it: it must go")
		}
		if string(rec.JSON) != string(mustRead(t, s, "Patient", "p1")) {
			t.Fatal("the record returned by the write is not the stored one")
		}

		// Setting an element outside the grant is refused with its path,
		// and nothing is stored.
		for _, c := range []struct{ body, path string }{
			{`{"resourceType":"Patient","id":"p1","name":[{"family":"X"}],"deceasedBoolean":true}`, "Patient.deceasedBoolean"},
			{`{"resourceType":"Patient","id":"p1","name":[{"family":"X"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}`, "Patient.text"},
			{`{"resourceType":"Patient","id":"p1","_deceasedBoolean":{"extension":[{"url":"http://example.org/x","valueBoolean":true}]}}`, "Patient.deceasedBoolean"},
		} {
			_, _, err := s.Update(ctx, demographics, "Patient", "p1", []byte(c.body), "")
			e, ok := errs.As(err)
			if !ok || e.Kind != errs.Forbidden || e.Field != c.path {
				t.Fatalf("write setting %s: %v, want forbidden naming it", c.path, err)
			}
		}
		if rec, doc := storedDoc(t, s, "Patient", "p1"); rec.Version != 2 || string(doc["deceasedBoolean"]) != "false" {
			t.Fatalf("a refused write changed the record: version %d, %s", rec.Version, mustRead(t, s, "Patient", "p1"))
		}

		// A create has nothing to keep; an element outside the grant is refused.
		_, _, err = s.Create(ctx, demographics, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"C"}],"extension":[{"url":"http://example.org/x","valueString":"y"}]}`), "")
		if e, ok := errs.As(err); !ok || e.Kind != errs.Forbidden || e.Field != "Patient.extension" {
			t.Fatalf("create with an extension: %v", err)
		}
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM resources WHERE type = 'Patient'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d Patients stored (%v), want 1", n, err)
		}

		// If-Match still applies.
		if _, _, err := s.Update(ctx, demographics, "Patient", "p1", []byte(`{"resourceType":"Patient","id":"p1"}`), `W/"1"`); !errs.Is(err, errs.PreconditionFailed) {
			t.Fatalf("stale If-Match: %v", err)
		}

		// The merged document is validated: a kept choice element clashes
		// with the one written.
		dated := &fieldGuard{fields: []string{"id", "meta", "resourceType", "name", "deceasedDateTime"}}
		_, _, err = s.Update(ctx, dated, "Patient", "p1", []byte(`{"resourceType":"Patient","id":"p1","deceasedDateTime":"2026-01-01"}`), "")
		var ie *IssuesError
		if !errs.Is(err, errs.Unprocessable) || errors.As(err, &ie) || strings.Contains(err.Error(), "deceasedBoolean") {
			t.Fatalf("deceasedDateTime beside a kept deceasedBoolean: %v, want unprocessable without naming what is kept", err)
		}

		// A grant of every element keeps nothing: leaving out removes.
		if _, _, err := s.Update(ctx, &fieldGuard{}, "Patient", "p1", []byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"All"}]}`), ""); err != nil {
			t.Fatal(err)
		}
		if _, doc := storedDoc(t, s, "Patient", "p1"); doc["text"] != nil || doc["deceasedBoolean"] != nil || doc["extension"] != nil {
			t.Fatalf("a writer of every element left them out, yet %s", mustRead(t, s, "Patient", "p1"))
		}
	})
}

// An element kept from the stored version may be the one that names the
// record's patient: the record stays in its compartment, decided there.
func TestWriteKeepsTheCompartmentOfAKeptElement(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		if _, _, err := s.Update(ctx, nil, "Observation", "o1", []byte(`{"resourceType":"Observation","id":"o1","status":"preliminary","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`), ""); err != nil {
			t.Fatal(err)
		}
		g := &fieldGuard{fields: []string{"id", "meta", "resourceType", "status", "code"}}
		rec, _, err := s.Update(ctx, g, "Observation", "o1", []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}`), "")
		if err != nil {
			t.Fatal(err)
		}
		if rec.PatientID != "a" || !slices.Equal(g.patients, []string{"a"}) {
			t.Fatalf("patient %q, decided for %v; want a, once", rec.PatientID, g.patients)
		}
		if _, doc := storedDoc(t, s, "Observation", "o1"); string(doc["subject"]) != `{"reference":"Patient/a"}` || string(doc["status"]) != `"final"` {
			t.Fatalf("stored %s", mustRead(t, s, "Observation", "o1"))
		}
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM resource_refs WHERE rid = (SELECT rid FROM resources WHERE type = 'Observation' AND id = 'o1') AND target_id = 'a'`).Scan(&n); err != nil || n == 0 {
			t.Fatalf("the kept subject is not indexed (%d rows, %v)", n, err)
		}
	})
}

func mustRead(t *testing.T, s *Service, typ, id string) []byte {
	t.Helper()
	rec, err := s.Read(context.Background(), nil, typ, id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.JSON
}

// BenchmarkUpdatePatientFields is the cost of the field rules: an update
// granted every element against one granted demographics only (the stored
// version read, opened, merged and validated again).
func BenchmarkUpdatePatientFields(b *testing.B) {
	grants := []struct {
		name string
		g    *fieldGuard
	}{
		{"every", &fieldGuard{}},
		{"demographics", &fieldGuard{fields: []string{"id", "meta", "resourceType", "name", "gender", "birthDate", "identifier"}}},
	}
	full := `{"resourceType":"Patient","id":"p1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">note</div>"},` +
		`"extension":[{"url":"http://example.org/x","valueString":"y"}],"name":[{"family":"A"}],"gender":"female","deceasedBoolean":false}`
	body := []byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"B"}],"gender":"female"}`)
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		for _, gr := range grants {
			b.Run(string(d)+"/"+gr.name, func(b *testing.B) {
				s := newService(b, benchDB(b, d))
				ctx := context.Background()
				if _, _, err := s.Update(ctx, nil, "Patient", "p1", []byte(full), ""); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					// Put the hidden elements back, outside the timer, so
					// that every round of both grants updates the same document.
					b.StopTimer()
					if _, _, err := s.Update(ctx, nil, "Patient", "p1", []byte(full), ""); err != nil {
						b.Fatal(err)
					}
					gr.g.elements = gr.g.elements[:0]
					b.StartTimer()
					if _, _, err := s.Update(ctx, gr.g, "Patient", "p1", body, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
