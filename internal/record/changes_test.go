package record

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// failingHook refuses every write after the event hook ran, as a hook
// with an error would.
type failingHook struct{}

func (failingHook) Changed(context.Context, store.Tx, Change) error { return errors.New("refused") }

const eventNameMarker = "Quexaliant"

// TestRecordWritesWriteTheirEventsInTheirTransaction: with the event hook,
// a create, an update and a delete each write one event of the resource's
// aggregate (sequence 1, 2, 3) naming type, id, version and patient, and
// nothing of the content; a write rolled back (a change hook's error, a
// transaction Bundle whose second entry fails) leaves no event.
func TestRecordWritesWriteTheirEventsInTheirTransaction(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		s.changes = []ChangeHook{EventHook{}}

		pat, _, err := s.Create(ctx, nil, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"`+eventNameMarker+`"}]}`), "")
		if err != nil {
			t.Fatal(err)
		}
		obs := `{"resourceType":"Observation","status":"final","code":{"text":"` + eventNameMarker + `"},"subject":{"reference":"Patient/` + pat.ID + `"}}`
		o, _, err := s.Create(ctx, nil, "Observation", []byte(obs), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Update(ctx, nil, "Observation", o.ID, []byte(strings.Replace(obs, `{"resourceType"`, `{"id":"`+o.ID+`","resourceType"`, 1)), ""); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, nil, "Observation", o.ID); err != nil {
			t.Fatal(err)
		}
		evs, err := events.Since(ctx, db.Reader(), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		type want struct {
			kind, typ, id string
			seq           int64
			version       int
			patient       string
		}
		wants := []want{
			{events.RecordCreated, "Patient", pat.ID, 1, 1, pat.ID},
			{events.RecordCreated, "Observation", o.ID, 1, 1, pat.ID},
			{events.RecordUpdated, "Observation", o.ID, 2, 2, pat.ID},
			{events.RecordDeleted, "Observation", o.ID, 3, 3, pat.ID},
		}
		if len(evs) != len(wants) {
			t.Fatalf("%d events, want %d: %+v", len(evs), len(wants), evs)
		}
		for i, w := range wants {
			ev := evs[i]
			var p struct {
				Type      string `json:"type"`
				ID        string `json:"id"`
				Version   int    `json:"version"`
				PatientID string `json:"patient_id"`
			}
			if err := json.Unmarshal(ev.Payload, &p); err != nil {
				t.Fatal(err)
			}
			if ev.Kind != w.kind || ev.AggregateType != w.typ || ev.AggregateID != w.id || ev.Sequence != w.seq ||
				p.Type != w.typ || p.ID != w.id || p.Version != w.version || p.PatientID != w.patient {
				t.Errorf("event %d: %+v payload %s, want %+v", i, ev, ev.Payload, w)
			}
			if strings.Contains(string(ev.Payload), eventNameMarker) {
				t.Errorf("event %d carries the resource's content: %s", i, ev.Payload)
			}
		}
		last := evs[len(evs)-1].ID

		// A hook's error after the event was written rolls both back.
		s.changes = []ChangeHook{EventHook{}, failingHook{}}
		if _, _, err := s.Create(ctx, nil, "Patient", []byte(`{"resourceType":"Patient"}`), ""); err == nil {
			t.Fatal("the refused create succeeded")
		}
		s.changes = []ChangeHook{EventHook{}}
		// A transaction whose first entry is written and whose second fails
		// (If-Match on an id never used) commits nothing.
		bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
{"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
{"resource":{"resourceType":"Patient","id":"never-used"},"request":{"method":"PUT","url":"Patient/never-used","ifMatch":"W/\"3\""}}]}`
		if _, err := s.ProcessBundle(ctx, nil, []byte(bundle)); err == nil {
			t.Fatal("the failing transaction succeeded")
		}
		if after, err := events.Since(ctx, db.Reader(), last, 100); err != nil || len(after) != 0 {
			t.Fatalf("rolled-back writes left events: %+v %v", after, err)
		}
		// Not vacuous: the same create without the failing hook writes one.
		if _, _, err := s.Create(ctx, nil, "Patient", []byte(`{"resourceType":"Patient"}`), ""); err != nil {
			t.Fatal(err)
		}
		if after, err := events.Since(ctx, db.Reader(), last, 100); err != nil || len(after) != 1 || after[0].Sequence != 1 {
			t.Fatalf("after a committed create: %+v %v", after, err)
		}
	})
}

// BenchmarkCreatePatientWithEvents is BenchmarkCreatePatient with the event
// hook serve wires: the cost of the event rows in each create.
func BenchmarkCreatePatientWithEvents(b *testing.B) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, benchDB(b, d))
			s.changes = []ChangeHook{EventHook{}}
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, _, err := s.Create(ctx, nil, "Patient", benchPatient(i), ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
