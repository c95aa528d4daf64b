package access

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

// AuditLog is what access needs of internal/audit's Log.
type AuditLog interface {
	Append(ctx context.Context, e audit.Entry) (audit.Entry, error)
	// AppendAll appends several entries in one commit, all or none.
	AppendAll(ctx context.Context, entries []audit.Entry) ([]audit.Entry, error)
	// AppendTx appends e in tx at once and returns it with its Seq.
	AppendTx(ctx context.Context, tx store.Tx, e audit.Entry) (audit.Entry, error)
	// AppendAtCommit appends e as tx's last work, just before it commits
	// (so the log's head is locked only for the commit).
	AppendAtCommit(ctx context.Context, tx store.Tx, e audit.Entry) error
}

// Services are the access policy and the audit log every Guard works with.
type Services struct {
	// Authorizer decides for persons and clients; it may be nil when only
	// the system acts (careflow import).
	Authorizer *auth.Authorizer
	// Policy says which types are served, which fields are visible and
	// writable, and how purposes are coded.
	Policy *auth.Policy
	// Audit is the audit log; without it every audited access is refused.
	Audit AuditLog
	// Logger gets counts of dropped records, never ids or PHI.
	Logger *slog.Logger
}

// Guard is the access of one caller for one unit of work (a request, an
// import request, a step). It is safe for concurrent use.
type Guard struct {
	svc    *Services
	caller Caller

	mu sync.Mutex
	// purpose is the purpose the last allowed decision was made for, used
	// to re-decide the records of the response.
	purpose auth.Purpose
	pending []audit.Entry
	// noted holds the entries kept so far (action, type, id, patient,
	// outcome), so that one decision about one record (every version of an
	// instance history, say) is audited once per unit of work; shown holds
	// the records and patients whose reading is audited.
	noted map[string]bool
	shown map[string]bool
	// reach caches the reach of each type listed.
	reach map[string]record.Reach
	// unconfined is set when a reach could not be computed (the policy's
	// sources cannot list patients): listings then run unconfined, every
	// record is still decided on the way out, and no total is reported.
	unconfined bool
}

// For returns the guard of caller. A caller with neither a principal nor a
// system name is refused at every question (deny by default).
func (s *Services) For(c Caller) *Guard {
	return &Guard{svc: s, caller: c, noted: map[string]bool{}, shown: map[string]bool{}, reach: map[string]record.Reach{}}
}

// Caller returns who the guard acts for.
func (g *Guard) Caller() Caller { return g.caller }

func (g *Guard) system() bool { return g.caller.Principal == nil && g.caller.System != nil }

// Unconfined reports whether a listing of this unit of work ran without a
// reach (its total is then not exact).
func (g *Guard) Unconfined() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.unconfined
}

// serves reports whether the policy serves t to some role.
func (g *Guard) serves(t string) bool {
	return g.policy().Serves(t)
}

func (g *Guard) policy() *auth.Policy {
	if g.svc.Policy != nil {
		return g.svc.Policy
	}
	return g.svc.Authorizer.Policy()
}

// policyContext is ctx carrying the caller's stated purpose of use, which
// the policy reads from the context (auth.PurposeFrom).
func (g *Guard) policyContext(ctx context.Context) context.Context {
	if g.caller.Purpose != "" && auth.PurposeFrom(ctx) == "" {
		return auth.WithPurpose(ctx, g.caller.Purpose)
	}
	return ctx
}

// decide is the one call of the policy's decision for a principal. The
// system is allowed every element of what the policy serves; what it may
// store is checked by storable. A caller that is neither is refused.
func (g *Guard) decide(ctx context.Context, req auth.Request) auth.Decision {
	return g.decideTx(ctx, nil, req)
}

