package httpapi

import (
	"net/http"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// Care-team administration (clinical_admin in the default policy). Care
// teams decide which patients clinicians reach, so every change is
// authorized and audited like an access to patient data; a change to a
// team's patients is audited under that patient.

const careTeamType = "CareTeam"

func (s *Server) careTeamAccess(action auth.Action, teamID, patientID string) access {
	return access{req: auth.Request{Action: action, ResourceType: careTeamType, PatientID: patientID}, resourceID: teamID}
}

// careTeamID reads the {id} path value naming a care team (a UUID).
func careTeamID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !auth.ValidUserID(id) {
		return "", errs.E(errs.Invalid, "must be a care team id").InField("id")
	}
	return id, nil
}

func (s *Server) listCareTeams(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if _, err := queryParams(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionSearch, "", "")
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	teams, err := s.opts.Access.CareTeams.List(r.Context())
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, map[string]any{"care_teams": teams})
}

type careTeamJSON struct {
	Name string `json:"name"`
}

func (s *Server) createCareTeam(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if _, err := queryParams(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionCreate, "", "")
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body careTeamJSON
	if err := decodeJSON(r, &body); err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	team, err := s.opts.Access.CareTeams.Create(r.Context(), body.Name)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	w.Header().Set("Location", "/api/v1/care-teams/"+team.ID)
	writeJSON(w, "application/json", http.StatusCreated, team)
}

func (s *Server) getCareTeam(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, err := careTeamID(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionRead, id, "")
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	team, err := s.opts.Access.CareTeams.Get(r.Context(), id)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, team)
}

type careTeamMemberJSON struct {
	// Role is the member's function in the team, e.g. attending or nurse.
	Role string `json:"role"`
}

func (s *Server) putCareTeamMember(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, err := careTeamID(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionUpdate, id, "")
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body careTeamMemberJSON
	if err := decodeJSON(r, &body); err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	if err := s.opts.Access.CareTeams.AddMember(r.Context(), id, r.PathValue("user"), body.Role); err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteCareTeamMember(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, err := careTeamID(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionUpdate, id, "")
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.opts.Access.CareTeams.RemoveMember(r.Context(), id, r.PathValue("user")); err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// carePatient reads the {patient} path value.
func carePatient(r *http.Request) (string, error) {
	pid := r.PathValue("patient")
	if !auth.ValidPatientID(pid) {
		return "", errs.E(errs.Invalid, "must be a patient id (1-64 letters, digits, - and .)").InField("patient")
	}
	return pid, nil
}

func (s *Server) putCareTeamPatient(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.changeCareTeamPatient(w, r, p, true)
}

func (s *Server) deleteCareTeamPatient(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.changeCareTeamPatient(w, r, p, false)
}

func (s *Server) changeCareTeamPatient(w http.ResponseWriter, r *http.Request, p *auth.Principal, add bool) {
	id, err := careTeamID(r)
	var pid string
	if err == nil {
		pid, err = carePatient(r)
	}
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.careTeamAccess(auth.ActionUpdate, id, pid)
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if add {
		err = s.opts.Access.CareTeams.AddPatient(r.Context(), id, pid)
	} else {
		err = s.opts.Access.CareTeams.RemovePatient(r.Context(), id, pid)
	}
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
