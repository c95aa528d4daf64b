package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
)

// The workflow engine's API: definitions, runs (start, query, history,
// steps, signals, cancel, pause, resume, retry) and human tasks (list,
// claim, complete, reassign).
//
// Authorization follows authz.go. A run is about its patient: every access
// to a run is decided against the run's patient_id (resource WorkflowRun),
// and every access to a task against the patient of the task's run
// (resource Task). The policy actions are:
//
//	WorkflowRun search  list runs, list definitions
//	WorkflowRun read    a run, its history, steps and signals
//	WorkflowRun create  start a run; send a run a signal (a new record in it)
//	WorkflowRun update  cancel, pause, resume, retry; reassign its tasks
//	Task search/read    list tasks, a task
//	Task update         claim, complete
//
// Signals are "create" so that a role can be let feed runs (the payer
// gateway's callbacks) without being let stop or restart them. The audit
// entry names the operation (signal, cancel, claim, ...) rather than the
// policy action, so a reviewer reads what happened.
//
// Run and task ids cannot be probed: a run of a patient outside the
// caller's compartment, a run that names no patient when the caller's
// access is patient-bound, and a run that does not exist are all the same
// 404; a caller whose role may never touch runs gets its 403 either way.
//
// Lists come from the engine, which does not know care teams; each page is
// filtered to the records the caller may read (decided per patient, cached
// for the request) and then passed through the response filter like every
// other listing. Records left out by that filter are outside the caller's
// query, not refused accesses, and are not audited one by one: the search
// itself is.

const (
	runType  = "WorkflowRun"
	taskType = "Task"

	// maxWorkflowBody bounds the bodies of the workflow routes; the largest
	// is a start with its input.
	maxWorkflowBody = 128 << 10
	// maxJSONMember bounds a run input, a signal payload and a task result.
	// The engine stores them encrypted, but they are meant to carry
	// references, codes and decisions, not documents; anything near this
	// size is a mistake or an attempt to store what does not belong there.
	maxJSONMember = 64 << 10

	defaultPage = 100
	maxPage     = 500
	// listScanBudget bounds the engine records one list request examines
	// while filling a page for a caller whose access reaches few of them; the
	// rest is left to the next cursor.
	listScanBudget = 5000

	// workflowTimeout is each workflow request's deadline.
	workflowTimeout = 30 * time.Second
)

