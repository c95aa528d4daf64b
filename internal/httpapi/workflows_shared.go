package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
)

// Helpers shared by the workflow surfaces (runs, tasks, definitions): the
// one-record decision and its missing-record answer, path ids, bodies,
// the one page-size rule and cursor, and the confined list scan.

func errRunNotFound() error  { return errs.E(errs.NotFound, "workflow run not found") }
func errTaskNotFound() error { return errs.E(errs.NotFound, "task not found") }

// authorizeRecord decides and audits an access to one record, like
// authorize. A grant that reaches patients one by one (a compartment rule
// answering a create that names no patient) does not cover a record that
// names none: that is refused as patient_required, as the policy refuses a
// read of such a record.
func (s *Server) authorizeRecord(r *http.Request, p *auth.Principal, a access) (auth.Decision, error) {
	return s.accessFor(r, p).AuthorizeRecord(r.Context(), a.action())
}

// recordDenial turns the error of a refused access to one run or task into
// what the client sees: outside the caller's reach looks like missing.
func recordDenial(d auth.Decision, err error, notFound func() error) error {
	if !d.Allowed && (d.Reason == auth.ReasonNotRelated || d.Reason == auth.ReasonPatientRequired) {
		return notFound()
	}
	return err
}

// missingRecord answers a look-up of a run or task id that does not exist
// exactly as an existing one out of reach would be answered: 404 for a
// caller whose role could reach some such record (the policy's type
// question, auth.Authorizer.DecideType, as the FHIR record asks it), else
// the role's own denial (403, audited as for an existing record).
func (s *Server) missingRecord(r *http.Request, p *auth.Principal, resourceType string, action auth.Action, auditAction audit.Action, id string, notFound func() error) error {
	a := access{req: auth.Request{Action: action, ResourceType: resourceType}, resourceID: id, auditAction: auditAction}
	d := s.accessFor(r, p).CheckType(r.Context(), a.req)
	if d.Allowed {
		return notFound()
	}
	if err := s.auditDecision(r, p, a, d); err != nil {
		s.logger.Warn("audit of a denial failed", "request_id", RequestID(r.Context()), "error", err.Error())
	}
	return denialError(d)
}

// controlled refuses to move a run (or its task) that a module drives
// through its own API (engine.Definition.ControlledBy): the module's state
// beside the run would no longer say what the run does.
func (s *Server) controlled(run *engine.Run) error {
	if api := s.opts.Engine.ControlledBy(run); api != "" {
		return errs.E(errs.Conflict, "this run is driven through %s; act on it there", api)
	}
	return nil
}

// pathID reads a {id} path value naming a run or task: a UUID in its
// canonical form, the only form the engine issues.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !canonicalUUID(id) {
		return "", errs.E(errs.Invalid, "must be a workflow id (a UUID in lower-case canonical form)").InField("id")
	}
	return id, nil
}

func canonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// writeRecord answers one record through the response filter.
func (s *Server) writeRecord(w http.ResponseWriter, r *http.Request, p *auth.Principal, status int, rec patientRecord, purpose auth.Purpose, notFound func() error) {
	out, err := s.recheckRecords(r, p, purpose, []patientRecord{rec})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(out) == 0 {
		s.writeError(w, r, notFound())
		return
	}
	writeJSON(w, "application/json", status, out[0])
}

// writeChanged answers a record the request itself just changed, shown as
// the decision that allowed the change permits (its visible fields). It is
// not decided again as a read: the change happened, and a 404 now would
// tell the client it did not.
func (s *Server) writeChanged(w http.ResponseWriter, r *http.Request, p *auth.Principal, a access, d auth.Decision, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		b, err = s.opts.Access.Policy.RedactFields(d.Fields, b)
	}
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, errs.Wrap(errs.Internal, err, "encode response"))
		return
	}
	writeJSON(w, "application/json", http.StatusOK, json.RawMessage(b))
}

// jsonObject checks an optional JSON member that must be an object of
// bounded size; absent is {}.
func jsonObject(raw json.RawMessage, field string) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return json.RawMessage("{}"), nil
	}
	if len(raw) > maxJSONMember {
		return nil, errs.E(errs.Invalid, "must be at most %d bytes of JSON", maxJSONMember).InField(field)
	}
	if raw[0] != '{' {
		return nil, errs.E(errs.Invalid, "must be a JSON object").InField(field)
	}
	return raw, nil
}

// readWorkflowBody decodes a body strictly, bounded to maxWorkflowBody.
func readWorkflowBody(w http.ResponseWriter, r *http.Request, dst any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxWorkflowBody)
	return decodeJSON(r, dst)
}

// workflowReach is what a run or task listing of resourceType may return
// to the caller for the purpose its search was decided for: the runs of the
// patients the caller may read (a task's patient is its run's), confined in
// the engine's query as a FHIR search is confined in the record's. An
// authorizer whose sources cannot list patients (auth.ErrReachUnknown)
// leaves the listing unconfined; every listed record is decided again by
// recheckRecords either way, so such a page may come back short.
func (s *Server) workflowReach(r *http.Request, p *auth.Principal, resourceType string, purpose auth.Purpose) (*engine.Reach, error) {
	ar, err := s.opts.Access.Authorizer.Reach(r.Context(), p, auth.Request{Action: auth.ActionRead, ResourceType: resourceType, Purpose: purpose})
	switch {
	case errors.Is(err, auth.ErrReachUnknown):
		return nil, nil
	case err != nil:
		return nil, errs.Wrap(errs.Unavailable, err, "the access policy could not be evaluated; try again")
	}
	reach := engine.Reach(ar)
	return &reach, nil
}

// mayRead reports whether the caller may read a record of the type and
// patient for the purpose its request was decided for (a start's
// referenced records).
func (s *Server) mayRead(r *http.Request, p *auth.Principal, resourceType, patientID string, purpose auth.Purpose) bool {
	return s.accessFor(r, p).Check(r.Context(), auth.Request{
		Action: auth.ActionRead, ResourceType: resourceType, PatientID: patientID, Purpose: purpose,
	}).Allowed
}

// pageSize reads limit: 1 to maxPage, default defaultPage.
func pageSize(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return defaultPage, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPage {
		return 0, errs.E(errs.Invalid, "must be a whole number from 1 to %d", maxPage).InField("limit")
	}
	return n, nil
}

// cursor reads after: the next value of a previous page (a record id).
func cursor(q url.Values) (string, error) {
	v := q.Get("after")
	if v != "" && !canonicalUUID(v) {
		return "", errs.E(errs.Invalid, "must be the next cursor of a previous page").InField("after")
	}
	return v, nil
}
