package record

import (
	"context"
	"net/url"
	"slices"
	"testing"

	"github.com/careflow/careflow/internal/store"
)

// fixedReach is a Reacher with one reach for every type.
type fixedReach struct{ r Reach }

func (fixedReach) Allow(context.Context, Access) error                 { return nil }
func (g fixedReach) Reach(context.Context, string) (Reach, error)      { return g.r, nil }
func (g fixedReach) MatchReach(context.Context, string) (Reach, error) { return g.r, nil }

// BenchmarkSearchConfined measures what confining a search to the
// caller's reach costs, against the same search unconfined, over 10,000
// patients: a first page of 20 with its accurate total, _summary=count,
// and a name search. The reaches are a clinician's care team (20 and 500
// patients, a list bound as one parameter), and a role that sees every
// patient but 200 who refused the purpose.
func BenchmarkSearchConfined(b *testing.B) {
	const n = 10000
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			bulkLoad(b, s, 0, n)
			ids := patientIDs(b, s, n)
			// Every 17th patient, so a team is spread over the table.
			team := func(k int) []string {
				var out []string
				for i := 0; len(out) < k; i += 17 {
					out = append(out, ids[i%n])
				}
				return out
			}
			ctx := context.Background()
			guards := []struct {
				name string
				g    Guard
			}{
				{"unconfined", nil},
				{"team20", fixedReach{Reach{Patients: sortedCopy(team(20))}}},
				{"team500", fixedReach{Reach{Patients: sortedCopy(team(500))}}},
				{"all_but_200", fixedReach{Reach{AllPatients: true, Except: sortedCopy(team(200))}}},
			}
			queries := []struct {
				name   string
				params url.Values
			}{
				{"page_and_total", url.Values{"_count": {"20"}, "_total": {"accurate"}}},
				{"summary_count", url.Values{"_summary": {"count"}}},
				{"name", url.Values{"name": {"Mohamed"}, "_count": {"20"}}},
			}
			for _, qc := range queries {
				for _, gc := range guards {
					b.Run(qc.name+"/"+gc.name, func(b *testing.B) {
						q, err := s.ParseQuery("Patient", qc.params)
						if err != nil {
							b.Fatal(err)
						}
						b.ReportAllocs()
						for b.Loop() {
							if _, err := s.Search(ctx, gc.g, q); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		})
	}
}

func sortedCopy(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}