var (
	// definitionName matches the engine's definition and step names.
	definitionName = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)
	// reasonCode is a cancellation reason: a code, not free text, so that no
	// note lands in the run's history, its events or the logs.
	reasonCode = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	// startKey is a client's idempotency key for a start, and the form of
	// a signal's id: both are stored in plain to recognise a retry.
	startKey = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,200}$`)
	// taskRole is a role named by a task filter.
	taskRole = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	// decisionCode is a task decision: one of the codes the definition
	// offers, never free text.
	decisionCode = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

func (s *Server) workflowRoutes() {
	s.handleFunc("GET /api/v1/workflow-definitions", s.withEngine(s.listDefinitions))

	s.handleFunc("POST /api/v1/workflow-runs", s.withEngine(s.startRun))
	s.handleFunc("GET /api/v1/workflow-runs", s.withEngine(s.listRuns))
	s.handleFunc("GET /api/v1/workflow-runs/{id}", s.withEngine(s.getRun))
	s.handleFunc("GET /api/v1/workflow-runs/{id}/history", s.withEngine(s.runHistory))
	s.handleFunc("GET /api/v1/workflow-runs/{id}/steps", s.withEngine(s.runSteps))
	s.handleFunc("GET /api/v1/workflow-runs/{id}/signals", s.withEngine(s.runSignals))
	s.handleFunc("POST /api/v1/workflow-runs/{id}/signals", s.withEngine(s.sendSignal))
	s.handleFunc("POST /api/v1/workflow-runs/{id}/cancel", s.withEngine(s.runControl("cancel")))
	s.handleFunc("POST /api/v1/workflow-runs/{id}/pause", s.withEngine(s.runControl("pause")))
	s.handleFunc("POST /api/v1/workflow-runs/{id}/resume", s.withEngine(s.runControl("resume")))
	s.handleFunc("POST /api/v1/workflow-runs/{id}/retry", s.withEngine(s.runControl("retry")))

	s.handleFunc("GET /api/v1/tasks", s.withEngine(s.listTasks))
	s.handleFunc("GET /api/v1/tasks/{id}", s.withEngine(s.getTask))
	s.handleFunc("POST /api/v1/tasks/{id}/claim", s.withEngine(s.claimTask))
	s.handleFunc("POST /api/v1/tasks/{id}/complete", s.withEngine(s.completeTask))
	s.handleFunc("POST /api/v1/tasks/{id}/reassign", s.withEngine(s.reassignTask))
}

// withEngine is withAccess for the workflow routes: the routes exist on
// every server (so the API document is the same everywhere) and answer 503
// where no engine runs. Each request gets a deadline.
func (s *Server) withEngine(h func(w http.ResponseWriter, r *http.Request, p *auth.Principal)) http.HandlerFunc {
	return s.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		if s.opts.Engine == nil {
			s.writeError(w, r, errs.E(errs.Unavailable, "the workflow engine is not running on this server"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), workflowTimeout)
		defer cancel()
		h(w, r.WithContext(ctx), p)
	})
}

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

// runRequest is an authorized access to one run.
type runRequest struct {
	run *engine.Run
	a   access
	d   auth.Decision
}

// authorizeRun reads the run named by the path and decides action on it
// against its patient. On failure it has answered and returns false.
func (s *Server) authorizeRun(w http.ResponseWriter, r *http.Request, p *auth.Principal, action auth.Action, auditAction audit.Action) (runRequest, bool) {
	id, err := pathID(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return runRequest{}, false
	}
	run, err := s.opts.Engine.GetRun(r.Context(), id)
	if errs.Is(err, errs.NotFound) {
		s.writeError(w, r, s.missingRecord(r, p, runType, action, auditAction, id, errRunNotFound))
		return runRequest{}, false
	}
	if err != nil {
		s.writeError(w, r, err)
		return runRequest{}, false
	}
	a := access{req: auth.Request{Action: action, ResourceType: runType, PatientID: run.PatientID}, resourceID: run.ID, auditAction: auditAction}
	d, err := s.authorizeRecord(r, p, a)
	if err != nil {
		s.writeError(w, r, recordDenial(d, err, errRunNotFound))
		return runRequest{}, false
	}
	return runRequest{run: run, a: a, d: d}, true
}

// taskRequest is an authorized access to one task.
type taskRequest struct {
	task *engine.Task
	run  *engine.Run
	a    access
	d    auth.Decision
}

// authorizeTask reads the task named by the path and its run, and decides
// action on resourceType (Task, or WorkflowRun for managing the run)
// against the run's patient.
func (s *Server) authorizeTask(w http.ResponseWriter, r *http.Request, p *auth.Principal, resourceType string, action auth.Action, auditAction audit.Action) (taskRequest, bool) {
	id, err := pathID(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return taskRequest{}, false
	}
	eng := s.opts.Engine
	task, err := eng.GetTask(r.Context(), id)
	var run *engine.Run
	if err == nil {
		run, err = eng.GetRun(r.Context(), task.RunID)
	}
	if errs.Is(err, errs.NotFound) {
		s.writeError(w, r, s.missingRecord(r, p, resourceType, action, auditAction, id, errTaskNotFound))
		return taskRequest{}, false
	}
	if err != nil {
		s.writeError(w, r, err)
		return taskRequest{}, false
	}
	a := access{req: auth.Request{Action: action, ResourceType: resourceType, PatientID: run.PatientID}, resourceID: task.ID, auditAction: auditAction}
	if resourceType == runType {
		a.resourceID = run.ID
	}
	d, err := s.authorizeRecord(r, p, a)
	if err != nil {
		s.writeError(w, r, recordDenial(d, err, errTaskNotFound))
		return taskRequest{}, false
	}
	return taskRequest{task: task, run: run, a: a, d: d}, true
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

func runRecord(run *engine.Run, body any) (patientRecord, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return patientRecord{}, errs.Wrap(errs.Internal, err, "encode workflow run")
	}
	return patientRecord{ResourceType: runType, ResourceID: run.ID, PatientID: run.PatientID, JSON: b}, nil
}

// --- definitions ---

// definitionJSON describes one registered definition, every version.
type definitionJSON struct {
	Name          string                  `json:"name"`
	NewestVersion int                     `json:"newest_version"`
	Versions      []definitionVersionJSON `json:"versions"`
}

type definitionVersionJSON struct {
	Version int        `json:"version"`
	Steps   []stepJSON `json:"steps"`
}

// stepJSON describes a step as far as code can be described: what kind it
// is, whether a condition decides if it runs, and its limits. Conditions
// and waits are Go functions of the run's input; their meaning is the
// definition's documentation.
type stepJSON struct {
	Name string `json:"name"`
	// Kind is "action" (does work, may call the outside world, retried) or
	// "wait" (a timer, a signal or a human task, computed when reached).
	Kind string `json:"kind"`
	// Conditional: the step runs only when its condition on the run's input
	// and earlier outputs holds; otherwise it is skipped.
	Conditional bool `json:"conditional"`
	// TimeoutSeconds bounds one attempt of an action step.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// MaxAttempts is an action step's attempts including the first.
	MaxAttempts int `json:"max_attempts,omitempty"`
}

func (s *Server) listDefinitions(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if _, err := queryParams(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Definitions are code, not patient data; whoever may list runs may
	// see what runs can be.
	a := access{req: auth.Request{Action: auth.ActionSearch, ResourceType: runType}}
	if _, err := s.authorize(r, p, a); err != nil {
		s.writeError(w, r, err)
		return
	}
	reg := s.opts.Engine.Registry()
	out := []definitionJSON{}
	for _, info := range reg.List() {
		dj := definitionJSON{Name: info.Name, Versions: []definitionVersionJSON{}}
		for _, v := range info.Versions {
			def, ok := reg.Get(info.Name, v)
			if !ok {
				continue
			}
			vj := definitionVersionJSON{Version: v, Steps: []stepJSON{}}
			for _, st := range def.Steps {
				sj := stepJSON{Name: st.Name, Kind: "wait", Conditional: st.When != nil}
				if st.Do != nil {
					sj.Kind = "action"
					sj.TimeoutSeconds = engine.DefaultStepTimeout.Seconds()
					if st.Timeout > 0 {
						sj.TimeoutSeconds = st.Timeout.Seconds()
					}
					sj.MaxAttempts = st.Retry.MaxAttempts
					if sj.MaxAttempts <= 0 {
						sj.MaxAttempts = engine.DefaultRetry.MaxAttempts
					}
				}
				vj.Steps = append(vj.Steps, sj)
			}
			dj.Versions = append(dj.Versions, vj)
			dj.NewestVersion = max(dj.NewestVersion, v)
		}
		out = append(out, dj)
	}
	writeJSON(w, "application/json", http.StatusOK, map[string]any{"definitions": out})
}

// --- runs ---

type startRunJSON struct {
	Definition string          `json:"definition"`
	Input      json.RawMessage `json:"input"`
	PatientID  string          `json:"patient_id"`
	StartKey   string          `json:"start_key"`
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

func (s *Server) startRun(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if _, err := queryParams(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The patient the run is about is in the body, so the body is read
	// before the decision; only its shape and the patient id are checked
	// before it, the rest after.
	var body startRunJSON
	if err := readWorkflowBody(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.PatientID != "" && !auth.ValidPatientID(body.PatientID) {
		s.writeError(w, r, errs.E(errs.Invalid, "must be a patient id (1-64 letters, digits, - and .)").InField("patient_id"))
		return
	}
	a := access{req: auth.Request{Action: auth.ActionCreate, ResourceType: runType, PatientID: body.PatientID}}
	d, err := s.authorizeRecord(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	fail := func(err error) { s.failAfterAuthorize(w, r, p, a, d, err) }
	if !definitionName.MatchString(body.Definition) {
		fail(errs.E(errs.Invalid, "is required: the name of a workflow definition (see /api/v1/workflow-definitions)").InField("definition"))
		return
	}
	if body.StartKey != "" && !startKey.MatchString(body.StartKey) {
		fail(errs.E(errs.Invalid, "must be 1-200 letters, digits, '.', '_', ':' or '-'").InField("start_key"))
		return
	}
	input, err := jsonObject(body.Input, "input")
	if err != nil {
		fail(err)
		return
	}
	run, created, err := s.opts.Engine.StartRun(r.Context(), engine.StartOptions{
		Definition: body.Definition, Input: input, PatientID: body.PatientID, StartKey: body.StartKey,
		// A record the input references must be one the caller could read:
		// the engine answers one it may not read as it answers a missing one.
		MayRead: func(resourceType string) bool {
			return s.mayRead(r, p, resourceType, body.PatientID, d.Purpose)
		},
	})
	if err != nil {
		fail(err)
		return
	}
	if !created && run.PatientID != body.PatientID {
		// The key names a run about someone else: the caller was
		// authorized for this patient, not that one, and learns only that
		// the key is taken.
		fail(errs.E(errs.Conflict, "start_key already names another run of this definition").InField("start_key"))
		return
	}
	// Shown as the create decision permits, like any record the request
	// itself changed (see writeChanged).
	b, err := json.Marshal(run)
	if err == nil {
		b, err = s.opts.Access.Policy.RedactFields(d.Fields, b)
	}
	if err != nil {
		fail(errs.Wrap(errs.Internal, err, "encode workflow run"))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/v1/workflow-runs/"+run.ID)
	}
	writeJSON(w, "application/json", status, json.RawMessage(b))
}

// runPage is the body of a run listing.
type runPage struct {
	Runs []json.RawMessage `json:"runs"`
	// Next is the cursor of the following page (pass it as after=); absent
	// on the last page.
	Next string `json:"next,omitempty"`
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	q, err := queryParams(r, "status", "definition", "patient", "stuck_for", "limit", "after")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := runFilter(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := access{req: auth.Request{Action: auth.ActionSearch, ResourceType: runType, PatientID: f.PatientID}}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	kept, next, err := scanReadable(f.Limit,
		func() ([]*engine.Run, error) { return s.opts.Engine.ListRuns(r.Context(), f) },
		func(run *engine.Run) string { f.After = run.ID; return run.ID },
		func(run *engine.Run) (patientRecord, bool, error) {
			if !s.mayRead(r, p, runType, run.PatientID, d.Purpose) {
				return patientRecord{}, false, nil
			}
			rec, err := runRecord(run, run)
			return rec, err == nil, err
		})
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	out, err := s.recheckRecords(r, p, d.Purpose, kept)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if out == nil {
		out = []json.RawMessage{}
	}
	writeJSON(w, "application/json", http.StatusOK, runPage{Runs: out, Next: next})
}

// mayRead is the list filter: whether the caller may read a record of the
// patient for the purpose the search was decided for.
func (s *Server) mayRead(r *http.Request, p *auth.Principal, resourceType, patientID string, purpose auth.Purpose) bool {
	return s.opts.Access.Authorizer.Decide(r.Context(), p, auth.Request{
		Action: auth.ActionRead, ResourceType: resourceType, PatientID: patientID, Purpose: purpose,
	}).Allowed
}

func runFilter(q url.Values) (engine.RunFilter, error) {
	var f engine.RunFilter
	if v := q.Get("status"); v != "" {
		f.Status = engine.Status(v)
		if !f.Status.Valid() {
			return f, errs.E(errs.Invalid, "must be one of %s", joinStatuses()).InField("status")
		}
	}
	if v := q.Get("definition"); v != "" {
		if !definitionName.MatchString(v) {
			return f, errs.E(errs.Invalid, "must be a workflow definition name").InField("definition")
		}
		f.Definition = v
	}
	if v := q.Get("patient"); v != "" {
		if !auth.ValidPatientID(v) {
			return f, errs.E(errs.Invalid, "must be a patient id (1-64 letters, digits, - and .)").InField("patient")
		}
		f.PatientID = v
	}
	if v := q.Get("stuck_for"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 366*24*time.Hour {
			return f, errs.E(errs.Invalid, "must be a duration from 1s to 8784h, such as 15m or 2h").InField("stuck_for")
		}
		f.StuckFor = d
	}
	var err error
	if f.Limit, err = pageSize(q); err != nil {
		return f, err
	}
	if f.After, err = cursor(q); err != nil {
		return f, err
	}
	return f, nil
}

func joinStatuses() string {
	var b strings.Builder
	for i, st := range engine.Statuses {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(st))
	}
	return b.String()
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

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	rr, ok := s.authorizeRun(w, r, p, auth.ActionRead, "")
	if !ok {
		return
	}
	rec, err := runRecord(rr.run, rr.run)
	if err != nil {
		s.failAfterAuthorize(w, r, p, rr.a, rr.d, err)
		return
	}
	s.writeRecord(w, r, p, http.StatusOK, rec, rr.d.Purpose, errRunNotFound)
}

// runPart answers one of a run's collections (history, steps, signals) as
// a record of the run, so the response filter sees it like the run.
func (s *Server) runPart(w http.ResponseWriter, r *http.Request, p *auth.Principal, key string, load func(ctx context.Context, runID string) (any, error)) {
	rr, ok := s.authorizeRun(w, r, p, auth.ActionRead, "")
	if !ok {
		return
	}
	items, err := load(r.Context(), rr.run.ID)
	if err != nil {
		s.failAfterAuthorize(w, r, p, rr.a, rr.d, err)
		return
	}
	rec, err := runRecord(rr.run, map[string]any{"run_id": rr.run.ID, key: items})
	if err != nil {
		s.failAfterAuthorize(w, r, p, rr.a, rr.d, err)
		return
	}
	s.writeRecord(w, r, p, http.StatusOK, rec, rr.d.Purpose, errRunNotFound)
}

func (s *Server) runHistory(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.runPart(w, r, p, "transitions", func(ctx context.Context, id string) (any, error) {
		h, err := s.opts.Engine.History(ctx, id)
		if h == nil {
			h = []engine.Transition{}
		}
		return h, err
	})
}

func (s *Server) runSteps(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.runPart(w, r, p, "steps", func(ctx context.Context, id string) (any, error) {
		st, err := s.opts.Engine.Steps(ctx, id)
		if st == nil {
			st = []engine.StepExecution{}
		}
		return st, err
	})
}

func (s *Server) runSignals(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	s.runPart(w, r, p, "signals", func(ctx context.Context, id string) (any, error) {
		sg, err := s.opts.Engine.Signals(ctx, id)
		if sg == nil {
			sg = []engine.SignalRecord{}
		}
		return sg, err
	})
}

type signalJSON struct {
	// ID is the sender's id for the event; a retry with the same id is a
	// duplicate and changes nothing.
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload"`
}

