package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store/storetest"
)

// BenchmarkFHIRSearch measures a search through the real server, reach,
// SQL, response filter and audit append included, over 2,000 more
// patients with an Observation each: a physician whose care team holds 50
// of them (confined to a list), billing (every patient but the 50 who
// refused payment use) and an integration client (every patient). Each
// asks a page of 20 with its accurate total.
func BenchmarkFHIRSearch(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			f := newFHIRMatrixFixture(b, db)
			ctx := context.Background()
			for i := range 2000 {
				p := fmt.Sprintf("bench-%04d", i)
				for _, r := range []struct{ typ, id, body string }{
					{"Patient", p, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","name":[{"family":"Bench"}]}`, p)},
					{"Observation", "obs." + p, fmt.Sprintf(`{"resourceType":"Observation","id":"obs.%s","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/%s"}}`, p, p)},
				} {
					if _, _, err := f.rec.Update(ctx, nil, r.typ, r.id, []byte(r.body), ""); err != nil {
						b.Fatal(err)
					}
				}
				var err error
				switch {
				case i%40 == 0:
					err = f.access.CareTeams.AddPatient(ctx, f.teamA, p)
				case i%40 == 1:
					_, err = f.access.Consents.Put(ctx, p, 0, []auth.ConsentInput{{Purpose: auth.PurposePayment, Decision: auth.ConsentDeny}}, "bench", "test")
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			for _, c := range []struct {
				name string
				role auth.Role
				path string
			}{
				{"physician_team50_observations", auth.Physician, "/fhir/R4/Observation?_count=20&_total=accurate"},
				{"integration_every_observation", auth.Integration, "/fhir/R4/Observation?_count=20&_total=accurate"},
				{"billing_all_but_50_patients", auth.Billing, "/fhir/R4/Patient?_count=20&_total=accurate"},
				{"integration_every_patient", auth.Integration, "/fhir/R4/Patient?_count=20&_total=accurate"},
			} {
				b.Run(c.name, func(b *testing.B) {
					who := f.principal(b, "bench-"+string(c.role), c.role, "")
					req, _ := http.NewRequest("GET", f.ts.URL+c.path, nil)
					req.Header.Set(testPrincipalHeader, who)
					b.ReportAllocs()
					for b.Loop() {
						resp, err := f.ts.Client().Do(req)
						if err != nil {
							b.Fatal(err)
						}
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Fatal(resp.StatusCode)
						}
					}
				})
			}
		})
	}
}
