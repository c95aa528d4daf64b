package clinical

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// AddStep adds a step to an active workflow, after its last one. Anyone
// who may update the workflow may add a step for either care role.
func (s *Service) AddStep(ctx context.Context, g Guard, workflowID string, sp StepSpec) (json.RawMessage, error) {
	defer s.metrics.time("add_step")()
	if err := checkStepSpec("", sp); err != nil {
		return nil, err
	}
	actor := g.Caller().Principal
	if actor == nil {
		return nil, errs.E(errs.Forbidden, "only a person or a client adds a clinical step")
	}
	var out json.RawMessage
	err := s.cfg.DB.Tx(ctx, func(tx store.Tx) error {
		w, d, err := s.lockAuthorized(ctx, tx, g, workflowID, []string{"steps"})
		if err != nil {
			return err
		}
		if w.Status != StatusActive {
			return errs.E(errs.Conflict, "the workflow is %s: no step can be added", w.Status).InField("status")
		}
		steps, err := loadSteps(ctx, tx, w.ID)
		if err != nil {
			return err
		}
		if len(steps) >= maxSteps {
			return errs.E(errs.Unprocessable, "a workflow has at most %d steps", maxSteps).InField("code")
		}
		before := contributionOf(w, steps)
		now := s.clock()
		w.UpdatedAt = now
		w.Version++
		if due := now.Add(stepDue(sp)); w.DueAt == nil || due.After(*w.DueAt) {
			w.DueAt = &due
		}
		st, err := s.addStep(ctx, tx, w, len(steps)+1, sp, actor.Subject, now)
		if err != nil {
			return err
		}
		if err := saveWorkflow(ctx, tx, w); err != nil {
			return err
		}
		if err := s.syncWorkflowTask(ctx, tx, w, append(steps, st)); err != nil {
			return err
		}
		rollupChange(tx, &before, w, append(steps, st))
		out, err = s.render(ctx, g, d, w, append(steps, st))
		return err
	})
	return out, err
}

// UpdateStep moves a step to its next state, as the person acting: only
// someone who holds the step's role (and may update the workflow: the
// patient's care team) moves it, and only along pending -> in_progress ->
// completed | skipped | failed (pending -> skipped too). Starting a step
// claims its task; finishing it completes the task with the state as the
// decision. When the last step ends the workflow completes and its run
// closes, in the same transaction.
func (s *Service) UpdateStep(ctx context.Context, g Guard, workflowID, stepID string, up StepUpdate) (json.RawMessage, error) {
	defer s.metrics.time("update_step")()
	if up.Version <= 0 {
		return nil, errs.E(errs.Invalid, "is required: the step's version as read").InField("version")
	}
	if !up.Status.valid() {
		return nil, errs.E(errs.Invalid, "must be one of %s", stepStatusList).InField("status")
	}
	if up.Reason != "" {
		if !codePattern.MatchString(up.Reason) {
			return nil, errs.E(errs.Invalid, "must be a code: lower-case letters, digits and _").InField("reason")
		}
		if up.Status != StepSkipped && up.Status != StepFailed {
			return nil, errs.E(errs.Invalid, "only a skipped or failed step has a reason").InField("reason")
		}
	}
	actor, err := actorOf(g)
	if err != nil {
		return nil, err
	}
	var (
		out     json.RawMessage
		allowed auth.Decision
		patient string
	)
	err = s.cfg.DB.Tx(ctx, func(tx store.Tx) error {
		w, d, err := s.lockAuthorized(ctx, tx, g, workflowID, []string{"steps"})
		if err != nil {
			return err
		}
		allowed, patient = d, w.PatientID
		steps, err := loadSteps(ctx, tx, w.ID)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(steps, func(st *stepRow) bool { return st.ID == stepID })
		if i < 0 {
			return errs.E(errs.NotFound, "no such step in this workflow")
		}
		st := steps[i]
		if w.Status != StatusActive {
			return errs.E(errs.Conflict, "the workflow is %s", w.Status).InField("status")
		}
		if !slices.Contains(actor.Roles, st.Role) {
			return errStepRole(st.Role)
		}
		if st.Version != up.Version {
			return errs.E(errs.Conflict, "the step changed since it was read (version %d)", st.Version).InField("version")
		}
		if !allowedMove(st.Status, up.Status) {
			return errs.E(errs.Conflict, "a %s step cannot become %s", st.Status, up.Status).InField("status")
		}
		before := contributionOf(w, steps)
		if err := s.moveStep(ctx, tx, w, st, actor, up); err != nil {
			return err
		}
		if err := s.closeIfDone(ctx, tx, w, steps); err != nil {
			return err
		}
		rollupChange(tx, &before, w, steps)
		if err := s.syncWorkflowTask(ctx, tx, w, steps); err != nil {
			return err
		}
		out, err = s.render(ctx, g, d, w, steps)
		return err
	})
	if errs.Is(err, errs.Forbidden) && allowed.Allowed {
		// The policy allowed the update and the module's own rule refused
		// it (the step is another role's, the task another person's): the
		// transaction that held the allowed entry rolled back, so the
		// refusal is recorded now, as a denial of the same access.
		_ = g.AuditDecision(ctx, access.Action{Req: auth.Request{Action: auth.ActionUpdate, ResourceType: ResourceType, PatientID: patient},
			ResourceID: workflowID}, auth.Decision{Reason: ReasonStepRole, Purpose: allowed.Purpose})
	}
	return out, err
}