func (s *Server) sendSignal(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	rr, ok := s.authorizeRun(w, r, p, auth.ActionCreate, "signal")
	if !ok {
		return
	}
	fail := func(err error) { s.failAfterAuthorize(w, r, p, rr.a, rr.d, err) }
	var body signalJSON
	if err := readWorkflowBody(w, r, &body); err != nil {
		fail(err)
		return
	}
	// The id is stored in plain (it is how a retry is recognised), so it is
	// an identifier's characters, not free text.
	if !startKey.MatchString(body.ID) {
		fail(errs.E(errs.Invalid, "is required: the sender's id for this event (retries reuse it), 1-200 letters, digits, '.', '_', ':' or '-'").InField("id"))
		return
	}
	if body.Name == "" {
		fail(errs.E(errs.Invalid, "is required: the signal name the run waits for").InField("name"))
		return
	}
	payload, err := jsonObject(body.Payload, "payload")
	if err != nil {
		fail(err)
		return
	}
	res, err := s.opts.Engine.SendSignal(r.Context(), rr.run.ID, engine.Signal{ID: body.ID, Name: body.Name, Payload: payload})
	if err != nil {
		fail(err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, res)
}

// runControlJSON is the body of cancel, pause, resume and retry.
type runControlJSON struct {
	// Version is the run's version as last read; a stale one is 412.
	Version *int64 `json:"version"`
}

// cancelJSON adds the cancellation's reason code, which the run keeps.
type cancelJSON struct {
	Version *int64 `json:"version"`
	Reason  string `json:"reason"`
}

func requireVersion(v *int64) (int64, error) {
	if v == nil || *v < 1 {
		return 0, errs.E(errs.Invalid, "is required: the version of the record as last read (a positive number)").InField("version")
	}
	return *v, nil
}

// runControl serves cancel, pause, resume and retry: managing a run, which
// the policy grants as update.
func (s *Server) runControl(op string) func(http.ResponseWriter, *http.Request, *auth.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		rr, ok := s.authorizeRun(w, r, p, auth.ActionUpdate, audit.Action(op))
		if !ok {
			return
		}
		fail := func(err error) { s.failAfterAuthorize(w, r, p, rr.a, rr.d, err) }
		var (
			version *int64
			reason  string
		)
		// Only a cancellation records a reason (the engine keeps it as the
		// run's error); the others reject one rather than drop it.
		if op == "cancel" {
			var body cancelJSON
			if err := readWorkflowBody(w, r, &body); err != nil {
				fail(err)
				return
			}
			if body.Reason != "" && !reasonCode.MatchString(body.Reason) {
				fail(errs.E(errs.Invalid, "must be a code of lower-case letters, digits and _ (e.g. duplicate_order), not free text").InField("reason"))
				return
			}
			version, reason = body.Version, body.Reason
		} else {
			var body runControlJSON
			if err := readWorkflowBody(w, r, &body); err != nil {
				fail(err)
				return
			}
			version = body.Version
		}
		v, err := requireVersion(version)
		if err != nil {
			fail(err)
			return
		}
		eng := s.opts.Engine
		var run *engine.Run
		switch op {
		case "cancel":
			run, err = eng.Cancel(r.Context(), rr.run.ID, v, reason)
		case "pause":
			run, err = eng.Pause(r.Context(), rr.run.ID, v)
		case "resume":
			run, err = eng.Resume(r.Context(), rr.run.ID, v)
		case "retry":
			run, err = eng.Retry(r.Context(), rr.run.ID, v)
		}
		if err != nil {
			fail(err)
			return
		}
		s.writeChanged(w, r, p, rr.a, rr.d, run)
	}
}

