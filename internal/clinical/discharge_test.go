package clinical

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// recordMap is an engine.Records: "Type/id" → patient id of the record.
type recordMap map[string]string

func (m recordMap) PatientOf(_ context.Context, _ store.Querier, typ, id string) (string, bool, error) {
	p, ok := m[typ+"/"+id]
	return p, ok, nil
}

// newEngine builds an engine (not started: runs are only started and
// checked) on db with the clinical definitions registered by Register.
func newEngine(t *testing.T, db *store.DB, records engine.Records) *engine.Engine {
	t.Helper()
	ctx := context.Background()
	if _, err := engine.MigrateRiver(ctx, db, nil); err != nil {
		t.Fatalf("river migrations: %v", err)
	}
	mk, err := phi.ParseMasterKey(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := phi.OpenRing(ctx, db, mk, phi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	if err := Register(reg, Deps{}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Config{DB: db, Registry: reg, Ring: ring, Records: records})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDischargeSignOffInputIsChecked(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		n := newEngine(t, db, recordMap{"Encounter/enc-1": "pat-1"})
		ctx := context.Background()
		for _, tc := range []struct {
			name    string
			patient string
			input   string
			field   string
		}{
			{"a patient is required", "", `{"encounter":"Encounter/enc-1"}`, "patient_id"},
			{"the encounter is required", "pat-1", `{}`, "input.encounter"},
			{"the encounter is a reference", "pat-1", `{"encounter":"enc-1"}`, "input.encounter"},
			{"no other member", "pat-1", `{"encounter":"Encounter/enc-1","note":"x"}`, "input"},
		} {
			_, _, err := n.StartRun(ctx, engine.StartOptions{Definition: DischargeSignOffDefinition, PatientID: tc.patient, Input: json.RawMessage(tc.input)})
			if e, ok := errs.As(err); !ok || e.Kind != errs.Invalid || e.Field != tc.field {
				t.Errorf("%s: %v, want invalid %s", tc.name, err, tc.field)
			}
		}
		// The encounter must be the patient's (the definition's RecordInputs).
		_, _, err := n.StartRun(ctx, engine.StartOptions{Definition: DischargeSignOffDefinition, PatientID: "pat-2",
			Input: map[string]string{"encounter": "Encounter/enc-1"}})
		if e, ok := errs.As(err); !ok || e.Kind != errs.Unprocessable || e.Field != "input.encounter" {
			t.Errorf("another patient's encounter: %v", err)
		}
		if _, _, err := n.StartRun(ctx, engine.StartOptions{Definition: DischargeSignOffDefinition, PatientID: "pat-1",
			Input: map[string]string{"encounter": "Encounter/enc-1"}}); err != nil {
			t.Fatal(err)
		}
	})
}

// The sign-off is a physician's decision, due in 4 hours, escalated after 2
// to every physician's list (not to another role): the rule the workflows
// matrix and the escalation tests in httpapi rely on.
func TestDischargeSignOffIsAPhysiciansTask(t *testing.T) {
	t.Parallel()
	d := dischargeSignOff()
	if d.Name != DischargeSignOffDefinition || d.Version != 1 || len(d.Steps) != 2 {
		t.Fatalf("definition %s v%d with %d steps", d.Name, d.Version, len(d.Steps))
	}
	w, err := d.Steps[0].Wait(&engine.Input{})
	if err != nil || w.Task == nil {
		t.Fatalf("the first step is not a task: %+v, %v", w, err)
	}
	spec := w.Task
	if spec.Role != "physician" || spec.EscalateTo != "physician" || spec.Due != 4*time.Hour || spec.EscalateAfter != 2*time.Hour {
		t.Fatalf("task %+v", spec)
	}
	if len(spec.Decisions) != 2 || spec.Decisions[0] != DischargeSignOff || spec.Decisions[1] != DischargeNotReady {
		t.Fatalf("decisions %v", spec.Decisions)
	}
}
