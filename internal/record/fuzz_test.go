package record

import (
	"context"
	"net/url"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// FuzzSearchParams feeds arbitrary query strings to the search parser and
// runs whatever parses: a query is either refused as the client's error or
// runs without a database error, never an internal failure.
func FuzzSearchParams(f *testing.F) {
	for _, seed := range []string{
		"name=moh", "identifier=urn:mrn|123", "birthdate=eq1990-01-01", "date=ge2024-01-01&date=lt2025",
		"value-quantity=ap5.4|http://unitsofmeasure.org|mg", "subject:Patient=abc", "_sort=-date,_id",
		"_include=Encounter:patient&_revinclude=Claim:patient", "status:not=finished,cancelled", "name:contains=x",
		"_lastUpdated=sa2020-01-01T00:00:00Z", "_count=0&_summary=count", "code=a\\,b|c", "gender:missing=true",
	} {
		f.Add("Encounter", seed)
		f.Add("Patient", seed)
	}
	db := storetest.Open(f, store.SQLite)
	s := newService(f, db)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, nil, "Patient", benchPatient(1), ""); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ, query string) {
		vals, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		q, err := s.ParseQuery(typ, vals)
		if err != nil {
			if k := errs.KindOf(err); k != errs.Invalid && k != errs.NotFound {
				t.Fatalf("ParseQuery(%q, %q): %v (kind %s)", typ, query, err, k)
			}
			return
		}
		if _, err := s.Search(ctx, nil, q); err != nil {
			t.Fatalf("Search(%q, %q): %v", typ, query, err)
		}
	})
}