// --- tasks ---

// taskPage is the body of a task listing.
type taskPage struct {
	Tasks []json.RawMessage `json:"tasks"`
	Next  string            `json:"next,omitempty"`
}

func taskFilter(q url.Values) (engine.TaskFilter, error) {
	var f engine.TaskFilter
	switch st := engine.TaskStatus(q.Get("status")); st {
	case "", engine.TaskOpen, engine.TaskClaimed, engine.TaskCompleted, engine.TaskCancelled:
		f.Status = st
	default:
		return f, errs.E(errs.Invalid, "must be one of open, claimed, completed, cancelled").InField("status")
	}
	if v := q.Get("role"); v != "" {
		if !taskRole.MatchString(v) {
			return f, errs.E(errs.Invalid, "must be a role such as physician or billing").InField("role")
		}
		f.Role = v
	}
	if v := q.Get("assignee"); v != "" {
		if !auth.ValidUserID(v) {
			return f, errs.E(errs.Invalid, "must be a user id").InField("assignee")
		}
		f.Assignee = v
	}
	if v := q.Get("run_id"); v != "" {
		if !canonicalUUID(v) {
			return f, errs.E(errs.Invalid, "must be a workflow run id").InField("run_id")
		}
		f.RunID = v
	}
	switch q.Get("overdue") {
	case "", "false":
	case "true":
		f.Overdue = true
	default:
		return f, errs.E(errs.Invalid, "must be true or false").InField("overdue")
	}
	var err error
	if f.Limit, err = pageSize(q); err != nil {
		return f, err
	}
	if f.After, err = cursor(q); err != nil {
		return f, err
	}
	return f, nil
}

