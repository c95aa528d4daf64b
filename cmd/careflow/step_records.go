package main

import "github.com/careflow/careflow/internal/access"

// stepRecords is engine.StepRecords (and rcm.Records) over the FHIR
// record: access.RunRecords, whose steps' reads and writes happen in the
// step's own transaction, decided and audited by the guard of the step
// acting for its run (access.WorkflowStep). The type lives in access so
// that serve and the revenue cycle's tests share one mechanism.
type stepRecords = access.RunRecords
