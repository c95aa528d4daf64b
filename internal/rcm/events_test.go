package rcm

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A denied claim appealed and paid writes the journeys' and claims' state
// changes as events on each journey's aggregate, in the order they
// committed, with ids, states and amounts only: no name, national id,
// phone, member id or clinical code.
func TestJourneyAndClaimChangesAreEvents(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, denyOriginal: true})
		ctx := context.Background()
		j, _, err := e.svc.StartJourney(ctx, billing(e), request(KindStandard, nidMona, []string{"E11.9"}, []string{"99213"}), StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j = e.wait(t, j.ID, "the denial", final)
		a, err := e.svc.Appeal(ctx, billing(e), j.ID, AppealRequest{Reason: "medical necessity documented"})
		if err != nil {
			t.Fatal(err)
		}
		a = e.wait(t, a.ID, "the appeal's payment", final)

		all, err := events.Since(ctx, db.Reader(), 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		type change struct{ kind, status, previous string }
		got := map[string][]change{}
		for _, ev := range all {
			if ev.AggregateType != JourneyType {
				continue
			}
			for _, leak := range []string{nidMona, "Mona", "حسن", "+201000000000", "M-1", "E11.9", "99213"} {
				if strings.Contains(string(ev.Payload), leak) {
					t.Fatalf("event %s carries %q: %s", ev.Kind, leak, ev.Payload)
				}
			}
			var p struct {
				JourneyID, Status, PreviousStatus string
			}
			var raw map[string]any
			if err := json.Unmarshal(ev.Payload, &raw); err != nil {
				t.Fatal(err)
			}
			p.JourneyID, _ = raw["journey_id"].(string)
			p.Status, _ = raw["status"].(string)
			p.PreviousStatus, _ = raw["previous_status"].(string)
			if p.JourneyID != ev.AggregateID {
				t.Fatalf("event of journey %s names %s", ev.AggregateID, p.JourneyID)
			}
			if int(ev.Sequence) != len(got[ev.AggregateID])+1 {
				t.Fatalf("journey %s: sequence %d after %d", ev.AggregateID, ev.Sequence, len(got[ev.AggregateID]))
			}
			got[ev.AggregateID] = append(got[ev.AggregateID], change{ev.Kind, p.Status, p.PreviousStatus})
		}
		has := func(id string, want ...change) {
			t.Helper()
			i := 0
			for _, c := range got[id] {
				if i < len(want) && c == want[i] {
					i++
				}
			}
			if i != len(want) {
				t.Fatalf("journey %s events %+v do not hold %+v in order", id, got[id], want)
			}
		}
		has(j.ID,
			change{EventJourneyStatus, StatusActive, ""},
			change{EventClaimStatus, "created", ""},
			change{EventJourneyStatus, StatusClosed, StatusActive},
			change{EventClaimStatus, OutcomeDenied, "created"})
		has(a.ID,
			change{EventJourneyStatus, StatusActive, ""},
			change{EventClaimStatus, "created", ""},
			change{EventClaimStatus, "approved", "created"},
			change{EventJourneyStatus, StatusClosed, StatusActive},
			change{EventClaimStatus, OutcomePaid, "approved"})
	})
}