func taskRecord(t *engine.Task, patientID string) (patientRecord, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return patientRecord{}, errs.Wrap(errs.Internal, err, "encode task")
	}
	return patientRecord{ResourceType: taskType, ResourceID: t.ID, PatientID: patientID, JSON: b}, nil
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	q, err := queryParams(r, "status", "role", "assignee", "run_id", "overdue", "limit", "after")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := taskFilter(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := access{req: auth.Request{Action: auth.ActionSearch, ResourceType: taskType}}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// A task's patient is its run's; runs are read once per request.
	patients := map[string]string{}
	patientOf := func(runID string) (string, error) {
		if pid, ok := patients[runID]; ok {
			return pid, nil
		}
		run, err := s.opts.Engine.GetRun(r.Context(), runID)
		if err != nil {
			return "", err
		}
		patients[runID] = run.PatientID
		return run.PatientID, nil
	}
	kept, next, err := scanReadable(f.Limit,
		func() ([]*engine.Task, error) { return s.opts.Engine.ListTasks(r.Context(), f) },
		func(t *engine.Task) string { f.After = t.ID; return t.ID },
		func(t *engine.Task) (patientRecord, bool, error) {
			pid, err := patientOf(t.RunID)
			if err != nil {
				return patientRecord{}, false, err
			}
			if !s.mayRead(r, p, taskType, pid, d.Purpose) {
				return patientRecord{}, false, nil
			}
			rec, err := taskRecord(t, pid)
			return rec, err == nil, err
		})
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	out, err := s.recheckRecords(r, p, d.Purpose, kept)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if out == nil {
		out = []json.RawMessage{}
	}
	writeJSON(w, "application/json", http.StatusOK, taskPage{Tasks: out, Next: next})
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	tr, ok := s.authorizeTask(w, r, p, taskType, auth.ActionRead, "")
	if !ok {
		return
	}
	s.answerTask(w, r, p, tr, tr.task)
}

