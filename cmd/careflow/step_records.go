package main

import (
	"context"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/store"
)

// stepRecords is engine.StepRecords over the FHIR record: access.RunRecords
// (a step's reads and writes in the step's own transaction, decided and
// audited by the guard of the step acting for its run,
// access.WorkflowStep), named by the engine's RunActor. Its RunRecords is
// what the revenue cycle's steps use (rcm.Records).
type stepRecords struct {
	access.RunRecords
}

func runStep(who engine.RunActor) access.RunStep {
	return access.RunStep{RunID: who.RunID, Step: who.Step, PatientID: who.PatientID}
}

// CreateTx implements engine.StepRecords.
func (s stepRecords) CreateTx(ctx context.Context, tx store.Tx, who engine.RunActor, typ string, body []byte) (string, error) {
	return s.RunRecords.CreateTx(ctx, tx, runStep(who), typ, body)
}
