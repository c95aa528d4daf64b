package record

import (
	"context"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
)

// The *Tx functions are the record's interactions inside a transaction
// the caller owns, for a domain write that must commit or roll back with
// something else: a workflow step's Apply writes its resources in the
// transaction that records the step's result (internal/engine, apply.go),
// so a step that crashed before its commit leaves no resource behind and
// its re-delivery writes each once.
//
// They check, decide and write exactly as Create, Update, Read and Search
// do (validation, codes, the guard's decisions, hooks, indexes), and a
// TxGuard audits each write in tx. What commits together is then the
// caller's whole transaction: the resource's version, its index rows, its
// hooks' rows (a Consent's decisions) and its audit entry, with whatever
// the caller wrote. The caller must not hold the transaction while it
// waits on anything outside the database: on SQLite it is the one writer.
// A Search in tx sees the transaction's own writes.

// CreateTx is Create inside tx. A plain create is not group-committed: it
// commits with tx.
func (s *Service) CreateTx(ctx context.Context, tx store.Tx, g Guard, typ string, body []byte, ifNoneExist string) (Record, bool, error) {
	if err := Writable(typ); err != nil {
		return Record{}, false, err
	}
	if err := s.validateWrite(ctx, tx, body, typ); err != nil {
		return Record{}, false, err
	}
	return s.createTx(ctx, tx, g, typ, "", body, ifNoneExist)
}

// UpdateTx is Update inside tx: it stores a new version of typ/id, creating
// it when absent. ifMatch, when set, is the version the caller read.
func (s *Service) UpdateTx(ctx context.Context, tx store.Tx, g Guard, typ, id string, body []byte, ifMatch string) (Record, bool, error) {
	if err := Writable(typ); err != nil {
		return Record{}, false, err
	}
	if !validID(id) {
		return Record{}, false, errs.E(errs.Invalid, "the id is not a valid FHIR id").InField(typ + ".id")
	}
	if err := s.validateWrite(ctx, tx, body, typ); err != nil {
		return Record{}, false, err
	}
	if err := bodyIDMatches(body, id); err != nil {
		return Record{}, false, err
	}
	want, err := parseIfMatch(ifMatch)
	if err != nil {
		return Record{}, false, err
	}
	rec, err := s.write(ctx, tx, g, typ, id, body, writeOpts{method: "PUT", ifMatch: want})
	return rec, err == nil && rec.Version == 1, err
}

// ReadTx is Read inside tx: it sees the transaction's own writes.
func (s *Service) ReadTx(ctx context.Context, tx store.Tx, g Guard, typ, id string) (Record, error) {
	if !fhir.IsResourceType(typ) {
		return Record{}, errs.E(errs.NotFound, "%s is not a FHIR R4 resource type this server knows", safeName(typ))
	}
	return s.readTx(ctx, tx, g, typ, id)
}

// SearchTx is Search inside tx (q from ParseQuery): it sees the
// transaction's own writes.
func (s *Service) SearchTx(ctx context.Context, tx store.Tx, g Guard, q *Query) (*Result, error) {
	return s.search(ctx, g, tx, q)
}
