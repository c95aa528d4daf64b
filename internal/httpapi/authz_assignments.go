package httpapi

import (
	"net/http"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// Assignments give one user time-limited reach to one patient's record
// because they were given that patient's work (a consult, a cover shift, a
// coding review), without making them a member of a care team. They are
// care-relationship administration, authorized and audited as a care-team
// change under the patient (clinical_admin in the default policy).

// maxAssignment bounds an assignment: a relationship meant to last longer
// belongs in a care team, where it is reviewed as one.
const maxAssignment = 30 * 24 * time.Hour

type assignmentPutJSON struct {
	Until *time.Time `json:"until"`
}

// assignmentTarget reads {id} (the patient) and {user} from the path.
func assignmentTarget(r *http.Request) (patientID, userID string, err error) {
	if patientID, err = pathPatient(r); err != nil {
		return "", "", err
	}
	userID = r.PathValue("user")
	if !auth.ValidUserID(userID) {
		return "", "", errs.E(errs.Invalid, "must be a user id").InField("user")
	}
	_, err = queryParams(r)
	return patientID, userID, err
}

// putAssignment assigns a user to a patient until a time (replacing the
// end of an assignment already there).
func (s *Server) putAssignment(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pid, uid, err := assignmentTarget(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionUpdate, "", pid)
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body assignmentPutJSON
	if err := decodeJSON(r, &body); err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	now := time.Now()
	switch {
	case body.Until == nil:
		err = errs.E(errs.Invalid, "is required (RFC 3339 time the assignment ends)").InField("until")
	case !body.Until.After(now):
		err = errs.E(errs.Invalid, "must be in the future; DELETE withdraws an assignment").InField("until")
	case body.Until.Sub(now) > maxAssignment:
		err = errs.E(errs.Invalid, "must be within 30 days; a longer relationship belongs in a care team").InField("until")
	}
	if err == nil {
		err = s.opts.Access.CareTeams.Assign(r.Context(), uid, pid, *body.Until)
	}
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteAssignment withdraws an assignment (idempotent).
func (s *Server) deleteAssignment(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pid, uid, err := assignmentTarget(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionUpdate, "", pid)
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.opts.Access.CareTeams.Unassign(r.Context(), uid, pid); err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listAssignments lists the assignments to a patient in force.
func (s *Server) listAssignments(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	pid, err := pathPatient(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionRead, "", pid)
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := s.opts.Access.CareTeams.Assignments(r.Context(), pid)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, map[string]any{"assignments": list})
}