// decideTx is decide inside tx: the policy reads the patient's
// relationships and consent through tx (auth.Authorizer.DecideTx). Every
// decision made while a transaction is open must come here with it: a
// decision that took a second pooled connection would hold tx's
// connection while it waited, and concurrent transactions would exhaust
// the pool (PostgreSQL; SQLite reads through its separate reader pool).
func (g *Guard) decideTx(ctx context.Context, tx store.Tx, req auth.Request) auth.Decision {
	switch {
	case g.caller.Principal != nil && g.svc.Authorizer != nil:
		return g.svc.Authorizer.DecideTx(g.policyContext(ctx), tx, g.caller.Principal, req)
	case g.system():
		return auth.Decision{Allowed: true}
	}
	return auth.Decision{Reason: auth.ReasonUnauthenticated}
}

// decideType is the type question, asked before an id is looked up.
func (g *Guard) decideType(ctx context.Context, req auth.Request) auth.Decision {
	switch {
	case g.caller.Principal != nil && g.svc.Authorizer != nil:
		return g.svc.Authorizer.DecideType(g.policyContext(ctx), g.caller.Principal, req)
	case g.system():
		return auth.Decision{Allowed: true}
	}
	return auth.Decision{Reason: auth.ReasonUnauthenticated}
}

// storable refuses for the system what the API would refuse a person: a
// type the policy serves to no role, and a write of a record no role could
// read back. The system stores nothing the API could not give back.
func (g *Guard) storable(a record.Access) error {
	if err := g.bounded(a); err != nil {
		return err
	}
	if !g.serves(a.Type) {
		return errs.E(errs.UnsupportedType, "%s is not a resource type this server supports (the access policy serves it to no role)", a.Type).InField("resourceType")
	}
	if (a.Action == record.ActCreate || a.Action == record.ActUpdate) && a.PatientID == "" && !g.policy().ReadsPatientless(a.Type) {
		return errs.E(errs.Forbidden, "this %s names no patient, and the access policy lets no role read a %s that names none; name its patient", a.Type, a.Type)
	}
	return nil
}

// bounded refuses a system bound to one patient (System.OnePatient) any
// record of another patient or of none. A search of the type, decided
// before its records are known, is confined by Reach instead.
func (g *Guard) bounded(a record.Access) error {
	s := g.caller.System
	if s == nil || !s.OnePatient {
		return nil
	}
	if a.Action == record.ActSearch && a.ID == "" && (a.PatientID == "" || a.PatientID == s.Patient) {
		return nil
	}
	if s.Patient == "" || a.PatientID != s.Patient {
		return errs.E(errs.Forbidden, "this %s caller may %s only the records of its one patient", s.Role, a.Action)
	}
	return nil
}

// Allow implements record.Guard.
func (g *Guard) Allow(ctx context.Context, a record.Access) error {
	return g.AllowIn(ctx, nil, a)
}

// AllowIn implements record.InTxGuard: Allow for a read made inside tx,
// whose decision reads through tx (a nil tx is Allow).
func (g *Guard) AllowIn(ctx context.Context, tx store.Tx, a record.Access) error {
	if g.system() {
		// Nothing filters what the system reads on its way out, so every
		// record it is given, listed or read, is audited here.
		if err := g.storable(a); err != nil {
			return err
		}
		g.note(g.Entry(Action{Req: auth.Request{Action: auth.Action(a.Action), ResourceType: a.Type, PatientID: a.PatientID}, ResourceID: a.ID}, auth.Decision{Allowed: true}))
		return nil
	}
	if !g.serves(a.Type) {
		return UnsupportedType(a.Type)
	}
	if a.Action == record.ActSearch && a.ID != "" {
		// A record a listing returns: the listing was decided as a search
		// and confined to the caller's reach; Visible decides the record
		// itself, as a read, before it leaves.
		return nil
	}
	acc := Action{Req: auth.Request{Action: auth.Action(a.Action), ResourceType: a.Type, PatientID: a.PatientID}, ResourceID: a.ID}
	d := g.decideTx(ctx, tx, acc.Req)
	g.note(g.Entry(acc, d))
	if !d.Allowed {
		return recordDenial(a, d)
	}
	g.markShown(a)
	g.setPurpose(d.Purpose)
	return nil
}

