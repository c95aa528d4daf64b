package httpapi

import (
	"net/http"
	"strconv"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// The audit log's review routes (auditor in the default policy). Reading
// the audit log is itself audited: who looked at whose trail is evidence
// too, so a listing filtered by patient is recorded under that patient.

// listAudit lists audit entries with filters, a page at a time.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	q, err := queryParams(r, "since", "until", "actor", "patient", "resource_type", "resource_id",
		"action", "outcome", "severity", "request_id", "order", "after", "limit")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var f audit.Filter
	if f.Since, err = queryTime(q, "since"); err == nil {
		f.Until, err = queryTime(q, "until")
	}
	if err == nil {
		f.Limit, err = queryLimit(q)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f.Actor, f.PatientID = q.Get("actor"), q.Get("patient")
	f.ResourceType, f.ResourceID = q.Get("resource_type"), q.Get("resource_id")
	f.Action, f.Outcome = audit.Action(q.Get("action")), audit.Outcome(q.Get("outcome"))
	f.Severity, f.RequestID = audit.Severity(q.Get("severity")), q.Get("request_id")
	switch q.Get("order") {
	case "", "oldest":
	case "newest":
		f.Newest = true
	default:
		s.writeError(w, r, errs.E(errs.Invalid, "must be oldest or newest").InField("order"))
		return
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, errs.E(errs.Invalid, "must be a sequence number from a previous page's next").InField("after"))
			return
		}
		f.After = &n
	}
	if f.PatientID != "" && !auth.ValidPatientID(f.PatientID) {
		s.writeError(w, r, errs.E(errs.Invalid, "must be a patient id").InField("patient"))
		return
	}
	a := access{req: auth.Request{Action: auth.ActionSearch, ResourceType: "AuditLog", PatientID: f.PatientID}}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.opts.DB == nil {
		s.writeError(w, r, errs.E(errs.Unavailable, "no database"))
		return
	}
	page, err := audit.List(r.Context(), s.opts.DB, f)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, page)
}

// listBreakGlass lists break-the-glass grants for review, newest first.
func (s *Server) listBreakGlass(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	q, err := queryParams(r, "since", "until", "user", "patient", "active", "after", "limit")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var f auth.GrantFilter
	if f.Since, err = queryTime(q, "since"); err == nil {
		f.Until, err = queryTime(q, "until")
	}
	if err == nil {
		f.Limit, err = queryLimit(q)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f.UserID, f.PatientID, f.After = q.Get("user"), q.Get("patient"), q.Get("after")
	if f.PatientID != "" && !auth.ValidPatientID(f.PatientID) {
		s.writeError(w, r, errs.E(errs.Invalid, "must be a patient id").InField("patient"))
		return
	}
	switch q.Get("active") {
	case "", "false":
	case "true":
		f.ActiveAt = s.opts.Access.Authorizer.Now()
	default:
		s.writeError(w, r, errs.E(errs.Invalid, "must be true or false").InField("active"))
		return
	}
	a := access{req: auth.Request{Action: auth.ActionSearch, ResourceType: "BreakGlass", PatientID: f.PatientID}}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.opts.Access.BreakGlass.List(r.Context(), f)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, page)
}
