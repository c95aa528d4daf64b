package httpapi

import (
	"net/http"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// accessDecision is the body of GET /api/v1/access/check.
type accessDecision struct {
	Allowed bool        `json:"allowed"`
	Reason  auth.Reason `json:"reason"`
	Purpose string      `json:"purpose"`
	Via     string      `json:"via,omitempty"`
	// Fields lists the visible elements; absent means all.
	Fields         []string `json:"fields,omitempty"`
	AllFields      bool     `json:"all_fields"`
	Consent        string   `json:"consent,omitempty"`
	RecheckRecords bool     `json:"recheck_records"`
	BreakGlass     bool     `json:"break_glass"`
}

// accessCheck answers what the caller may do, with the status the real
// access would get: 200 with the decision, or the 403/404 problem. It is a
// question about the caller's own permissions, so it is not audited.
func (s *Server) accessCheck(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	q, err := queryParams(r, "patient", "resource", "action", "purpose")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req := auth.Request{ResourceType: q.Get("resource"), Action: auth.Action(q.Get("action")), PatientID: q.Get("patient")}
	if !auth.KnownResourceType(req.ResourceType) {
		s.writeError(w, r, errs.E(errs.Invalid, "must be a resource type the access policy knows").InField("resource"))
		return
	}
	if !req.Action.Valid() {
		s.writeError(w, r, errs.E(errs.Invalid, "must be read, search, create, update, delete, export or break_glass").InField("action"))
		return
	}
	if req.PatientID != "" && !auth.ValidPatientID(req.PatientID) {
		s.writeError(w, r, errs.E(errs.Invalid, "must be a patient id").InField("patient"))
		return
	}
	if req.Purpose, err = queryPurpose(q); err != nil {
		s.writeError(w, r, err)
		return
	}
	d := s.accessFor(r, p).Check(r.Context(), req)
	if !d.Allowed {
		s.writeError(w, r, denialError(d))
		return
	}
	writeJSON(w, "application/json", http.StatusOK, accessDecision{
		Allowed: true, Reason: d.Reason, Purpose: string(d.Purpose), Via: string(d.Via),
		Fields: d.Fields, AllFields: d.Fields == nil, Consent: string(d.Consent),
		RecheckRecords: d.RecheckRecords, BreakGlass: d.BreakGlass,
	})
}

// getConsents returns a patient's consent records.
func (s *Server) getConsents(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, err := pathPatient(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := access{req: auth.Request{Action: auth.ActionRead, ResourceType: "Consent", PatientID: id}, resourceID: id}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	set, err := s.opts.Access.Consents.Get(r.Context(), id)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, set)
}

type consentInputJSON struct {
	Purpose  string     `json:"purpose"`
	Decision string     `json:"decision"`
	Start    *time.Time `json:"start,omitempty"`
	End      *time.Time `json:"end,omitempty"`
}

type consentPutJSON struct {
	// Version is the set's current version (0 before the first PUT).
	Version  *int               `json:"version"`
	Consents []consentInputJSON `json:"consents"`
}

// putConsents replaces a patient's consent records.
func (s *Server) putConsents(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, err := pathPatient(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Authorize before reading the body: a caller who may not write learns
	// nothing from validation messages.
	a := access{req: auth.Request{Action: auth.ActionUpdate, ResourceType: "Consent", PatientID: id}, resourceID: id}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	fail := func(err error) { s.failAfterAuthorize(w, r, p, a, d, err) }
	var body consentPutJSON
	if err := decodeJSON(r, &body); err != nil {
		fail(err)
		return
	}
	if body.Version == nil {
		fail(errs.E(errs.Invalid, "is required (0 for a patient without consents)").InField("version"))
		return
	}
	if body.Consents == nil {
		fail(errs.E(errs.Invalid, "is required (an empty list clears every record)").InField("consents"))
		return
	}
	in := make([]auth.ConsentInput, len(body.Consents))
	for i, c := range body.Consents {
		in[i] = auth.ConsentInput{Purpose: auth.Purpose(c.Purpose), Decision: auth.ConsentDecision(c.Decision), Start: c.Start, End: c.End}
	}
	set, err := s.opts.Access.Consents.Put(r.Context(), id, *body.Version, in, p.Subject, "api")
	if err != nil {
		fail(err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, set)
}
