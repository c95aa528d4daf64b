package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
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
	d := s.opts.Access.Authorizer.Decide(r.Context(), p, a.req)
	if d.Allowed && d.RecheckRecords {
		d = auth.Decision{Reason: auth.ReasonPatientRequired, Purpose: d.Purpose}
	}
	if err := s.auditDecision(r, p, a, d); err != nil {
		if d.Allowed {
			return d, err
		}
		s.logger.Warn("audit of a denial failed", "request_id", RequestID(r.Context()), "error", err.Error())
	}
	if !d.Allowed {
		return d, denialError(d)
	}
	return d, nil
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
	d := s.opts.Access.Authorizer.DecideType(r.Context(), p, a.req)
	if d.Allowed {
		return notFound()
	}
	if err := s.auditDecision(r, p, a, d); err != nil {
		s.logger.Warn("audit of a denial failed", "request_id", RequestID(r.Context()), "error", err.Error())
	}
	return denialError(d)
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

// mayRead is the list filter: whether the caller may read a record of the
// patient for the purpose the search was decided for.
func (s *Server) mayRead(r *http.Request, p *auth.Principal, resourceType, patientID string, purpose auth.Purpose) bool {
	return s.opts.Access.Authorizer.Decide(r.Context(), p, auth.Request{
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

// scanReadable walks an engine listing page by page (pageSize records a
// page; next is called with the last record of a full page to move the
// cursor past it and returns that record's id) and keeps what keep admits,
// until limit records are kept (the cursor is then the last kept record's
// id), the listing ends (no cursor), or listScanBudget records were
// examined (the cursor is where the scan stopped, so the caller can go on).
// The engine does not know care teams, so filtering happens here, before
// the response filter rechecks every kept record.
func scanReadable[T any](pageSize int, fetch func() ([]T, error), next func(T) string, keep func(T) (patientRecord, bool, error)) ([]patientRecord, string, error) {
	var kept []patientRecord
	scanned := 0
	for {
		page, err := fetch()
		if err != nil {
			return nil, "", err
		}
		for _, item := range page {
			scanned++
			rec, ok, err := keep(item)
			if err != nil {
				return nil, "", err
			}
			if !ok {
				continue
			}
			kept = append(kept, rec)
			if len(kept) == pageSize {
				return kept, next(item), nil
			}
		}
		if len(page) < pageSize {
			return kept, "", nil
		}
		cursor := next(page[len(page)-1])
		if scanned >= listScanBudget {
			return kept, cursor, nil
		}
	}
}
