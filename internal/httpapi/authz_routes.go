package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// accessRoutes registers the access-policy API: the permission check,
// consents, break-the-glass, care teams, and the audit log's review routes.
func (s *Server) accessRoutes() {
	s.handleFunc("GET /api/v1/access/check", s.withAccess(s.accessCheck))

	s.handleFunc("GET /api/v1/patients/{id}/consents", s.withAccess(s.getConsents))
	s.handleFunc("PUT /api/v1/patients/{id}/consents", s.withAccess(s.putConsents))
	s.handleFunc("POST /api/v1/patients/{id}/break-glass", s.withAccess(s.breakGlass))
	s.handleFunc("GET /api/v1/patients/{id}/assignments", s.withAccess(s.listAssignments))
	s.handleFunc("PUT /api/v1/patients/{id}/assignments/{user}", s.withAccess(s.putAssignment))
	s.handleFunc("DELETE /api/v1/patients/{id}/assignments/{user}", s.withAccess(s.deleteAssignment))

	s.handleFunc("GET /api/v1/care-teams", s.withAccess(s.listCareTeams))
	s.handleFunc("POST /api/v1/care-teams", s.withAccess(s.createCareTeam))
	s.handleFunc("GET /api/v1/care-teams/{id}", s.withAccess(s.getCareTeam))
	s.handleFunc("PUT /api/v1/care-teams/{id}/members/{user}", s.withAccess(s.putCareTeamMember))
	s.handleFunc("DELETE /api/v1/care-teams/{id}/members/{user}", s.withAccess(s.deleteCareTeamMember))
	s.handleFunc("PUT /api/v1/care-teams/{id}/patients/{patient}", s.withAccess(s.putCareTeamPatient))
	s.handleFunc("DELETE /api/v1/care-teams/{id}/patients/{patient}", s.withAccess(s.deleteCareTeamPatient))

	s.handleFunc("GET /api/v1/audit", s.withAccess(s.listAudit))
	s.handleFunc("GET /api/v1/audit/break-glass", s.withAccess(s.listBreakGlass))
}

// queryParams reads a query string strictly: only the named parameters,
// each at most once. A misspelt filter would otherwise widen a listing
// silently.
func queryParams(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errs.E(errs.Invalid, "malformed query string")
	}
	for k, v := range q {
		known := false
		for _, a := range allowed {
			if k == a {
				known = true
				break
			}
		}
		if !known {
			return nil, errs.E(errs.Invalid, "unknown query parameter (known: %s)", strings.Join(allowed, ", ")).InField(k)
		}
		if len(v) > 1 {
			return nil, errs.E(errs.Invalid, "given more than once").InField(k)
		}
	}
	return q, nil
}

// queryTime parses an RFC 3339 time parameter; empty is the zero time.
func queryTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errs.E(errs.Invalid, "must be an RFC 3339 time such as 2026-01-31T08:00:00Z").InField(name)
	}
	return t, nil
}

// queryLimit parses a page size; empty is 0 (the lister's default).
func queryLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, errs.E(errs.Invalid, "must be a whole number from 1 to 1000").InField("limit")
	}
	return n, nil
}

// pathPatient reads and checks the {id} path value naming a patient.
func pathPatient(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !auth.ValidPatientID(id) {
		return "", errs.E(errs.Invalid, "must be a patient id (1-64 letters, digits, - and .)").InField("id")
	}
	return id, nil
}

// queryPurpose reads an optional purpose of use.
func queryPurpose(q url.Values) (auth.Purpose, error) {
	v := q.Get("purpose")
	if v == "" {
		return "", nil
	}
	pu := auth.Purpose(v)
	if !pu.Valid() {
		return "", errs.E(errs.Invalid, "must be treatment, payment, operations or research").InField("purpose")
	}
	return pu, nil
}
