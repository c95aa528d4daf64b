package record

import (
	"context"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A record in a patient's compartment keeps naming a patient: an update
// that drops its subject (or points it at a contained resource) is refused
// and stores nothing, since records of no patient are reached by rules no
// relationship or consent narrows; one that moves it to another patient
// goes through. A record that never named a patient may be given one.
func TestAPatientsRecordStaysInACompartment(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		obs := `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`
		if _, _, err := s.Update(ctx, nil, "Observation", "o1", []byte(obs), ""); err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]string{
			"no subject":        `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}`,
			"contained subject": `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"nb"}],"subject":{"reference":"#nb"}}`,
		} {
			_, _, err := s.Update(ctx, nil, "Observation", "o1", []byte(body), "")
			if errs.KindOf(err) != errs.Forbidden {
				t.Fatalf("%s: %v, want forbidden", name, err)
			}
			if pid, _, _ := s.PatientOf(ctx, nil, "Observation", "o1"); pid != "p1" {
				t.Fatalf("%s: the record moved to %q", name, pid)
			}
		}
		moved := `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p2"}}`
		if _, _, err := s.Update(ctx, nil, "Observation", "o1", []byte(moved), ""); err != nil {
			t.Fatalf("moving to another patient: %v", err)
		}
		orphan := `{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"x"}}`
		if _, _, err := s.Update(ctx, nil, "Observation", "o2", []byte(orphan), ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Update(ctx, nil, "Observation", "o2", []byte(`{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`), ""); err != nil {
			t.Fatalf("giving a record of no patient its patient: %v", err)
		}
		if pid, _, _ := s.PatientOf(ctx, nil, "Observation", "o2"); pid != "p1" {
			t.Fatalf("o2 is in %q", pid)
		}
	})
}
