package auth_test

import (
	"context"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store/storetest"
)

// BenchmarkDecide measures one decision: the policy alone (in-memory
// sources), and against each database with a fresh per-request cache
// (one relationship and one consent query) and with a warm one (a list's
// second and later records of the same patient).
func BenchmarkDecide(b *testing.B) {
	req := auth.Request{Action: auth.ActionRead, ResourceType: "Observation", PatientID: "pat-1"}
	doc := user(auth.Physician)
	b.Run("memory", func(b *testing.B) {
		az := auth.NewAuthorizer(auth.DefaultPolicy(),
			&memRelations{vias: map[string]auth.Vias{"u-physician|pat-1": auth.RelCareTeam}}, &memConsents{}, nil)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if d := az.Decide(ctx, doc, req); !d.Allowed {
				b.Fatal(d.Reason)
			}
		}
	})
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			ctx := context.Background()
			access := auth.NewAccess(db, nil, nil)
			team, err := access.CareTeams.Create(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			for _, err := range []error{
				access.CareTeams.AddMember(ctx, team.ID, doc.Subject, "attending"),
				access.CareTeams.AddPatient(ctx, team.ID, "pat-1"),
			} {
				if err != nil {
					b.Fatal(err)
				}
			}
			if _, err := access.Consents.Put(ctx, "pat-1", 0, []auth.ConsentInput{{Purpose: auth.PurposeResearch, Decision: auth.ConsentPermit}}, "a", "api"); err != nil {
				b.Fatal(err)
			}
			b.Run("cold", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if d := access.Authorizer.Decide(auth.WithDecisionCache(ctx), doc, req); !d.Allowed {
						b.Fatal(d.Reason)
					}
				}
			})
			b.Run("warm", func(b *testing.B) {
				cctx := auth.WithDecisionCache(ctx)
				b.ReportAllocs()
				for b.Loop() {
					if d := access.Authorizer.Decide(cctx, doc, req); !d.Allowed {
						b.Fatal(d.Reason)
					}
				}
			})
		})
	}
}