// AllowTx implements record.TxGuard: an allowed write is audited inside
// the write's own transaction, so the record and its audit entry commit
// together and a rolled-back transaction leaves no entry for what did not
// happen. A denial is kept for Flush, since the transaction it was decided
// in will roll back. The policy decides the elements a create or update
// sets too (a body setting one outside the allowing rule's fields is a
// field_not_writable denial), and the grant hands the record the elements
// the write may touch, so that it keeps the others from the stored
// version. The system writes every element.
func (g *Guard) AllowTx(ctx context.Context, tx store.Tx, a record.Access, elements []string) (record.Grant, error) {
	if g.system() {
		if err := g.storable(a); err != nil {
			return record.Grant{}, err
		}
	} else if !g.serves(a.Type) {
		return record.Grant{}, UnsupportedType(a.Type)
	}
	acc := Action{Req: auth.Request{Action: auth.Action(a.Action), ResourceType: a.Type, PatientID: a.PatientID, Elements: elements}, ResourceID: a.ID}
	d := g.decideTx(ctx, tx, acc.Req)
	e := g.Entry(acc, d)
	if !d.Allowed {
		g.note(e)
		return record.Grant{}, recordDenial(a, d)
	}
	if g.svc.Audit == nil {
		return record.Grant{}, errNoAudit()
	}
	if err := g.svc.Audit.AppendAtCommit(ctx, tx, e); err != nil {
		return record.Grant{}, errs.Wrap(errs.Unavailable, err, "the audit log is unavailable, so nothing was written; try again")
	}
	g.markShown(a)
	g.setPurpose(d.Purpose)
	if g.system() {
		return record.Grant{}, nil
	}
	return record.Grant{Fields: g.policy().WritableFields(d.Fields)}, nil
}

// AllowType implements record.TypeGuard: the question asked of every
// interaction on one record before its id is looked up (see
// internal/record/existence.go). The policy answers it from the role, the
// purpose and the token alone, so its refusal, a 403 naming the reason, is
// the same for an id that exists and for one that does not. The refusal is
// audited like any denial, naming the id asked for and no patient: the
// same entry whether or not the id is held. An allowed answer is not
// audited; the record's own decision, which follows, is.
func (g *Guard) AllowType(ctx context.Context, a record.Access) error {
	acc := Action{Req: auth.Request{Action: auth.Action(a.Action), ResourceType: a.Type}, ResourceID: a.ID}
	d := g.decideType(ctx, acc.Req)
	if d.Allowed {
		return nil
	}
	g.note(g.Entry(acc, d))
	return DenialError(d)
}

// SeesElement implements record.ElementGuard: whether the caller's role
// sees the top-level element of typ's records for the purpose the unit of
// work is decided for (the policy's field rules, auth.ElementVisible). The
// record refuses a search, sort, include or conditional criteria over an
// element this denies, so what a response redacts cannot be learned from
// which records match. The system sees every element.
func (g *Guard) SeesElement(ctx context.Context, typ, element string) bool {
	if g.system() {
		return true
	}
	if g.caller.Principal == nil {
		return false
	}
	return g.policy().ElementVisible(g.caller.Principal.Role, typ, g.listingPurpose(ctx), element)
}

// listingPurpose is the purpose the listings are decided for: the one the
// last allowed decision was made for, else the one Decide would take (the
// stated purpose of use, else the role's default), for criteria checked
// before any decision (a conditional create's).
func (g *Guard) listingPurpose(ctx context.Context) auth.Purpose {
	if p := g.decidedPurpose(); p != "" {
		return p
	}
	if p := auth.PurposeFrom(g.policyContext(ctx)); p != "" {
		return p
	}
	return g.policy().DefaultPurpose(g.caller.Principal.Role)
}