// ReasonStepRole is the audit reason of a step refused to someone who does
// not hold its role (or whose task another person holds).
const ReasonStepRole auth.Reason = "step_role"

func errStepRole(role string) error {
	return errs.E(errs.Forbidden, "this step is done by a %s", role).InField("status")
}

// moveStep moves a step and its task, rewrites its FHIR Task and writes its
// event.
func (s *Service) moveStep(ctx context.Context, tx store.Tx, w *workflowRow, st *stepRow, actor engine.Actor, up StepUpdate) error {
	now := s.clock()
	kind := EventStepStarted
	switch up.Status {
	case StepInProgress:
		if _, err := s.cfg.Engine.ClaimTaskTx(ctx, tx, st.TaskID, actor, 0); err != nil {
			return err
		}
		st.StartedAt, st.StartedBy = &now, actor.User
	default:
		if _, err := s.cfg.Engine.CompleteTaskTx(ctx, tx, st.TaskID, actor, string(up.Status), nil, 0); err != nil {
			return err
		}
		st.FinishedAt, st.FinishedBy, st.Reason = &now, actor.User, up.Reason
		kind = map[StepStatus]string{StepCompleted: EventStepCompleted, StepSkipped: EventStepSkipped, StepFailed: EventStepFailed}[up.Status]
		s.metrics.stepTime.WithLabelValues(st.Role, string(up.Status)).Observe(now.Sub(st.CreatedAt).Seconds())
	}
	st.Status, st.UpdatedAt = up.Status, now
	st.Version++
	w.UpdatedAt = now
	w.Version++
	if err := saveStep(ctx, tx, st); err != nil {
		return err
	}
	doc, err := stepTask(w, st)
	if err != nil {
		return err
	}
	if err := s.cfg.Records.UpdateTx(ctx, tx, runStep(w), "Task", st.FHIRTaskID, doc); err != nil {
		return err
	}
	s.metrics.steps.WithLabelValues(string(up.Status), st.Role).Inc()
	return writeEvent(ctx, tx, w, kind, st)
}

