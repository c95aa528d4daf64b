package clinical

import (
	"context"
	"errors"
	"regexp"
	"time"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
)

// DischargeSignOffDefinition asks a physician of the patient's care team to
// sign off an encounter's discharge: one human task (sign_off or
// not_ready), due in 4 hours; after 2 hours an unfinished task is
// escalated: released from whoever claimed it and put back, flagged, on
// every physician's list. The run's last step records the outcome
// ({"encounter", "outcome", "decided_by"}), which is what a bed board or
// the discharge paperwork reads; the definition itself changes nothing in
// the record.
const DischargeSignOffDefinition = "discharge.signoff"

// The discharge sign-off's task decisions.
const (
	DischargeSignOff  = "sign_off"
	DischargeNotReady = "not_ready"
)

// DischargeSignOffInput is the input of the discharge sign-off definition.
type DischargeSignOffInput struct {
	// Encounter is the encounter being discharged, as a FHIR reference:
	// "Encounter/" and its id.
	Encounter string `json:"encounter"`
}

// encounterRef is a FHIR relative reference to an Encounter (the R4 id
// rule: 1 to 64 letters, digits, - and .).
var encounterRef = regexp.MustCompile(`^Encounter/[A-Za-z0-9\-.]{1,64}$`)

// dischargeSignOff is DischargeSignOffDefinition, version 1.
func dischargeSignOff() *engine.Definition {
	return &engine.Definition{Name: DischargeSignOffDefinition, Version: 1,
		// The encounter must be the run's patient's: the sign-off is the
		// patient's discharge, decided by the patient's physician.
		RecordInputs: []engine.RecordInput{{Member: "encounter", Types: []string{"Encounter"}}},
		Validate: func(in *engine.Input) error {
			if in.PatientID == "" {
				return errs.E(errs.Invalid, "a discharge sign-off is about a patient: patient_id is required").InField("patient_id")
			}
			var d DischargeSignOffInput
			if err := in.DecodeStrict(&d, "encounter"); err != nil {
				return err
			}
			if !encounterRef.MatchString(d.Encounter) {
				return errs.E(errs.Invalid, "is required: a reference Encounter/<id>").InField("input.encounter")
			}
			return nil
		},
		Steps: []engine.Step{
			{Name: "sign-off", Wait: func(*engine.Input) (engine.Wait, error) {
				return engine.Wait{Task: &engine.TaskSpec{
					Title:     "Sign off the discharge",
					Role:      "physician",
					Decisions: []string{DischargeSignOff, DischargeNotReady},
					Due:       4 * time.Hour,
					// Escalation releases a claim someone sat on and flags
					// the task on every physician's list: the sign-off stays
					// a physician's decision.
					EscalateAfter: 2 * time.Hour,
					EscalateTo:    "physician",
				}}, nil
			}},
			{Name: "record", Timeout: 5 * time.Second, Do: func(_ context.Context, sc *engine.StepContext) (engine.Result, error) {
				var in DischargeSignOffInput
				if err := sc.Decode(&in); err != nil {
					return engine.Result{}, engine.Permanent(errors.New("input is not a discharge sign-off input"))
				}
				var task struct {
					Decision    string `json:"decision"`
					CompletedBy string `json:"completed_by"`
				}
				if ok, err := sc.Output("sign-off", &task); err != nil || !ok {
					return engine.Result{}, engine.Permanent(errors.New("the sign-off step left no decision"))
				}
				outcome := "signed_off"
				if task.Decision != DischargeSignOff {
					outcome = DischargeNotReady
				}
				return engine.Result{Output: map[string]any{"encounter": in.Encounter, "outcome": outcome, "decided_by": task.CompletedBy}}, nil
			}},
		}}
}
