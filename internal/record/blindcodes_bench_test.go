package record

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/careflow/careflow/internal/store"
)

// benchObservation is a lab result of one of 2,000 LOINC-shaped codes, with a
// category, a subject, a time and a value: the resource a hospital writes
// most.
func benchObservation(i int) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Observation","status":"final",
"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
"code":{"coding":[{"system":"http://loinc.org","code":"%s","display":"Lab test"}]},
"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2026-03-01T10:00:00Z",
"valueQuantity":{"value":%d,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}`,
		benchLOINC(i), i%1000, 50+i%100)
}

// benchLOINC is the code of the i-th benchmark Observation.
func benchLOINC(i int) string { return fmt.Sprintf("%d-%d", 10000+i%2000, i%10) }

// benchCondition is a diagnosis coded in SNOMED CT and ICD-10-CM.
func benchCondition(i int) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Condition","subject":{"reference":"Patient/p%d"},
"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
"onsetDateTime":"2026-02-10",
"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"},{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9"}]}}`, i%1000)
}

func BenchmarkCreateObservation(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, _, err := s.Create(ctx, nil, "Observation", benchObservation(i), ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCreateCondition(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, _, err := s.Create(ctx, nil, "Condition", benchCondition(i), ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSearchObservationByCode searches 4,000 Observations by one of
// their 2,000 system|code values (two matches each).
func BenchmarkSearchObservationByCode(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			ctx := context.Background()
			err := s.db.Tx(ctx, func(tx store.Tx) error {
				for i := range 4000 {
					if _, _, err := s.createTx(ctx, tx, nil, "Observation", "", benchObservation(i), ""); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				code := "http://loinc.org|" + benchLOINC(i)
				q, err := s.ParseQuery("Observation", url.Values{"code": {code}})
				if err != nil {
					b.Fatal(err)
				}
				res, err := s.Search(ctx, nil, q)
				if err != nil || len(res.Matches) != 2 {
					b.Fatalf("%v, %d matches", err, len(res.Matches))
				}
			}
		})
	}
}

// BenchmarkBlindLegacyCodes times one full pass of the start-up re-index
// over 4,000 Observations (an op is the whole pass; resources/s is
// 4000/op). The rows are already blind after the first pass, which costs
// the same: every resource is opened, extracted and its tokens rewritten.
func BenchmarkBlindLegacyCodes(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			ctx := context.Background()
			err := s.db.Tx(ctx, func(tx store.Tx) error {
				for i := range 4000 {
					if _, _, err := s.createTx(ctx, tx, nil, "Observation", "", benchObservation(i), ""); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := s.db.Writer().Exec(ctx, `INSERT INTO record_reindex (task) VALUES ('blind_codes')`); err != nil {
					b.Fatal(err)
				}
				if n, err := s.BlindLegacyCodes(ctx); err != nil || n != 4000 {
					b.Fatalf("%d, %v", n, err)
				}
			}
		})
	}
}

// BenchmarkReindexChangedParams times one start-up re-index of a type
// whose parameters changed, over 4,000 Observations (an op is the whole
// pass; resources/s is 4000/op): every resource is opened, extracted and
// all five kinds of index rows rewritten.
func BenchmarkReindexChangedParams(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			ctx := context.Background()
			err := s.db.Tx(ctx, func(tx store.Tx) error {
				for i := range 4000 {
					if _, _, err := s.createTx(ctx, tx, nil, "Observation", "", benchObservation(i), ""); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.ReindexChangedParams(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := s.db.Writer().Exec(ctx, `UPDATE record_param_sets SET fingerprint = 'old' WHERE type = 'Observation'`); err != nil {
					b.Fatal(err)
				}
				if n, err := s.ReindexChangedParams(ctx); err != nil || n != 4000 {
					b.Fatalf("%d, %v", n, err)
				}
			}
		})
	}
}