func (s *Server) answerTask(w http.ResponseWriter, r *http.Request, p *auth.Principal, tr taskRequest, t *engine.Task) {
	rec, err := taskRecord(t, tr.run.PatientID)
	if err != nil {
		s.failAfterAuthorize(w, r, p, tr.a, tr.d, err)
		return
	}
	s.writeRecord(w, r, p, http.StatusOK, rec, tr.d.Purpose, errTaskNotFound)
}

// actorOf is the engine's view of the caller: the task rules (the task's
// role, held now, and its assignee) are the engine's, checked against the
// authenticated principal, never against anything the body says. The
// principal's role is the current one: the session check ends a careflow
// token whose account's role changed.
func actorOf(p *auth.Principal) engine.Actor {
	return engine.Actor{User: p.Subject, Roles: []string{string(p.Role)}}
}

type claimJSON struct {
	Version *int64 `json:"version"`
}

func (s *Server) claimTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	tr, ok := s.authorizeTask(w, r, p, taskType, auth.ActionUpdate, "claim")
	if !ok {
		return
	}
	fail := func(err error) { s.failAfterAuthorize(w, r, p, tr.a, tr.d, err) }
	var body claimJSON
	if err := readWorkflowBody(w, r, &body); err != nil {
		fail(err)
		return
	}
	v, err := requireVersion(body.Version)
	if err != nil {
		fail(err)
		return
	}
	t, err := s.opts.Engine.ClaimTask(r.Context(), tr.task.ID, actorOf(p), v)
	if err != nil {
		fail(err)
		return
	}
	s.writeChanged(w, r, p, tr.a, tr.d, t)
}

