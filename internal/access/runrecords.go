package access

import (
	"context"

	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

// RunRecords is the FHIR record as a workflow step's Apply reads and
// writes it: inside the step's own transaction (record's *Tx functions),
// each access decided and audited by the guard of the step acting for its
// run (WorkflowStep): the system, bound to the run's patient's record, so a
// step reads and writes nowhere else, and each write's audit entry commits
// or rolls back with the resource and the step's result. It implements
// what internal/rcm's steps need (and, adapted to engine.RunActor in cmd,
// engine.StepRecords); serve wires one.
type RunRecords struct {
	Record *record.Service
	Access *Services
}

// RunStep names a step of a run acting in its patient's record.
type RunStep struct {
	RunID, Step, PatientID string
}

// StepCaller is the caller of one step's accesses. Its entries carry the
// request id "run-<run id>", as every entry of a run's steps has, so that
// the audit log is asked for a run's writes by that id alone.
func StepCaller(who RunStep) Caller {
	c := WorkflowStep(who.RunID, who.Step, who.PatientID)
	c.RequestID = "run-" + who.RunID
	return c
}

// CreateTx stores a new resource in tx for the run and returns its id.
func (r RunRecords) CreateTx(ctx context.Context, tx store.Tx, who RunStep, typ string, body []byte) (string, error) {
	rec, _, err := r.Record.CreateTx(ctx, tx, r.Access.For(StepCaller(who)), typ, body, "")
	if err != nil {
		return "", err
	}
	return rec.ID, nil
}

// ReadTx reads typ/id in tx for the run (its patient's records only).
func (r RunRecords) ReadTx(ctx context.Context, tx store.Tx, who RunStep, typ, id string) ([]byte, error) {
	rec, err := r.Record.ReadTx(ctx, tx, r.Access.For(StepCaller(who)), typ, id)
	if err != nil {
		return nil, err
	}
	return rec.JSON, nil
}

// UpdateTx stores a new version of typ/id in tx for the run.
func (r RunRecords) UpdateTx(ctx context.Context, tx store.Tx, who RunStep, typ, id string, body []byte) error {
	_, _, err := r.Record.UpdateTx(ctx, tx, r.Access.For(StepCaller(who)), typ, id, body, "")
	return err
}

// CreateAsTx stores a resource in tx as the caller g (a person registering
// a patient, whom the audit log must name), conditionally when ifNoneExist
// is set: an existing match is returned with created false.
func (r RunRecords) CreateAsTx(ctx context.Context, tx store.Tx, g record.Guard, typ string, body []byte, ifNoneExist string) (string, bool, error) {
	rec, created, err := r.Record.CreateTx(ctx, tx, g, typ, body, ifNoneExist)
	if err != nil {
		return "", false, err
	}
	return rec.ID, created, nil
}
