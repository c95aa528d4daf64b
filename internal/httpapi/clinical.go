package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/errs"
)

// The clinical workflows (internal/clinical), under
// /api/v1/clinical-workflows. Each handler decodes, makes one call into
// clinical.Service with the request's access guard (the module decides and
// audits every access against the workflow's patient, resource
// ClinicalWorkflow; the encounter routes are the FHIR record's Encounter
// as the caller) and encodes; the guard's kept entries are flushed before
// the answer leaves (answerGuarded).
//
//	ClinicalWorkflow create  POST /workflows
//	ClinicalWorkflow read    GET /workflows/{id}
//	ClinicalWorkflow search  GET /workflows, /search, /analytics, /metrics
//	ClinicalWorkflow update  PUT /workflows/{id}, POST .../steps, PUT .../steps/{step_id}
//	ClinicalWorkflow export  POST /ai-training-data/{id} (purpose research)
//	Encounter create, read   /encounters

const (
	clinicalBase    = "/api/v1/clinical-workflows"
	clinicalTimeout = 30 * time.Second
)

func (s *Server) clinicalRoutes() {
	s.handleFunc("GET "+clinicalBase+"/health", s.clinicalHealth)
	s.handleFunc("POST "+clinicalBase+"/workflows", s.withClinical(s.createClinicalWorkflow))
	s.handleFunc("GET "+clinicalBase+"/workflows", s.withClinical(s.listClinicalWorkflows))
	s.handleFunc("GET "+clinicalBase+"/workflows/{workflow_id}", s.withClinical(s.getClinicalWorkflow))
	s.handleFunc("PUT "+clinicalBase+"/workflows/{workflow_id}", s.withClinical(s.updateClinicalWorkflow))
	s.handleFunc("POST "+clinicalBase+"/workflows/{workflow_id}/steps", s.withClinical(s.addClinicalStep))
	s.handleFunc("PUT "+clinicalBase+"/workflows/{workflow_id}/steps/{step_id}", s.withClinical(s.updateClinicalStep))
	s.handleFunc("POST "+clinicalBase+"/encounters", s.withClinical(s.createClinicalEncounter))
	s.handleFunc("GET "+clinicalBase+"/encounters/{encounter_id}", s.withClinical(s.getClinicalEncounter))
	s.handleFunc("GET "+clinicalBase+"/search", s.withClinical(s.searchClinical))
	s.handleFunc("GET "+clinicalBase+"/analytics", s.withClinical(s.clinicalAnalytics))
	s.handleFunc("POST "+clinicalBase+"/ai-training-data/{workflow_id}", s.withClinical(s.exportClinicalWorkflow))
	s.handleFunc("GET "+clinicalBase+"/metrics", s.withClinical(s.clinicalMetrics))
}

// withClinical is withAccess for the clinical routes: they exist on every
// server and answer 503 where the module is not wired.
func (s *Server) withClinical(h func(w http.ResponseWriter, r *http.Request, g *careaccess.Guard)) http.HandlerFunc {
	return s.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		if s.opts.Clinical == nil {
			s.writeError(w, r, errs.E(errs.Unavailable, "the clinical workflows are not running on this server"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), clinicalTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		h(w, r, s.accessFor(r, p))
	})
}

