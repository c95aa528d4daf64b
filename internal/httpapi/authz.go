package httpapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Authorization in the HTTP layer. Every handler that touches patient data
// (or the records that govern access to it: consents, care teams, the
// audit log) runs inside withAccess and calls s.authorize before it reads
// or writes anything, and passes every record it returns through
// s.recheckRecords. Three rules hold:
//
//   - Deny by default. No principal is 401; no Access configured is 503;
//     anything the policy does not grant is refused.
//   - Denials do not become an existence oracle. When the only thing
//     standing between the caller and the record is that the patient is not
//     in their compartment (reason not_related), the answer is 404, the
//     same as for a patient that does not exist, so ids cannot be probed.
//     Every other denial (the role may never do this; consent refused;
//     the token's scopes are too narrow) is 403: those are decided before
//     or regardless of the patient and reveal nothing about them. A
//     refusal of the type (auth.Authorizer.DecideType) is asked before an
//     id is looked up, so it is the same for ids that do not exist.
//   - Audit before answering. Every decision a handler asks for, allowed
//     or denied, is appended to the audit log before the response is
//     written; if the append fails an allowed access is answered 503
//     instead (fail closed). Break-the-glass accesses are high severity,
//     denials warning. GET /api/v1/access/check is a question about the
//     caller's own permissions, not an access, and is not audited.

// AuditLog is what the handlers need of internal/audit's Log.
type AuditLog interface {
	Append(ctx context.Context, e audit.Entry) (audit.Entry, error)
	// AppendAll appends several entries in one commit, all or none.
	AppendAll(ctx context.Context, entries []audit.Entry) ([]audit.Entry, error)
	AppendTx(ctx context.Context, tx store.Tx, e audit.Entry) (audit.Entry, error)
}

// principalOf returns the request's principal, which the route guard
// (authn.go) put in the context from a verified bearer token, or from
// Options.TestPrincipal in tests.
func (s *Server) principalOf(r *http.Request) (*auth.Principal, bool) {
	if p, ok := auth.PrincipalFrom(r.Context()); ok {
		return p, true
	}
	if s.opts.TestPrincipal != nil {
		p := s.opts.TestPrincipal(r)
		return p, p != nil
	}
	return nil, false
}

// withAccess wraps a handler that needs authorization: it requires the
// access services and a principal, and gives the request a decision cache
// so that checking many records costs one look-up per patient.
func (s *Server) withAccess(h func(w http.ResponseWriter, r *http.Request, p *auth.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Access == nil {
			s.writeError(w, r, errs.E(errs.Unavailable, "access control is not configured"))
			return
		}
		p, ok := s.principalOf(r)
		if !ok {
			s.writeError(w, r, errs.E(errs.Unauthenticated, "authentication required"))
			return
		}
		r = r.WithContext(auth.WithDecisionCache(r.Context()))
		h(w, r, p)
	}
}

// access names what a handler is about to do, for authorize and the audit
// entry.
type access struct {
	req auth.Request
	// auditAction is the audit log's action; empty means req.Action.
	auditAction audit.Action
	resourceID  string
}

// authorize decides an access, audits the decision, and returns the
// decision or the error to answer with.
func (s *Server) authorize(r *http.Request, p *auth.Principal, a access) (auth.Decision, error) {
	d := s.opts.Access.Authorizer.Decide(r.Context(), p, a.req)
	if err := s.auditDecision(r, p, a, d); err != nil {
		if d.Allowed {
			return d, err
		}
		// The denial stands either way; the failure to record it is the
		// operator's problem, logged without PHI.
		s.logger.Warn("audit of a denial failed", "request_id", RequestID(r.Context()), "error", err.Error())
	}
	if !d.Allowed {
		return d, denialError(d)
	}
	return d, nil
}

// denialError maps a denial to the error the client sees. See the rules at
// the top of this file.
func denialError(d auth.Decision) error {
	switch d.Reason {
	case auth.ReasonNotRelated:
		return errs.E(errs.NotFound, "no such patient")
	case auth.ReasonUnauthenticated:
		return errs.E(errs.Unauthenticated, "authentication required")
	case auth.ReasonRelationshipUnavailable, auth.ReasonConsentUnavailable:
		// The policy could not be evaluated: refused, and said so, so the
		// client does not take it for a permanent no.
		return errs.E(errs.Forbidden, "access denied (%s): the access policy could not be evaluated; try again", d.Reason)
	}
	if d.Reason == auth.ReasonUnreachableRecord {
		return errs.E(errs.Forbidden, "access denied (%s): the record names no patient, and no role may read records of its type that name none; name its patient", d.Reason)
	}
	return errs.E(errs.Forbidden, "access denied (%s)", d.Reason)
}

// auditDecision appends the entry for a decision.
func (s *Server) auditDecision(r *http.Request, p *auth.Principal, a access, d auth.Decision) error {
	if s.opts.Audit == nil {
		return errs.E(errs.Unavailable, "the audit log is not configured; access to audited records is refused")
	}
	_, err := s.opts.Audit.Append(r.Context(), s.auditEntry(r, p, a, d))
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the audit log is unavailable; try again")
	}
	return nil
}