// closeIfDone completes a workflow whose steps have all ended and closes
// its run; otherwise it only saves the workflow's row.
func (s *Service) closeIfDone(ctx context.Context, tx store.Tx, w *workflowRow, steps []*stepRow) error {
	done := !slices.ContainsFunc(steps, func(st *stepRow) bool { return !st.Status.Final() })
	if done {
		now := w.UpdatedAt
		w.Status, w.CompletedAt = StatusCompleted, &now
	}
	if err := saveWorkflow(ctx, tx, w); err != nil {
		return err
	}
	if !done {
		return nil
	}
	if _, err := s.cfg.Engine.SendSignalTx(ctx, tx, w.ID, engine.Signal{ID: closedSignal, Name: closedSignal,
		Payload: map[string]string{"status": string(StatusCompleted)}}); err != nil {
		return err
	}
	s.metrics.finished.WithLabelValues(string(w.Type), string(StatusCompleted)).Inc()
	return writeEvent(ctx, tx, w, EventCompleted, nil)
}

// syncWorkflowTask rewrites the workflow's FHIR Task from its row.
func (s *Service) syncWorkflowTask(ctx context.Context, tx store.Tx, w *workflowRow, steps []*stepRow) error {
	started := slices.ContainsFunc(steps, func(st *stepRow) bool { return st.Status != StepPending })
	doc, err := workflowTask(w, started)
	if err != nil {
		return err
	}
	return s.cfg.Records.UpdateTx(ctx, tx, runStep(w), "Task", w.FHIRTaskID, doc)
}

// stepDue is how long after it is added a step is due.
func stepDue(sp StepSpec) time.Duration {
	if sp.DueMinutes <= 0 {
		return defaultStepDue
	}
	return time.Duration(sp.DueMinutes) * time.Minute
}

// Update changes a workflow's priority, provider, encounter or clinical
// text, or cancels it (status cancelled, with an optional reason code),
// given the version the caller read; a stale version is a conflict.
func (s *Service) Update(ctx context.Context, g Guard, id string, up UpdateRequest) (json.RawMessage, error) {
	defer s.metrics.time("update")()
	elements, err := checkUpdate(&up)
	if err != nil {
		return nil, err
	}
	var out json.RawMessage
	err = s.cfg.DB.Tx(ctx, func(tx store.Tx) error {
		w, d, err := s.lockAuthorized(ctx, tx, g, id, elements)
		if err != nil {
			return err
		}
		if w.Version != up.Version {
			return errs.E(errs.Conflict, "the workflow changed since it was read (version %d)", w.Version).InField("version")
		}
		if w.Status != StatusActive {
			return errs.E(errs.Conflict, "the workflow is %s and can no longer change", w.Status).InField("status")
		}
		steps, err := loadSteps(ctx, tx, w.ID)
		if err != nil {
			return err
		}
		before := contributionOf(w, steps)
		if err := s.apply(ctx, tx, w, steps, up); err != nil {
			return err
		}
		rollupChange(tx, &before, w, steps)
		out, err = s.render(ctx, g, d, w, steps)
		return err
	})
	return out, err
}

// checkUpdate checks an update and returns the fields it sets.
func checkUpdate(up *UpdateRequest) ([]string, error) {
	if up.Version <= 0 {
		return nil, errs.E(errs.Invalid, "is required: the workflow's version as read").InField("version")
	}
	var el []string
	if up.Priority != nil {
		if !up.Priority.valid() {
			return nil, errs.E(errs.Invalid, "must be one of %s", priorityNames).InField("priority")
		}
		el = append(el, "priority")
	}
	if up.Provider != nil {
		if _, err := reference("provider", "Practitioner", *up.Provider, true); err != nil {
			return nil, err
		}
		el = append(el, "provider")
	}
	if up.Encounter != nil {
		if _, err := reference("encounter", "Encounter", *up.Encounter, false); err != nil {
			return nil, err
		}
		el = append(el, "encounter")
	}
	if up.Status != nil {
		if !up.Status.valid() {
			return nil, errs.E(errs.Invalid, "must be one of %s", statusNames).InField("status")
		}
		if *up.Status != StatusCancelled {
			return nil, errs.E(errs.Invalid, "only cancelled: a workflow completes when its steps do").InField("status")
		}
		el = append(el, "status")
	}
	if up.Reason != nil {
		if up.Status == nil {
			return nil, errs.E(errs.Invalid, "only a cancellation has a reason").InField("reason")
		}
		if !codePattern.MatchString(*up.Reason) {
			return nil, errs.E(errs.Invalid, "must be a code: lower-case letters, digits and _").InField("reason")
		}
	}
	for _, f := range []struct {
		name  string
		v     *string
		limit int
	}{{"chief_complaint", up.ChiefComplaint, maxComplaint}, {"clinical_notes", up.ClinicalNotes, maxNotes}, {"working_diagnosis", up.WorkingDiagnosis, maxDiagnosis}} {
		if f.v == nil {
			continue
		}
		if err := checkText(f.name, *f.v, f.limit); err != nil {
			return nil, err
		}
		el = append(el, f.name)
	}
	if len(el) == 0 {
		return nil, errs.E(errs.Invalid, "names nothing to change")
	}
	return el, nil
}