// clinicalHealth is the module's own health: public like /healthz (it says
// nothing of any patient), 503 when the module is not wired or its
// database does not answer.
func (s *Server) clinicalHealth(w http.ResponseWriter, r *http.Request) {
	if s.opts.Clinical == nil {
		s.writeError(w, r, errs.E(errs.Unavailable, "the clinical workflows are not running on this server"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.opts.Clinical.Health(ctx); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, map[string]string{"status": "ok"})
}

// clinicalInput reads what a clinical request carries besides its query:
// the ids its path names (in order; see pathValue), no query parameter at
// all, and the strict JSON body into dst when dst is not nil.
func clinicalInput(w http.ResponseWriter, r *http.Request, dst any, names ...string) ([]string, error) {
	ids := make([]string, len(names))
	for i, name := range names {
		id, err := pathValue(r, name)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	if _, err := queryParams(r); err != nil {
		return nil, err
	}
	if dst != nil {
		if err := readWorkflowBody(w, r, dst); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// pathValue reads an id in the path: a workflow's or a step's is a UUID
// (what the module issues), an encounter's a FHIR id. A malformed one is
// simply not found.
func pathValue(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	ok := canonicalUUID(v)
	if name == "encounter_id" {
		ok = auth.ValidPatientID(v)
	}
	if !ok {
		what := map[string]string{"workflow_id": "workflow", "step_id": "step in this workflow", "encounter_id": "encounter"}[name]
		return "", errs.E(errs.NotFound, "no such %s", what)
	}
	return v, nil
}

func (s *Server) createClinicalWorkflow(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	var req clinical.CreateRequest
	if _, err := clinicalInput(w, r, &req); err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	v, created, err := s.opts.Clinical.Create(r.Context(), g, req, clinical.CreateOptions{IdempotencyKey: r.Header.Get("Idempotency-Key")})
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		var id struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(v, &id) == nil {
			w.Header().Set("Location", clinicalBase+"/workflows/"+id.ID)
		}
	}
	s.answerGuarded(w, r, g, status, v, err)
}

func (s *Server) listClinicalWorkflows(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	q, err := queryParams(r, "patient", "provider", "status", "type", "priority", "created_from", "created_to", "due_from", "due_to", "cursor", "limit")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	f, err := clinicalFilter(q)
	if err == nil {
		f.CreatedFrom, f.CreatedTo, f.DueFrom, f.DueTo, err = fourTimes(q, "created_from", "created_to", "due_from", "due_to")
	}
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	page, err := s.opts.Clinical.List(r.Context(), g, f)
	s.answerGuarded(w, r, g, http.StatusOK, page, err)
}

// clinicalFilter reads the filters the workflow list and search share.
func clinicalFilter(q url.Values) (clinical.Filter, error) {
	f := clinical.Filter{Patient: q.Get("patient"), Provider: q.Get("provider"), Status: clinical.Status(q.Get("status")),
		Type: clinical.WorkflowType(q.Get("type")), Priority: clinical.Priority(q.Get("priority")), Cursor: q.Get("cursor")}
	var err error
	f.Limit, err = queryLimit(q)
	return f, err
}

// fourTimes reads four RFC 3339 time parameters.
// queryDay parses a day (2026-01-31) or a time (RFC 3339, standing for its
// UTC day); empty is the zero time.
func queryDay(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errs.E(errs.Invalid, "must be a day such as 2026-01-31 (or an RFC 3339 time)").InField(name)
	}
	return t.UTC(), nil
}

func fourTimes(q url.Values, names ...string) (a, b, c, d time.Time, err error) {
	out := make([]time.Time, 4)
	for i, n := range names {
		if out[i], err = queryTime(q, n); err != nil {
			return
		}
	}
	return out[0], out[1], out[2], out[3], nil
}

func (s *Server) getClinicalWorkflow(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	ids, err := clinicalInput(w, r, nil, "workflow_id")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	v, err := s.opts.Clinical.Get(r.Context(), g, ids[0])
	s.answerGuarded(w, r, g, http.StatusOK, v, err)
}

func (s *Server) updateClinicalWorkflow(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	var req clinical.UpdateRequest
	ids, err := clinicalInput(w, r, &req, "workflow_id")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	v, err := s.opts.Clinical.Update(r.Context(), g, ids[0], req)
	s.answerGuarded(w, r, g, http.StatusOK, v, err)
}

func (s *Server) addClinicalStep(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	var req clinical.StepSpec
	ids, err := clinicalInput(w, r, &req, "workflow_id")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	v, err := s.opts.Clinical.AddStep(r.Context(), g, ids[0], req)
	s.answerGuarded(w, r, g, http.StatusCreated, v, err)
}

func (s *Server) updateClinicalStep(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	var req clinical.StepUpdate
	ids, err := clinicalInput(w, r, &req, "workflow_id", "step_id")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	v, err := s.opts.Clinical.UpdateStep(r.Context(), g, ids[0], ids[1], req)
	s.answerGuarded(w, r, g, http.StatusOK, v, err)
}

func (s *Server) createClinicalEncounter(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	body, err := s.readFHIRBody(r, "Encounter")
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	rec, err := s.opts.Clinical.CreateEncounter(r.Context(), g, body)
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	// The guard's entries (the create's) go to the log as the answer starts.
	s.respondRecord(&auditingWriter{ResponseWriter: w, g: g, s: s, r: r}, r, g, rec, http.StatusCreated, true)
}

func (s *Server) getClinicalEncounter(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	ids, err := clinicalInput(w, r, nil, "encounter_id")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	rec, err := s.opts.Clinical.Encounter(r.Context(), g, ids[0])
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, asMissing(err, "Encounter", errs.E(errs.NotFound, "no such encounter")))
		return
	}
	s.respondRecord(&auditingWriter{ResponseWriter: w, g: g, s: s, r: r}, r, g, rec, http.StatusOK, false)
}

func (s *Server) searchClinical(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	q, err := queryParams(r, "patient", "provider", "status", "type", "priority", "encounter_status", "from", "to", "cursor", "limit")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	f := clinical.SearchFilter{EncounterStatus: q.Get("encounter_status")}
	f.Filter, err = clinicalFilter(q)
	if err == nil {
		f.From, err = queryTime(q, "from")
	}
	if err == nil {
		f.To, err = queryTime(q, "to")
	}
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	res, err := s.opts.Clinical.Search(r.Context(), g, f)
	s.answerGuarded(w, r, g, http.StatusOK, res, err)
}

func (s *Server) clinicalAnalytics(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	q, err := queryParams(r, "from", "to", "type", "priority", "provider")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	f := clinical.AnalyticsFilter{Type: clinical.WorkflowType(q.Get("type")), Priority: clinical.Priority(q.Get("priority")), Provider: q.Get("provider")}
	f.From, err = queryDay(q, "from")
	if err == nil {
		f.To, err = queryDay(q, "to")
	}
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	a, err := s.opts.Clinical.Analytics(r.Context(), g, f)
	s.answerGuarded(w, r, g, http.StatusOK, a, err)
}

func (s *Server) exportClinicalWorkflow(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	ids, err := clinicalInput(w, r, nil, "workflow_id")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	v, err := s.opts.Clinical.Export(r.Context(), g, ids[0])
	s.answerGuarded(w, r, g, http.StatusOK, v, err)
}

// clinicalMetrics serves the module's metrics to a caller the policy lets
// list workflows (the decision is audited like any search).
func (s *Server) clinicalMetrics(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	_, err := queryParams(r)
	if err == nil {
		err = s.opts.Clinical.AuthorizeMetrics(r.Context(), g)
	}
	if ferr := g.Flush(r.Context()); ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	promhttp.HandlerFor(s.opts.Clinical.Registry(), promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
