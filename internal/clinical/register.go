package clinical

import (
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
)

// WorkflowDefinition is the engine definition every clinical workflow runs
// as: one wait for the workflow to close. The workflow's id is its run's.
// The run holds the steps' human tasks (attached to it: their roles,
// claims, due dates and escalation, kept by the engine across restarts)
// and ends when the workflow completes (the closed signal) or is
// cancelled (the run is cancelled with it, and its open tasks).
const WorkflowDefinition = "clinical.workflow"

// Deps is what the clinical definitions need from the server beyond the
// engine's own Staff and Records (which check task roles and record
// inputs). None need more so far.
type Deps struct{}

// Register registers the clinical definitions on reg.
func Register(reg *engine.Registry, _ Deps) error {
	if err := reg.Register(dischargeSignOff()); err != nil {
		return err
	}
	return reg.Register(workflowRun())
}

// workflowRun is WorkflowDefinition, version 1.
func workflowRun() *engine.Definition {
	return &engine.Definition{Name: WorkflowDefinition, Version: 1,
		// The workflow's row and steps move with the run and its tasks.
		ControlledBy: "/api/v1/clinical-workflows",
		Validate: func(in *engine.Input) error {
			if in.PatientID == "" {
				return errs.E(errs.Invalid, "a clinical workflow is about a patient: patient is required").InField("patient")
			}
			return nil
		},
		Steps: []engine.Step{
			{Name: workflowDefinitionRun, Wait: func(*engine.Input) (engine.Wait, error) {
				return engine.Wait{Signal: closedSignal}, nil
			}},
		}}
}
