package access

import (
	"context"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

// Authorize decides an access for the JSON API's handlers and appends its
// audit entry at once, allowed or denied, before the handler reads or
// writes anything. It returns the decision, or the error to answer with:
// an allowed access whose entry could not be appended is refused (fail
// closed); a denial stands either way, and a failure to record it is
// logged without PHI.
func (g *Guard) Authorize(ctx context.Context, a Action) (auth.Decision, error) {
	d := g.decide(ctx, a.Req)
	if err := g.AuditDecision(ctx, a, d); err != nil {
		if d.Allowed {
			return d, err
		}
		g.logger().Warn("audit of a denial failed", "request_id", g.caller.RequestID, "error", err.Error())
	}
	if !d.Allowed {
		return d, DenialError(d)
	}
	return d, nil
}

// AuthorizeRecord is Authorize for an access to one stored record (a
// workflow run, a task) whose patient is named in a.Req (or is none). A
// grant that reaches patients one by one (a compartment rule answering a
// request that names no patient) does not cover a record that names none:
// that is refused as patient_required, as the policy refuses a read of such
// a record.
func (g *Guard) AuthorizeRecord(ctx context.Context, a Action) (auth.Decision, error) {
	d := g.decide(ctx, a.Req)
	if d.Allowed && d.RecheckRecords {
		d = auth.Decision{Reason: auth.ReasonPatientRequired, Purpose: d.Purpose}
	}
	if err := g.AuditDecision(ctx, a, d); err != nil {
		if d.Allowed {
			return d, err
		}
		g.logger().Warn("audit of a denial failed", "request_id", g.caller.RequestID, "error", err.Error())
	}
	if !d.Allowed {
		return d, DenialError(d)
	}
	return d, nil
}

// AuthorizeRecordTx is AuthorizeRecord for an access that is one
// transaction's work with record writes (a revenue-cycle journey started
// with its patient's registration): an allowed decision's entry is
// appended in tx, so it commits or rolls back with what it allowed; a
// denial is kept for Flush, since tx will roll back.
func (g *Guard) AuthorizeRecordTx(ctx context.Context, tx store.Tx, a Action) (auth.Decision, error) {
	d := g.decideTx(ctx, tx, a.Req)
	if d.Allowed && d.RecheckRecords {
		d = auth.Decision{Reason: auth.ReasonPatientRequired, Purpose: d.Purpose}
	}
	e := g.Entry(a, d)
	if !d.Allowed {
		g.note(e)
		return d, DenialError(d)
	}
	if g.svc.Audit == nil {
		return d, errNoAudit()
	}
	if err := g.svc.Audit.AppendAtCommit(ctx, tx, e); err != nil {
		return d, errs.Wrap(errs.Unavailable, err, "the audit log is unavailable, so nothing was written; try again")
	}
	g.setPurpose(d.Purpose)
	return d, nil
}

// CheckType asks the type question (may the caller do req's action to some
// record of the type at all) without auditing it: a surface answering an
// id it does not hold asks it to answer exactly as for a held record out
// of reach, and audits a refusal itself (AuditDecision).
func (g *Guard) CheckType(ctx context.Context, req auth.Request) auth.Decision {
	return g.decideType(ctx, req)
}

// Check decides an access without auditing it, for the two cases where
// that is right: the caller's question about its own permissions
// (GET /api/v1/access/check is not an access), and a decision whose
// entries the caller appends itself, in its own transaction
// (break-the-glass: AuditDecision for a refusal, Entry for the grant).
func (g *Guard) Check(ctx context.Context, req auth.Request) auth.Decision {
	return g.decide(ctx, req)
}

// AuditDecision appends the entry of a decision now.
func (g *Guard) AuditDecision(ctx context.Context, a Action, d auth.Decision) error {
	if g.svc.Audit == nil {
		return errNoAudit()
	}
	if _, err := g.svc.Audit.Append(ctx, g.Entry(a, d)); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the audit log is unavailable; try again")
	}
	return nil
}

// AuditFailure appends a second entry, of outcome error, for an access
// that was authorized (and audited as such) but then failed, so the log
// never shows a change that did not happen as done. Its own failure is
// logged: the answer is an error already.
func (g *Guard) AuditFailure(ctx context.Context, a Action, d auth.Decision) {
	if g.svc.Audit == nil {
		return
	}
	e := g.Entry(a, d)
	e.Outcome = audit.OutcomeError
	if _, err := g.svc.Audit.Append(ctx, e); err != nil {
		g.logger().Warn("audit of a failed access failed", "request_id", g.caller.RequestID, "error", err.Error())
	}
}

