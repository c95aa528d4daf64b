package main

import (
	"context"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

// The actor a workflow step's writes are audited as: the system, working
// a run (the entry's request id is "run-" and the run id).
const (
	stepActor   = "careflow-workflow"
	stepRole    = "workflow"
	stepPurpose = audit.PurposeOperations
)

// stepRecords is engine.StepRecords over the FHIR record: a step's Apply
// creates resources in the step's own transaction (record.CreateTx), each
// decided by a stepGuard for the run it works on.
type stepRecords struct {
	rec    *record.Service
	log    *audit.Log
	policy *auth.Policy
}

func (s stepRecords) CreateTx(ctx context.Context, tx store.Tx, who engine.RunActor, typ string, body []byte) (string, error) {
	g := &stepGuard{log: s.log, policy: s.policy, who: who}
	rec, _, err := s.rec.CreateTx(ctx, tx, g, typ, body, "")
	if err != nil {
		return "", err
	}
	return rec.ID, nil
}

// stepGuard is the record.Guard of a workflow step acting as the system on
// behalf of one run. It allows writes, and only writes, of types the
// access policy serves, to records of the run's own patient; each allowed
// write is appended to the audit log inside the write's transaction (the
// step's), so the resource, its audit entry and the step's result commit
// or roll back together. A run names its patient when a person allowed to
// start it for that patient did; the step writes nowhere else.
type stepGuard struct {
	log    *audit.Log
	policy *auth.Policy
	who    engine.RunActor
}

// Allow implements record.Guard: a step reads nothing through this guard,
// since a read's audit entry could not be appended while the step holds
// the writer.
func (g *stepGuard) Allow(_ context.Context, a record.Access) error {
	return errs.E(errs.Forbidden, "a workflow step may not %s %s records", a.Action, a.Type)
}

// AllowTx implements record.TxGuard.
func (g *stepGuard) AllowTx(ctx context.Context, tx store.Tx, a record.Access, _ []string) (record.Grant, error) {
	if a.Action != record.ActCreate && a.Action != record.ActUpdate {
		return record.Grant{}, errs.E(errs.Forbidden, "a workflow step may not %s %s records", a.Action, a.Type)
	}
	if !g.policy.Serves(a.Type) {
		return record.Grant{}, errs.E(errs.UnsupportedType, "%s is not a resource type this server supports", a.Type).InField("resourceType")
	}
	if g.who.PatientID == "" || a.PatientID != g.who.PatientID {
		return record.Grant{}, errs.E(errs.Forbidden, "a workflow step writes only to its run's patient's record")
	}
	e := audit.Entry{
		Actor:        stepActor,
		Role:         stepRole,
		Action:       audit.Action(a.Action),
		ResourceType: a.Type,
		ResourceID:   a.ID,
		PatientID:    a.PatientID,
		Purpose:      stepPurpose,
		Outcome:      audit.OutcomeSuccess,
		RequestID:    "run-" + g.who.RunID,
	}
	if _, err := g.log.AppendTx(ctx, tx, e); err != nil {
		return record.Grant{}, errs.Wrap(errs.Unavailable, err, "the audit log is unavailable, so nothing was written")
	}
	return record.Grant{}, nil
}
