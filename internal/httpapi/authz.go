package httpapi

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// Authorization in the HTTP layer, an adapter over internal/access (which
// decides, confines, audits and redacts for every caller): the request
// becomes an access.Caller (s.accessFor). The package is imported as
// careaccess, since the handlers' access type holds its name here. Every
// handler that touches patient data (or the records that govern access to
// it: consents, care teams, the audit log) runs inside withAccess and calls
// s.authorize before it reads or writes anything, and passes every record
// it returns through s.recheckRecords. Three rules hold:
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

// AuditLog is what the handlers need of internal/audit's Log: what
// internal/access appends to.
type AuditLog = careaccess.AuditLog

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

// accessFor is the request's access.Guard: the principal, with the
// request id and the client address its audit entries carry, and the
// purpose of use the request states (purpose.go).
func (s *Server) accessFor(r *http.Request, p *auth.Principal) *careaccess.Guard {
	svc := &careaccess.Services{Authorizer: s.opts.Access.Authorizer, Policy: s.opts.Access.Policy, Logger: s.logger}
	if s.opts.Audit != nil {
		svc.Audit = s.opts.Audit
	}
	return svc.For(careaccess.Caller{Principal: p, RequestID: RequestID(r.Context()), ClientAddr: clientAddr(r), Purpose: auth.PurposeFrom(r.Context())})
}

// action names a in internal/access's terms.
func (a access) action() careaccess.Action {
	return careaccess.Action{Req: a.req, AuditAction: a.auditAction, ResourceID: a.resourceID}
}

// authorize decides an access, audits the decision, and returns the
// decision or the error to answer with (access.Guard.Authorize).
func (s *Server) authorize(r *http.Request, p *auth.Principal, a access) (auth.Decision, error) {
	return s.accessFor(r, p).Authorize(r.Context(), a.action())
}

// denialError maps a denial to the error the client sees. See the rules at
// the top of this file.
func denialError(d auth.Decision) error { return careaccess.DenialError(d) }

// auditDecision appends the entry for a decision.
func (s *Server) auditDecision(r *http.Request, p *auth.Principal, a access, d auth.Decision) error {
	return s.accessFor(r, p).AuditDecision(r.Context(), a.action(), d)
}

// failAfterAuthorize answers with err for an access that was authorized (and
// audited as such) but then failed: bad input, a conflict, a store error. A
// second entry with outcome error follows the first, so the log never shows
// a change that did not happen as done.
func (s *Server) failAfterAuthorize(w http.ResponseWriter, r *http.Request, p *auth.Principal, a access, d auth.Decision, err error) {
	s.accessFor(r, p).AuditFailure(r.Context(), a.action(), d)
	s.writeError(w, r, err)
}

// auditEntry builds the audit entry of a decision: ids and codes only.
func (s *Server) auditEntry(r *http.Request, p *auth.Principal, a access, d auth.Decision) audit.Entry {
	return s.accessFor(r, p).Entry(a.action(), d)
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
type patientRecord = careaccess.Record

// recheckRecords is the response filter (access.Guard.Recheck), keeping
// only the records the principal may see, redacted.
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
	return s.accessFor(r, p).Recheck(r.Context(), purpose, recs)
}