// Entry builds the audit entry of a decision: ids and codes only.
func (g *Guard) Entry(a Action, d auth.Decision) audit.Entry {
	action := a.AuditAction
	if action == "" {
		action = audit.Action(a.Req.Action)
	}
	e := audit.Entry{
		Action:       action,
		ResourceType: a.Req.ResourceType,
		ResourceID:   a.ResourceID,
		PatientID:    a.Req.PatientID,
		Outcome:      audit.OutcomeSuccess,
		Severity:     audit.SeverityInfo,
		RequestID:    g.caller.RequestID,
		ClientAddr:   g.caller.ClientAddr,
	}
	switch {
	case g.caller.Principal != nil:
		e.Actor = g.caller.Principal.Subject
		e.Role = string(g.caller.Principal.Role)
		if d.Purpose != "" {
			e.Purpose = g.policy().PurposeCode(d.Purpose)
		}
	case g.caller.System != nil:
		e.Actor = g.caller.System.Actor
		e.Role = g.caller.System.Role
		e.Purpose = g.caller.System.Purpose
	}
	if e.Role == "" {
		e.Role = "unknown"
	}
	switch {
	case !d.Allowed:
		e.Outcome = audit.OutcomeDenied
		e.Severity = audit.SeverityWarning
	case d.BreakGlass:
		e.Severity = audit.SeverityHigh
		e.Purpose = audit.PurposeEmergencyTreatment
	}
	return e
}

// DenialError maps a denial to the error the client sees. A refusal only
// because the patient is outside the caller's compartment (not_related) is
// "no such patient", as for a patient that does not exist, so ids cannot
// be probed; every other denial is decided before or regardless of the
// patient and is a 403 naming its reason.
func DenialError(d auth.Decision) error {
	switch d.Reason {
	case auth.ReasonNotRelated:
		return errs.E(errs.NotFound, "no such patient")
	case auth.ReasonUnauthenticated:
		return errs.E(errs.Unauthenticated, "authentication required")
	case auth.ReasonRelationshipUnavailable, auth.ReasonConsentUnavailable:
		// The policy could not be evaluated: refused, and said so, so the
		// client does not take it for a permanent no.
		return errs.E(errs.Forbidden, "access denied (%s): the access policy could not be evaluated; try again", d.Reason)
	case auth.ReasonUnreachableRecord:
		return errs.E(errs.Forbidden, "access denied (%s): the record names no patient, and no role may read records of its type that name none; name its patient", d.Reason)
	}
	return errs.E(errs.Forbidden, "access denied (%s)", d.Reason)
}

// recordDenial is the error for a refused record. A record out of reach
// (not_related) reads exactly like one that does not exist, with the
// record's own message, for a read and a delete (whose missing id is not
// known either: internal/record/existence.go). An update keeps "no such
// patient": an update of a record out of reach must read like a create
// for a patient out of reach, which is what the same request makes of an
// id that does not exist. A stored record of no patient that the caller's
// rules reach only in a patient's compartment (patient_required: an
// organisational Task for a physician) is out of reach in the same way.
func recordDenial(a record.Access, d auth.Decision) error {
	outOfReach := d.Reason == auth.ReasonNotRelated || (d.Reason == auth.ReasonPatientRequired && a.PatientID == "")
	if outOfReach && a.ID != "" && (a.Action == record.ActRead || a.Action == record.ActDelete) {
		return NotKnown(a.Type, a.ID)
	}
	if d.Reason == auth.ReasonFieldNotWritable && d.Field != "" {
		// The element's path, never its value.
		path := a.Type + "." + d.Field
		return errs.E(errs.Forbidden, "access denied (%s): this role may not write %s; leave it out and the stored value is kept", d.Reason, path).InField(path)
	}
	return DenialError(d)
}

// NotKnown is the record's answer for a resource that does not exist.
func NotKnown(typ, id string) error {
	if !auth.ValidPatientID(id) { // the FHIR id syntax
		id = "(invalid id)"
	}
	return errs.E(errs.NotFound, "%s/%s is not known", typ, id)
}

// UnsupportedType is the answer for a type the server does not serve. The
// name is repeated only when it is shaped like a type name (a path segment
// is the client's text and could hold anything).
func UnsupportedType(t string) error {
	if !typeShaped(t) {
		t = "the requested type"
	}
	return errs.E(errs.UnsupportedType, "%s is not a resource type this server supports", t).InField("resourceType")
}

func typeShaped(t string) bool {
	if t == "" || len(t) > 64 || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func errNoAudit() error {
	return errs.E(errs.Unavailable, "the audit log is not configured; access to audited records is refused")
}
