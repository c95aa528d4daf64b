package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
)

// The workflow-runs surface: start, list, read (history, steps, signals),
// signal, cancel, pause, resume, retry.

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

func runRecord(run *engine.Run, body any) (patientRecord, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return patientRecord{}, errs.Wrap(errs.Internal, err, "encode workflow run")
	}
	return patientRecord{ResourceType: runType, ResourceID: run.ID, PatientID: run.PatientID, JSON: b}, nil
}

type startRunJSON struct {
	Definition string          `json:"definition"`
	Input      json.RawMessage `json:"input"`
	PatientID  string          `json:"patient_id"`
	StartKey   string          `json:"start_key"`
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
	if f.Reach, err = s.workflowReach(r, p, runType, d.Purpose); err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	runs, err := s.opts.Engine.ListRuns(r.Context(), f)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	kept := make([]patientRecord, 0, len(runs))
	for _, run := range runs {
		rec, err := runRecord(run, run)
		if err != nil {
			s.failAfterAuthorize(w, r, p, a, d, err)
			return
		}
		kept = append(kept, rec)
	}
	next := ""
	if len(runs) == f.Limit {
		next = runs[len(runs)-1].ID
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
	if err := s.controlled(rr.run); err != nil {
		fail(err)
		return
	}
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
		if err := s.controlled(rr.run); err != nil {
			fail(err)
			return
		}
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