type completeJSON struct {
	Version  *int64          `json:"version"`
	Decision string          `json:"decision"`
	Result   json.RawMessage `json:"result"`
}

func (s *Server) completeTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	tr, ok := s.authorizeTask(w, r, p, taskType, auth.ActionUpdate, "complete")
	if !ok {
		return
	}
	fail := func(err error) { s.failAfterAuthorize(w, r, p, tr.a, tr.d, err) }
	var body completeJSON
	if err := readWorkflowBody(w, r, &body); err != nil {
		fail(err)
		return
	}
	v, err := requireVersion(body.Version)
	if err != nil {
		fail(err)
		return
	}
	if !decisionCode.MatchString(body.Decision) {
		fail(errs.E(errs.Invalid, "is required: one of the task's decisions (a code such as approve)").InField("decision"))
		return
	}
	var result any
	if len(bytes.TrimSpace(body.Result)) > 0 {
		raw, err := jsonObject(body.Result, "result")
		if err != nil {
			fail(err)
			return
		}
		result = raw
	}
	t, err := s.opts.Engine.CompleteTask(r.Context(), tr.task.ID, actorOf(p), body.Decision, result, v)
	if err != nil {
		fail(err)
		return
	}
	s.writeChanged(w, r, p, tr.a, tr.d, t)
}

