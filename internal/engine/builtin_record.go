package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// DiagnosticsRecordDefinition writes two marker Observations to the run's
// patient's record in its "write" step's transaction (Step.Apply), then
// finishes. Like diagnostics it holds no clinical logic: it lets an
// operator see a step's FHIR writes commit with the step, and the crash
// tests kill the server under it. It is registered only when
// BuiltinOptions.Records is set (serve's --diagnostics-record-writes).
const DiagnosticsRecordDefinition = "diagnostics.record"

// DiagnosticsRecordSystem is the identifier system of the Observations the
// diagnostics.record definition writes; the values are the run id, "/" and
// 1 or 2, so each write can be found (and counted) by its identifier.
const DiagnosticsRecordSystem = "urn:careflow:diagnostics-record"

// RunActor is on whose behalf a step writes: the system, for one run, and
// only inside that run's patient's record.
type RunActor struct {
	RunID      string
	Definition string
	Step       string
	PatientID  string
}

// StepRecords is the FHIR record as a step's Apply writes it: inside the
// step's transaction, decided and audited for the run (the wiring in cmd
// binds the record's CreateTx to a guard that acts as the system on behalf
// of the run).
type StepRecords interface {
	// CreateTx stores a new resource in tx and returns its id.
	CreateTx(ctx context.Context, tx store.Tx, who RunActor, typ string, body []byte) (id string, err error)
}

// diagnosticsRecord is the diagnostics.record definition over recs.
func diagnosticsRecord(recs StepRecords) *Definition {
	fast := RetryPolicy{MaxAttempts: 10, Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.2}
	return &Definition{Name: DiagnosticsRecordDefinition, Version: 1,
		Validate: func(in *Input) error {
			if err := in.DecodeStrict(&struct{}{}, "no members ({})"); err != nil {
				return err
			}
			if in.PatientID == "" {
				return errs.E(errs.Invalid, "a diagnostics.record run writes to its patient's record and must name a patient").InField("patient_id")
			}
			return nil
		},
		Steps: []Step{
			{Name: "write", Retry: fast, Timeout: 5 * time.Second,
				Apply: func(ctx context.Context, sc *StepContext, tx store.Tx, _ Result) (Result, error) {
					who := RunActor{RunID: sc.RunID, Definition: sc.Definition, Step: sc.Step, PatientID: sc.PatientID}
					var refs []string
					for n := 1; n <= 2; n++ {
						body, err := diagnosticsObservation(sc.PatientID, fmt.Sprintf("%s/%d", sc.RunID, n))
						if err != nil {
							return Result{}, Permanent(err)
						}
						id, err := recs.CreateTx(ctx, tx, who, "Observation", body)
						if err != nil {
							return Result{}, err
						}
						refs = append(refs, "Observation/"+id)
					}
					return Result{Output: map[string]any{"written": refs}}, nil
				}},
			{Name: "finish", Retry: fast, Timeout: 5 * time.Second,
				Do: func(context.Context, *StepContext) (Result, error) { return Result{}, nil }},
		}}
}

// diagnosticsObservation is a marker Observation of patient, found by its
// identifier value.
func diagnosticsObservation(patient, value string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"resourceType": "Observation",
		"status":       "final",
		"code":         map[string]any{"text": "careflow diagnostics: written by a workflow step"},
		"subject":      map[string]any{"reference": "Patient/" + patient},
		"identifier":   []any{map[string]any{"system": DiagnosticsRecordSystem, "value": value}},
	})
}
