package main

import (
	"context"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

// stepRecords is engine.StepRecords over the FHIR record: a step's Apply
// creates resources in the step's own transaction (record.CreateTx), each
// decided and audited by the access guard of the step acting for its run
// (access.WorkflowStep): the system, bound to the run's patient's record,
// so that a step writes nowhere else, and each write's audit entry is
// appended in the step's transaction, committing or rolling back with the
// resource and the step's result.
type stepRecords struct {
	rec    *record.Service
	access *access.Services
}

// stepCaller is the caller of one step's writes. Its entries carry the
// request id "run-<run id>", as every entry of a run's steps has, so that
// the audit log is asked for a run's writes by that id alone.
func stepCaller(who engine.RunActor) access.Caller {
	c := access.WorkflowStep(who.RunID, who.Step, who.PatientID)
	c.RequestID = "run-" + who.RunID
	return c
}

func (s stepRecords) CreateTx(ctx context.Context, tx store.Tx, who engine.RunActor, typ string, body []byte) (string, error) {
	rec, _, err := s.rec.CreateTx(ctx, tx, s.access.For(stepCaller(who)), typ, body, "")
	if err != nil {
		return "", err
	}
	return rec.ID, nil
}
