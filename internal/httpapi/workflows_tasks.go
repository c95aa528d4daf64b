package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
)

// The human-tasks surface: list, read, claim, complete, reassign.

// taskRequest is an authorized access to one task.
type taskRequest struct {
	task *engine.Task
	run  *engine.Run
	a    access
	d    auth.Decision
}

// authorizeTask reads the task named by the path and its run, and decides
// action on resourceType (WorkflowTask, or WorkflowRun for managing the run)
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
	// A task's patient is its run's, read with it in the listing's query.
	if f.Reach, err = s.workflowReach(r, p, taskType, d.Purpose); err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	tasks, err := s.opts.Engine.ListTasks(r.Context(), f)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	kept := make([]patientRecord, 0, len(tasks))
	for _, t := range tasks {
		rec, err := taskRecord(t.Task, t.PatientID)
		if err != nil {
			s.failAfterAuthorize(w, r, p, a, d, err)
			return
		}
		kept = append(kept, rec)
	}
	next := ""
	if len(tasks) == f.Limit {
		next = tasks[len(tasks)-1].ID
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
	if err := s.controlled(tr.run); err != nil {
		fail(err)
		return
	}
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
	if err := s.controlled(tr.run); err != nil {
		fail(err)
		return
	}
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
	if err := s.controlled(tr.run); err != nil {
		fail(err)
		return
	}
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
