package record

import (
	"context"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// Authorization before existence. Every interaction on one record by id
// (read, vread, instance history, update, delete, and their conditional
// and Bundle-entry forms) asks two questions, in this order:
//
//  1. May the caller do this to records of this type at all? Asked of a
//     TypeGuard before the id is looked up, so its refusal is the same for
//     an id that exists and for one that does not: a role that may never
//     delete Observations gets one 403 for every Observation id.
//  2. May the caller do it to this record? Asked of the Guard with the
//     record's patient once the row is found. A record out of the
//     caller's reach is then answered as a missing one is (the guard's
//     business: the HTTP layer words both alike), so a caller that may act
//     on the type for some patients cannot tell an id held by another's
//     patient from a free one.
//
// Which answer a missing id gets follows from that: a read or delete of an
// id that does not exist is "not known" (404), the answer a record out of
// reach gets. A delete of a record the caller may delete and that is
// already deleted stays a success (R4's idempotent delete): its row names
// its patient, so it is decided like a live one.
//
// An update of an id that does not exist creates it (the id is the
// client's); it is decided as a create for the patient the body names, and
// an update of a record out of reach is answered as a create for a patient
// out of reach is. One difference is left by the nature of client-chosen
// ids: an id held out of reach cannot be created again, where a free one
// can. That tells a caller allowed to create the type that some record
// holds the id, never whose it is or what it says; server-assigned ids
// (POST) are random and give nothing away.

// TypeGuard is a Guard that answers the type question before a record is
// looked up. a.ID names the record asked for (for the audit log) and
// a.PatientID is empty: the answer must not depend on the record. Guards
// that are not TypeGuards (nil in tests of this package, careflow import)
// are asked only the record question.
type TypeGuard interface {
	Guard
	AllowType(ctx context.Context, a Access) error
}

// allowType asks g the type question when it can answer it. A name that is
// no R4 resource type holds no record to hide; its answer is the type's.
func allowType(ctx context.Context, g Guard, a Access) error {
	if tg, ok := g.(TypeGuard); ok && fhir.IsResourceType(a.Type) {
		return tg.AllowType(ctx, a)
	}
	return nil
}

// errNotKnown is the record's answer for an id that does not exist.
func errNotKnown(typ, id string) error {
	return errs.E(errs.NotFound, "%s/%s is not known", typ, safeID(id))
}