type reassignJSON struct {
	Version *int64 `json:"version"`
	Role    string `json:"role"`
	User    string `json:"user"`
}

// reassignTask moves a task to another user (or to its escalation role).
// That overrides who the definition said should decide, so it is managing
// the run (update on the WorkflowRun), not working the task: otherwise
// anyone who may claim could hand themselves a task. Managing is not
// deciding either: the engine hands the task only to an account that holds
// its role (see engine.ReassignTask), so a manager cannot hand it to
// themselves.
func (s *Server) reassignTask(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	tr, ok := s.authorizeTask(w, r, p, runType, auth.ActionUpdate, "reassign_task")
	if !ok {
		return
	}
	fail := func(err error) { s.failAfterAuthorize(w, r, p, tr.a, tr.d, err) }
	var body reassignJSON
	if err := readWorkflowBody(w, r, &body); err != nil {
		fail(err)
		return
	}
	v, err := requireVersion(body.Version)
	if err != nil {
		fail(err)
		return
	}
	if body.Role == "" && body.User == "" {
		fail(errs.E(errs.Invalid, "a role or a user is required").InField("role"))
		return
	}
	if body.Role != "" && !auth.Role(body.Role).Valid() {
		fail(errs.E(errs.Invalid, "must be a role: physician, nurse, clinical_admin, admin, billing, auditor or integration").InField("role"))
		return
	}
	if body.User != "" && !auth.ValidUserID(body.User) {
		fail(errs.E(errs.Invalid, "must be a user id").InField("user"))
		return
	}
	t, err := s.opts.Engine.ReassignTask(r.Context(), tr.task.ID, body.Role, body.User, v)
	if err != nil {
		fail(err)
		return
	}
	s.writeChanged(w, r, p, tr.a, tr.d, t)
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
