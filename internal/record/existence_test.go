package record

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// existenceGuard is a TypeGuard that allows the actions of mayType on any
// type and, of records, those of the patients in reach; it notes every
// question in order.
type existenceGuard struct {
	mayType map[Action]bool
	reach   map[string]bool
	mu      sync.Mutex
	asked   []string
}

var errOutOfReach = errs.E(errs.NotFound, "out of reach")

func (g *existenceGuard) AllowType(_ context.Context, a Access) error {
	g.note("type " + string(a.Action))
	if a.PatientID != "" {
		return fmt.Errorf("the type question named patient %s", a.PatientID)
	}
	if !g.mayType[a.Action] {
		return errs.E(errs.Forbidden, "may not %s", a.Action)
	}
	return nil
}

func (g *existenceGuard) Allow(_ context.Context, a Access) error {
	g.note("record " + string(a.Action))
	if a.PatientID != "" && !g.reach[a.PatientID] {
		return errOutOfReach
	}
	return nil
}

func (g *existenceGuard) note(q string) {
	g.mu.Lock()
	g.asked = append(g.asked, q)
	g.mu.Unlock()
}

func (g *existenceGuard) questions() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.asked
	g.asked = nil
	return q
}

func existenceObservation(id, patient string) []byte {
	return []byte(`{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"}}`)
}

// Every interaction on a record by id asks the type question before the
// id is looked up: refused, the answer is the same error for an id that
// exists and for one that does not, and no record question was asked.
func TestTypeQuestionBeforeExistence(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		if _, _, err := s.Update(ctx, nil, "Observation", "o-1", existenceObservation("o-1", "p-1"), ""); err != nil {
			t.Fatal(err)
		}
		g := &existenceGuard{mayType: map[Action]bool{}, reach: map[string]bool{"p-1": true}}
		interactions := map[string]func(id string) error{
			"read":  func(id string) error { _, err := s.Read(ctx, g, "Observation", id); return err },
			"vread": func(id string) error { _, err := s.VRead(ctx, g, "Observation", id, "1"); return err },
			"history": func(id string) error {
				_, err := s.History(ctx, g, "Observation", id, url.Values{"_since": {"2000-01-01T00:00:00Z"}})
				return err
			},
			"update": func(id string) error {
				_, _, err := s.Update(ctx, g, "Observation", id, existenceObservation(id, "p-1"), `W/"1"`)
				return err
			},
			"conditional update": func(id string) error {
				_, _, err := s.ConditionalUpdate(ctx, g, "Observation", "_id="+id, existenceObservation(id, "p-1"), "")
				return err
			},
			"delete":             func(id string) error { return s.Delete(ctx, g, "Observation", id) },
			"conditional delete": func(id string) error { return s.ConditionalDelete(ctx, g, "Observation", "_id="+id) },
		}
		for name, do := range interactions {
			var msgs []string
			for _, id := range []string{"o-1", "o-never"} {
				err := do(id)
				if errs.KindOf(err) != errs.Forbidden {
					t.Fatalf("%s of %s: %v, want the type refusal", name, id, err)
				}
				msgs = append(msgs, err.Error())
				if q := g.questions(); len(q) != 1 || !strings.HasPrefix(q[0], "type ") {
					t.Fatalf("%s of %s asked %v, want the type question alone", name, id, q)
				}
			}
			if msgs[0] != msgs[1] {
				t.Fatalf("%s: %q for an id that exists, %q for one that does not", name, msgs[0], msgs[1])
			}
		}
	})
}

// Deletes by id once the type question is allowed: an id that does not
// exist is not known, a record out of reach is answered by the guard (the
// HTTP layer words both alike), a record in reach is deleted and deleting it
// again succeeds, and a deleted record out of reach stays out of reach.
func TestDeleteAnswersByExistence(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		for _, o := range []struct{ id, patient string }{{"o-mine", "p-1"}, {"o-theirs", "p-2"}, {"o-gone", "p-2"}} {
			if _, _, err := s.Update(ctx, nil, "Observation", o.id, existenceObservation(o.id, o.patient), ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Delete(ctx, nil, "Observation", "o-gone"); err != nil {
			t.Fatal(err)
		}
		g := &existenceGuard{mayType: map[Action]bool{ActDelete: true, ActUpdate: true}, reach: map[string]bool{"p-1": true}}
		if err := s.Delete(ctx, g, "Observation", "o-never"); errs.KindOf(err) != errs.NotFound || !strings.Contains(err.Error(), "Observation/o-never is not known") {
			t.Fatalf("delete of a missing id: %v", err)
		}
		if err := s.Delete(ctx, nil, "Observation", "o-never"); errs.KindOf(err) != errs.NotFound {
			t.Fatalf("delete of a missing id without a guard: %v", err)
		}
		for _, id := range []string{"o-theirs", "o-gone"} {
			if err := s.Delete(ctx, g, "Observation", id); err != errOutOfReach {
				t.Fatalf("delete of %s out of reach: %v", id, err)
			}
		}
		for i := range 2 {
			if err := s.Delete(ctx, g, "Observation", "o-mine"); err != nil {
				t.Fatalf("delete %d of a record in reach: %v", i+1, err)
			}
		}
		if _, err := s.Read(ctx, nil, "Observation", "o-theirs"); err != nil {
			t.Fatalf("the refused delete changed o-theirs: %v", err)
		}
		// An If-Match naming the hidden record's version or another is
		// refused as out of reach, never as a precondition that would
		// tell its version.
		for _, v := range []string{`W/"1"`, `W/"7"`} {
			if _, _, err := s.Update(ctx, g, "Observation", "o-theirs", existenceObservation("o-theirs", "p-1"), v); err != errOutOfReach {
				t.Fatalf("update of o-theirs with If-Match %s: %v", v, err)
			}
		}
	})
}
