package record

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// reachGuard is a Reacher with a fixed reach per type (Every for types it
// does not name) that records what it was asked.
type reachGuard struct {
	reach map[string]Reach
	match map[string]Reach
	// refuse is a patient whose records Allow refuses (a guard whose reach
	// and decisions disagree).
	refuse string

	mu     sync.Mutex
	access []Access
}

func (g *reachGuard) Allow(_ context.Context, a Access) error {
	g.mu.Lock()
	g.access = append(g.access, a)
	g.mu.Unlock()
	if g.refuse != "" && a.PatientID == g.refuse {
		return errs.E(errs.Forbidden, "refused")
	}
	return nil
}

func (g *reachGuard) Reach(_ context.Context, typ string) (Reach, error) {
	if r, ok := g.reach[typ]; ok {
		return r, nil
	}
	return Reach{Every: true}, nil
}

func (g *reachGuard) MatchReach(_ context.Context, typ string) (Reach, error) {
	if r, ok := g.match[typ]; ok {
		return r, nil
	}
	return Reach{Every: true}, nil
}

// seedCompartments stores patients a, b, c (three Observations each,
// performed by one Practitioner) and one Observation of no patient.
func seedCompartments(t *testing.T, s *Service) {
	t.Helper()
	mustPut(t, s, "Practitioner", "doc", `{"resourceType":"Practitioner","id":"doc","name":[{"family":"Doc"}]}`)
	for _, p := range []string{"a", "b", "c"} {
		mustPut(t, s, "Patient", p, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","name":[{"family":"Hidden"}],"identifier":[{"system":"urn:eg:nid","value":"N-%s"}]}`, p, p))
		for i := range 3 {
			mustPut(t, s, "Observation", fmt.Sprintf("%s%d", p, i), fmt.Sprintf(`{"resourceType":"Observation","id":"%s%d","status":"final","code":{"text":"x"},"identifier":[{"system":"urn:obs","value":"%s%d"}],"subject":{"reference":"Patient/%s"},"performer":[{"reference":"Practitioner/doc"}]}`, p, i, p, i, p))
		}
	}
	mustPut(t, s, "Observation", "device", `{"resourceType":"Observation","id":"device","status":"final","code":{"text":"x"}}`)
}

func refs(recs []Record) string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Ref())
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// A search confined to a reach counts, pages and includes only the
// records within it, so its total, its _summary=count and its next link
// agree with the matches it returns.
func TestSearchIsConfinedToTheReach(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		seedCompartments(t, s)
		search := func(g Guard, typ string, params url.Values) *Result {
			t.Helper()
			q, err := s.ParseQuery(typ, params)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Search(ctx, g, q)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		total := func(res *Result) int {
			t.Helper()
			if res.Total == nil {
				t.Fatal("no total")
			}
			return *res.Total
		}
		cases := []struct {
			name  string
			reach Reach
			want  int
		}{
			{"nothing", Reach{}, 0},
			{"one patient", Reach{Patients: []string{"a"}}, 3},
			{"two patients", Reach{Patients: []string{"a", "c"}}, 6},
			{"a patient without records", Reach{Patients: []string{"zz"}}, 0},
			{"all but one", Reach{AllPatients: true, Except: []string{"b"}}, 6},
			{"all but one, and no patient", Reach{AllPatients: true, Except: []string{"b"}, NoPatient: true}, 7},
			{"no patient", Reach{NoPatient: true}, 1},
			{"no patient and one", Reach{NoPatient: true, Patients: []string{"b"}}, 4},
			{"every", Reach{Every: true}, 10},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				g := &reachGuard{reach: map[string]Reach{"Observation": c.reach}}
				if n := total(search(g, "Observation", url.Values{"_summary": {"count"}})); n != c.want {
					t.Fatalf("_summary=count %d, want %d", n, c.want)
				}
				all := search(g, "Observation", url.Values{"_total": {"accurate"}, "_count": {"100"}})
				if total(all) != c.want || len(all.Matches) != c.want || all.HasNext {
					t.Fatalf("total %d, %d matches, next %v; want %d", total(all), len(all.Matches), all.HasNext, c.want)
				}
				for _, m := range all.Matches {
					if !(c.reach.Every || m.PatientID == "" && c.reach.NoPatient || m.PatientID != "" &&
						(c.reach.AllPatients && !slices.Contains(c.reach.Except, m.PatientID) || slices.Contains(c.reach.Patients, m.PatientID))) {
						t.Fatalf("%s of patient %q is out of reach %+v", m.Ref(), m.PatientID, c.reach)
					}
				}
				// Paging two by two: every page but the last has a next
				// one, the last page's total is exact, and the pages hold
				// exactly the matches.
				var paged []Record
				for off := 0; ; off += 2 {
					res := search(g, "Observation", url.Values{"_count": {"2"}, "_offset": {fmt.Sprint(off)}})
					paged = append(paged, res.Matches...)
					if !res.HasNext {
						if total(res) != c.want {
							t.Fatalf("last page's total %d, want %d", total(res), c.want)
						}
						break
					}
					if len(res.Matches) != 2 {
						t.Fatalf("a page with a next link holds %d", len(res.Matches))
					}
				}
				if refs(paged) != refs(all.Matches) {
					t.Fatalf("pages %s, matches %s", refs(paged), refs(all.Matches))
				}
			})
		}

		// The search is decided once, for the patient it names; each match
		// is passed as a record a search returns.
		g := &reachGuard{reach: map[string]Reach{"Observation": {Patients: []string{"a"}}}}
		res := search(g, "Observation", url.Values{"subject": {"Patient/a"}})
		if len(res.Matches) != 3 || len(g.access) != 4 || g.access[0] != (Access{Action: ActSearch, Type: "Observation", PatientID: "a"}) {
			t.Fatalf("%d matches; guard asked %+v", len(res.Matches), g.access)
		}
		for _, a := range g.access[1:] {
			if a.Action != ActSearch || a.ID == "" || a.PatientID != "a" {
				t.Fatalf("match passed as %+v", a)
			}
		}

		// A name that only a patient out of reach has: no match, no count.
		g = &reachGuard{reach: map[string]Reach{"Patient": {Patients: []string{"a"}}}}
		if n := total(search(g, "Patient", url.Values{"family": {"Hidden"}, "_total": {"accurate"}})); n != 1 {
			t.Fatalf("family=Hidden counts %d within one patient's reach", n)
		}
		if n := total(search(g, "Patient", url.Values{"identifier": {"urn:eg:nid|N-b"}, "_summary": {"count"}})); n != 0 {
			t.Fatalf("an identifier out of reach counts %d", n)
		}

		// Includes and reverse includes are confined by their own type's
		// reach.
		g = &reachGuard{reach: map[string]Reach{"Patient": {Patients: []string{"a"}}}}
		res = search(g, "Observation", url.Values{"_include": {"Observation:subject", "Observation:performer"}, "_count": {"100"}})
		if len(res.Matches) != 10 || refs(res.Included) != "Patient/a Practitioner/doc" {
			t.Fatalf("%d matches, included %s", len(res.Matches), refs(res.Included))
		}
		g = &reachGuard{reach: map[string]Reach{"Observation": {Patients: []string{"b"}}}}
		res = search(g, "Patient", url.Values{"_revinclude": {"Observation:subject"}})
		if len(res.Matches) != 3 || refs(res.Included) != "Observation/b0 Observation/b1 Observation/b2" {
			t.Fatalf("%d matches, included %s", len(res.Matches), refs(res.Included))
		}
		for _, a := range g.access {
			if a.Action != ActSearch {
				t.Fatalf("a search passed %+v to the guard", a)
			}
		}

		// A guard that refuses a match the reach let through: the match is
		// left out, and so is the total, which counted it.
		g = &reachGuard{refuse: "b"}
		res = search(g, "Observation", url.Values{"_total": {"accurate"}, "_count": {"100"}})
		if len(res.Matches) != 7 || res.Total != nil {
			t.Fatalf("%d matches, total %v; want 7 and none", len(res.Matches), res.Total)
		}
	})
}