// failAfterAuthorize answers with err for an access that was authorized (and
// audited as such) but then failed: bad input, a conflict, a store error. A
// second entry with outcome error follows the first, so the log never shows
// a change that did not happen as done.
func (s *Server) failAfterAuthorize(w http.ResponseWriter, r *http.Request, p *auth.Principal, a access, d auth.Decision, err error) {
	if s.opts.Audit != nil {
		e := s.auditEntry(r, p, a, d)
		e.Outcome = audit.OutcomeError
		if _, aerr := s.opts.Audit.Append(r.Context(), e); aerr != nil {
			s.logger.Warn("audit of a failed access failed", "request_id", RequestID(r.Context()), "error", aerr.Error())
		}
	}
	s.writeError(w, r, err)
}

// auditEntry builds the audit entry of a decision: ids and codes only.
func (s *Server) auditEntry(r *http.Request, p *auth.Principal, a access, d auth.Decision) audit.Entry {
	action := a.auditAction
	if action == "" {
		action = audit.Action(a.req.Action)
	}
	e := audit.Entry{
		Actor:        p.Subject,
		Role:         string(p.Role),
		Action:       action,
		ResourceType: a.req.ResourceType,
		ResourceID:   a.resourceID,
		PatientID:    a.req.PatientID,
		Outcome:      audit.OutcomeSuccess,
		Severity:     audit.SeverityInfo,
		RequestID:    RequestID(r.Context()),
		ClientAddr:   clientAddr(r),
	}
	if e.Role == "" {
		e.Role = "unknown"
	}
	if d.Purpose != "" {
		e.Purpose = s.opts.Access.Policy.PurposeCode(d.Purpose)
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

// clientAddr is the client's IP address as the route guard resolved it
// (behind trusted proxies, the right-most untrusted hop), else the peer.
func clientAddr(r *http.Request) string {
	if a := ClientAddr(r.Context()); a != "" {
		return a
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return ""
	}
	return a.Unmap().String()
}

// patientRecord is one record a response is about to carry, with the
// patient whose data it is ("" for records that are not patient data).
type patientRecord struct {
	ResourceType string
	ResourceID   string
	PatientID    string
	JSON         []byte
}

// recheckRecords is the response filter: it decides every record again for
// the principal (read, for the purpose already decided) and redacts each to
// the fields its decision allows, dropping records it may not see. A list,
// a search or an _include built by a handler that got its query wrong
// still cannot leak another patient's record or a hidden field. Dropped
// records are audited as denials, in one append before the response; if
// that append fails the response is refused (503), as for every other
// access: a record withheld without a trace would hide the query's bug.
// (The FHIR surface has its own filter, fhirGuard.visible, which also
// audits what it lets through.)
func (s *Server) recheckRecords(r *http.Request, p *auth.Principal, purpose auth.Purpose, recs []patientRecord) ([]json.RawMessage, error) {
	each, err := s.recheckEach(r, p, purpose, recs)
	if err != nil {
		return nil, err
	}
	out := each[:0]
	for _, b := range each {
		if b != nil {
			out = append(out, b)
		}
	}
	return out, nil
}

// recheckEach is recheckRecords keeping positions: the result has one
// element per record, its redacted JSON, or nil where the record was
// dropped. Callers that carry more than the JSON (versions, search modes)
// match them up by index.
func (s *Server) recheckEach(r *http.Request, p *auth.Principal, purpose auth.Purpose, recs []patientRecord) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(recs))
	var denials []audit.Entry
	for i, rec := range recs {
		a := access{req: auth.Request{Action: auth.ActionRead, ResourceType: rec.ResourceType, PatientID: rec.PatientID, Purpose: purpose}, resourceID: rec.ResourceID}
		d := s.opts.Access.Authorizer.Decide(r.Context(), p, a.req)
		if !d.Allowed {
			denials = append(denials, s.auditEntry(r, p, a, d))
			continue
		}
		body, err := s.opts.Access.Policy.RedactFields(d.Fields, rec.JSON)
		if err != nil {
			// A record we cannot parse cannot be shown safely.
			return nil, errs.Wrap(errs.Internal, err, "response filter")
		}
		out[i] = body
	}
	if dropped := len(denials); dropped > 0 {
		// A handler's query returned records the caller may not see: a bug
		// to fix, caught here. Counts only, no ids.
		s.logger.Warn("response filter dropped records", "request_id", RequestID(r.Context()), "dropped", dropped, "kept", len(recs)-dropped)
		if s.opts.Audit == nil {
			return nil, errs.E(errs.Unavailable, "the audit log is not configured; access to audited records is refused")
		}
		if _, err := s.opts.Audit.AppendAll(r.Context(), denials); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "the audit log is unavailable; try again")
		}
	}
	return out, nil
}
