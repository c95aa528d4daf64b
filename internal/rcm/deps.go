package rcm

import (
	"context"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/terminology"
)

// Records is the FHIR record as the journeys use it. The run's steps read
// and write in their own transaction as the system acting for the run, in
// its patient's record only (who); registration writes the Patient as the
// person registering (g), whom the audit log names. access.RunRecords
// implements it.
type Records interface {
	CreateTx(ctx context.Context, tx store.Tx, who access.RunStep, typ string, body []byte) (string, error)
	ReadTx(ctx context.Context, tx store.Tx, who access.RunStep, typ, id string) ([]byte, error)
	UpdateTx(ctx context.Context, tx store.Tx, who access.RunStep, typ, id string, body []byte) error
	// CreateAsTx creates as the caller g, conditionally with ifNoneExist
	// (a FHIR If-None-Exist query): a match is returned, created false.
	CreateAsTx(ctx context.Context, tx store.Tx, g record.Guard, typ string, body []byte, ifNoneExist string) (id string, created bool, err error)
}

// Terms checks codes on the date of service (*terminology.Service).
type Terms interface {
	ValidateCode(ctx context.Context, system, code string, opts terminology.ValidateOptions) (terminology.Validation, error)
}

// Blind gives the keyed index of a value (*phi.Ring): registration locks
// on the index of the patient's identifier, never on the identifier.
type Blind interface {
	CodeIndex(domain, code string) (string, error)
}

// Guard is what the journeys need of the caller's access guard
// (*access.Guard): a decision on a Journey (audited), the caller's reach
// for listings, and the record guard registration writes the Patient with
// (a TxGuard, whose decisions are audited in the start's transaction).
type Guard interface {
	record.TxGuard
	Caller() access.Caller
	CheckType(ctx context.Context, req auth.Request) auth.Decision
	AuditDecision(ctx context.Context, a access.Action, d auth.Decision) error
	Authorize(ctx context.Context, a access.Action) (auth.Decision, error)
	AuthorizeRecord(ctx context.Context, a access.Action) (auth.Decision, error)
	AuthorizeRecordTx(ctx context.Context, tx store.Tx, a access.Action) (auth.Decision, error)
	Reach(ctx context.Context, typ string) (record.Reach, error)
}

// Provider is careflow's hospital as payers know it: its HCX participant
// code and its name, which every Claim names as provider.
type Provider struct {
	Code string
	Name string
}