// A type history is confined like a search, deletes included; the
// criteria of conditional interactions match only within MatchReach, so
// a record out of reach behaves as one that does not exist.
func TestHistoryAndConditionalsAreConfined(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		seedCompartments(t, s)
		if err := s.Delete(ctx, nil, "Observation", "b2"); err != nil {
			t.Fatal(err)
		}
		g := &reachGuard{reach: map[string]Reach{"Observation": {Patients: []string{"a"}}}}
		page, err := s.History(ctx, g, "Observation", "", url.Values{"_count": {"100"}})
		if err != nil {
			t.Fatal(err)
		}
		if refs(page.Entries) != "Observation/a0 Observation/a1 Observation/a2" || page.HasNext {
			t.Fatalf("type history %s", refs(page.Entries))
		}
		if g.access[0] != (Access{Action: ActSearch, Type: "Observation"}) {
			t.Fatalf("type history decided as %+v", g.access[0])
		}
		g = &reachGuard{reach: map[string]Reach{"Observation": {Patients: []string{"b"}}}}
		page, err = s.History(ctx, g, "Observation", "", url.Values{"_count": {"2"}})
		if err != nil || len(page.Entries) != 2 || !page.HasNext || !page.Entries[0].Deleted {
			t.Fatalf("patient b's history, newest first: %+v %v", page, err)
		}

		body := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`
		// Within reach, the existing record is found.
		g = &reachGuard{match: map[string]Reach{"Observation": {Patients: []string{"b"}}}}
		rec, created, err := s.Create(ctx, g, "Observation", []byte(body), "identifier=urn:obs|b0")
		if err != nil || created || rec.ID != "b0" {
			t.Fatalf("conditional create within reach: %s %v %v", rec.ID, created, err)
		}
		// Out of reach, it is as if it did not exist.
		g = &reachGuard{match: map[string]Reach{"Observation": {Patients: []string{"a"}}}}
		rec, created, err = s.Create(ctx, g, "Observation", []byte(body), "identifier=urn:obs|b0")
		if err != nil || !created || rec.ID == "b0" {
			t.Fatalf("conditional create out of reach: %s %v %v", rec.ID, created, err)
		}
		if err := s.ConditionalDelete(ctx, g, "Observation", "identifier=urn:obs|b1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(ctx, nil, "Observation", "b1"); err != nil {
			t.Fatalf("a conditional delete out of reach deleted: %v", err)
		}
		// A transaction's conditional reference to a patient out of reach
		// matches nothing.
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"},
			"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=urn:eg:nid|N-b"}}}]}`
		g = &reachGuard{match: map[string]Reach{"Patient": {Patients: []string{"a"}}}}
		if _, err := s.ProcessBundle(ctx, g, []byte(tx)); !errs.Is(err, errs.PreconditionFailed) {
			t.Fatalf("conditional reference out of reach: %v", err)
		}
		g = &reachGuard{match: map[string]Reach{"Patient": {Patients: []string{"b"}}}}
		if _, err := s.ProcessBundle(ctx, g, []byte(tx)); err != nil {
			t.Fatalf("conditional reference within reach: %v", err)
		}
	})
}
