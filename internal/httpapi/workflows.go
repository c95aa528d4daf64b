package httpapi

import (
	"context"
	"net/http"
	"regexp"
	"time"

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
// (resource WorkflowTask, apart from the FHIR Task resource: policy
// version 2). The policy actions are:
//
//	WorkflowRun search  list runs, list definitions
//	WorkflowRun read    a run, its history, steps and signals
//	WorkflowRun create  start a run; send a run a signal (a new record in it)
//	WorkflowRun update  cancel, pause, resume, retry; reassign its tasks
//	WorkflowTask search/read  list tasks, a task
//	WorkflowTask update       claim, complete
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
// Lists are confined to the caller's reach in the engine's query (the
// runs of the patients the caller may read, auth.Authorizer.Reach; a task
// joined to its run's patient), as FHIR searches are, so a page is full
// whenever that many visible records exist and its next cursor says
// nothing about the others. Each page is then passed through the response
// filter like every other listing. Records outside the reach are outside
// the caller's query, not refused accesses, and are not audited one by
// one: the search itself is.

const (
	runType  = "WorkflowRun"
	taskType = auth.WorkflowTask

	// maxWorkflowBody bounds the bodies of the workflow routes; the largest
	// is a start with its input.
	maxWorkflowBody = 128 << 10
	// maxJSONMember bounds a run input, a signal payload and a task result.
	// The engine stores them encrypted, but they are meant to carry
	// references, codes and decisions, not documents; anything near this
	// size is a mistake or an attempt to store what does not belong there.
	maxJSONMember = 64 << 10

	// defaultPage and maxPage are the engine's page-size rule, which the
	// limit parameter is checked against.
	defaultPage = engine.DefaultPageSize
	maxPage     = engine.MaxPageSize

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