// apply writes an update to a locked, active workflow.
func (s *Service) apply(ctx context.Context, tx store.Tx, w *workflowRow, steps []*stepRow, up UpdateRequest) error {
	if up.Priority != nil {
		w.Priority = *up.Priority
	}
	if up.Provider != nil {
		w.ProviderID = strings.TrimPrefix(*up.Provider, "Practitioner/")
	}
	if up.Encounter != nil {
		w.EncounterID = strings.TrimPrefix(*up.Encounter, "Encounter/")
	}
	provider, encounter := "", ""
	if up.Provider != nil {
		provider = w.ProviderID
	}
	if up.Encounter != nil {
		encounter = w.EncounterID
	}
	if err := s.checkRefs(ctx, tx, w.PatientID, provider, encounter); err != nil {
		return err
	}
	if up.ChiefComplaint != nil || up.ClinicalNotes != nil || up.WorkingDiagnosis != nil {
		text, err := s.open(ctx, w)
		if err != nil {
			return err
		}
		for _, f := range []struct {
			dst *string
			v   *string
		}{{&text.ChiefComplaint, up.ChiefComplaint}, {&text.ClinicalNotes, up.ClinicalNotes}, {&text.WorkingDiagnosis, up.WorkingDiagnosis}} {
			if f.v != nil {
				*f.dst = *f.v
			}
		}
		if w.Sealed, err = s.seal(w.ID, text); err != nil {
			return err
		}
	}
	now := s.clock()
	w.UpdatedAt = now
	w.Version++
	kind := EventUpdated
	if up.Status != nil {
		reason := "cancelled"
		if up.Reason != nil {
			reason = *up.Reason
		}
		if _, err := s.cfg.Engine.CancelTx(ctx, tx, w.ID, 0, reason); err != nil {
			return err
		}
		w.Status, w.CompletedAt = StatusCancelled, &now
		kind = EventCancelled
		s.metrics.finished.WithLabelValues(string(w.Type), string(StatusCancelled)).Inc()
	}
	if err := saveWorkflow(ctx, tx, w); err != nil {
		return err
	}
	// The FHIR view follows: the workflow's Task, and each step's when
	// what it shows of the workflow changed (priority, encounter, a
	// cancellation that ends the steps still open).
	if err := s.syncWorkflowTask(ctx, tx, w, steps); err != nil {
		return err
	}
	if up.Priority != nil || up.Encounter != nil || up.Status != nil {
		for _, st := range steps {
			if st.Status.Final() && up.Priority == nil && up.Encounter == nil {
				continue
			}
			doc, err := stepTask(w, st)
			if err != nil {
				return err
			}
			if err := s.cfg.Records.UpdateTx(ctx, tx, runStep(w), "Task", st.FHIRTaskID, doc); err != nil {
				return err
			}
		}
	}
	return writeEvent(ctx, tx, w, kind, nil)
}