// Reach implements record.Reacher: the records of typ the caller may read
// for the purpose decided. The system reaches every record, or its one
// patient's when it is bound to one (System.OnePatient).
func (g *Guard) Reach(ctx context.Context, typ string) (record.Reach, error) {
	return g.reachOf(ctx, typ, false)
}

// MatchReach implements record.Reacher: the records of typ whose patient
// the caller reaches, consent aside (see auth.ReachBeforeConsent).
func (g *Guard) MatchReach(ctx context.Context, typ string) (record.Reach, error) {
	return g.reachOf(ctx, typ, true)
}

func (g *Guard) reachOf(ctx context.Context, typ string, match bool) (record.Reach, error) {
	if g.system() {
		if s := g.caller.System; s.OnePatient {
			if s.Patient == "" {
				return record.Reach{}, nil
			}
			return record.Reach{Patients: []string{s.Patient}}, nil
		}
		return record.Reach{Every: true}, nil
	}
	if g.caller.Principal == nil || g.svc.Authorizer == nil {
		return record.Reach{}, DenialError(auth.Decision{Reason: auth.ReasonUnauthenticated})
	}
	purpose := g.decidedPurpose()
	key := typ + "\x00" + string(purpose) + "\x00" + strconv.FormatBool(match)
	g.mu.Lock()
	r, ok := g.reach[key]
	g.mu.Unlock()
	if ok {
		return r, nil
	}
	req := auth.Request{Action: auth.ActionRead, ResourceType: typ, Purpose: purpose}
	reach := g.svc.Authorizer.Reach
	if match {
		reach = g.svc.Authorizer.ReachBeforeConsent
	}
	ar, err := reach(g.policyContext(ctx), g.caller.Principal, req)
	switch {
	case errors.Is(err, auth.ErrReachUnknown):
		g.mu.Lock()
		g.unconfined = true
		g.mu.Unlock()
		ar = auth.Reach{Every: true}
	case err != nil:
		return record.Reach{}, errs.Wrap(errs.Unavailable, err, "the access policy could not be evaluated; try again")
	}
	r = record.Reach(ar)
	g.mu.Lock()
	g.reach[key] = r
	g.mu.Unlock()
	return r, nil
}

// Flush appends the kept audit entries (reads and denials), in one commit.
// A surface calls it before its answer leaves; an error means the answer
// must be a refusal.
func (g *Guard) Flush(ctx context.Context) error {
	g.mu.Lock()
	pending := g.pending
	g.pending = nil
	g.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	if g.svc.Audit == nil {
		return errNoAudit()
	}
	if _, err := g.svc.Audit.AppendAll(ctx, pending); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the audit log is unavailable; try again")
	}
	return nil
}

func (g *Guard) setPurpose(p auth.Purpose) {
	g.mu.Lock()
	g.purpose = p
	g.mu.Unlock()
}

func (g *Guard) decidedPurpose() auth.Purpose {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.purpose
}

// note keeps an audit entry for Flush, unless the same one is kept
// already.
func (g *Guard) note(e audit.Entry) {
	key := strings.Join([]string{string(e.Action), e.ResourceType, e.ResourceID, e.PatientID, string(e.Outcome)}, "\x00")
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.noted[key] {
		return
	}
	g.noted[key] = true
	g.pending = append(g.pending, e)
}

// markShown records that an allowed decision about a record (or, for a
// search naming a patient, about that patient's records of the type)
// audited it, so that Visible does not audit its reading twice.
func (g *Guard) markShown(a record.Access) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a.ID != "" {
		g.shown[recordKey(a.Type+"/"+a.ID)] = true
	} else if a.PatientID != "" {
		g.shown[patientKey(audit.Action(a.Action), a.Type, a.PatientID)] = true
	}
}

func recordKey(ref string) string { return "rec\x00" + ref }

func patientKey(action audit.Action, typ, patient string) string {
	return "pat\x00" + string(action) + "\x00" + typ + "\x00" + patient
}
