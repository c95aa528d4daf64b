package httpapi

import (
	"context"
	"net/http"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

type breakGlassJSON struct {
	// Reason is one of the policy's break_glass.reasons codes.
	Reason string `json:"reason"`
	// Minutes is the grant's length; 0 or absent is the policy default.
	Minutes int `json:"minutes,omitempty"`
}

// breakGlass opens one patient's record to the calling clinician for a
// limited time. The grant and its high-severity audit entry commit in one
// transaction: there is no grant without its record.
func (s *Server) breakGlass(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, err := pathPatient(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := access{
		req:        auth.Request{Action: auth.ActionBreakGlass, ResourceType: "Patient", PatientID: id, Purpose: auth.PurposeTreatment},
		resourceID: id,
	}
	d := s.accessFor(r, p).Check(r.Context(), a.req)
	if !d.Allowed {
		// Refused attempts are evidence too: audit them (at warning), then
		// answer.
		if err := s.auditDecision(r, p, a, d); err != nil {
			s.logger.Warn("audit of a denial failed", "request_id", RequestID(r.Context()), "error", err.Error())
		}
		s.writeError(w, r, denialError(d))
		return
	}
	var body breakGlassJSON
	if err := decodeJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.opts.Audit == nil {
		s.writeError(w, r, errs.E(errs.Unavailable, "break-the-glass is unavailable without the audit log"))
		return
	}
	req := auth.BreakGlassRequest{Principal: p, PatientID: id, Reason: body.Reason, Minutes: body.Minutes, RequestID: RequestID(r.Context())}
	grant, err := s.opts.Access.BreakGlass.Open(r.Context(), req, func(ctx context.Context, tx store.Tx, g auth.Grant) (int64, error) {
		e := s.auditEntry(r, p, a, d)
		e.Action = audit.ActionBreakGlass
		e.ResourceID = g.PatientID
		e.Severity = audit.SeverityHigh
		e.Purpose = audit.PurposeEmergencyTreatment
		stored, err := s.opts.Audit.AppendTx(ctx, tx, e)
		if err != nil {
			return 0, errs.Wrap(errs.Unavailable, err, "the audit log is unavailable; try again")
		}
		return stored.Seq, nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// This request's cached relationships predate the grant.
	auth.ForgetRelationships(r.Context())
	s.logger.Warn("break-the-glass grant opened", "request_id", RequestID(r.Context()), "grant", grant.ID, "reason", grant.Reason)
	writeJSON(w, "application/json", http.StatusCreated, grant)
}
