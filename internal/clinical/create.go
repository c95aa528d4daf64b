package clinical

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
)

// Event kinds the workflows write (aggregate AggregateType, id = the
// workflow's). Payloads are ids, codes and states, never PHI.
const (
	AggregateType         = "ClinicalWorkflow"
	EventCreated          = "clinical.workflow.created"
	EventUpdated          = "clinical.workflow.updated"
	EventCompleted        = "clinical.workflow.completed"
	EventCancelled        = "clinical.workflow.cancelled"
	EventStepAdded        = "clinical.step.added"
	EventStepStarted      = "clinical.step.started"
	EventStepCompleted    = "clinical.step.completed"
	EventStepSkipped      = "clinical.step.skipped"
	EventStepFailed       = "clinical.step.failed"
	closedSignal          = "closed"
	workflowDefinitionRun = "open"
)

func writeEvent(ctx context.Context, tx store.Tx, w *workflowRow, kind string, st *stepRow) error {
	p := map[string]any{"workflow_id": w.ID, "type": w.Type, "priority": w.Priority, "status": w.Status, "patient_id": w.PatientID}
	if st != nil {
		p["step_id"], p["step"], p["role"], p["step_status"] = st.ID, st.Code, st.Role, st.Status
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = events.Write(ctx, tx, events.Event{AggregateType: AggregateType, AggregateID: w.ID, Kind: kind, OccurredAt: w.UpdatedAt, Payload: b})
	return err
}

// createElements are the fields a create sets, for the policy's field
// check: a role that may not see clinical text may not write it either.
func createElements(req *CreateRequest) []string {
	el := []string{"type", "priority", "patient", "provider", "steps"}
	if req.Encounter != "" {
		el = append(el, "encounter")
	}
	if req.ChiefComplaint != "" {
		el = append(el, "chief_complaint")
	}
	if req.ClinicalNotes != "" {
		el = append(el, "clinical_notes")
	}
	if req.WorkingDiagnosis != "" {
		el = append(el, "working_diagnosis")
	}
	return el
}

// checkCreate checks a create request and returns the ids it references.
func checkCreate(req *CreateRequest) (patient, provider, encounter string, err error) {
	switch req.Type {
	case "":
		return "", "", "", errs.E(errs.Invalid, "is required: one of %s", workflowTypeNames).InField("type")
	case TypeCustom:
		if len(req.Steps) == 0 {
			return "", "", "", errs.E(errs.Invalid, "a custom workflow names its steps").InField("steps")
		}
	default:
		if _, ok := templates[req.Type]; !ok {
			return "", "", "", errs.E(errs.Invalid, "must be one of %s", workflowTypeNames).InField("type")
		}
	}
	if req.Priority == "" {
		req.Priority = PriorityRoutine
	}
	if !req.Priority.valid() {
		return "", "", "", errs.E(errs.Invalid, "must be one of %s", priorityNames).InField("priority")
	}
	if patient, err = reference("patient", "Patient", req.Patient, true); err != nil {
		return
	}
	if provider, err = reference("provider", "Practitioner", req.Provider, true); err != nil {
		return
	}
	if encounter, err = reference("encounter", "Encounter", req.Encounter, false); err != nil {
		return
	}
	if err = checkText("chief_complaint", req.ChiefComplaint, maxComplaint); err != nil {
		return
	}
	if err = checkText("clinical_notes", req.ClinicalNotes, maxNotes); err != nil {
		return
	}
	if err = checkText("working_diagnosis", req.WorkingDiagnosis, maxDiagnosis); err != nil {
		return
	}
	if len(req.Steps) > maxSteps {
		return "", "", "", errs.E(errs.Invalid, "at most %d steps", maxSteps).InField("steps")
	}
	for i, st := range req.Steps {
		if err = checkStepSpec("steps["+strconv.Itoa(i)+"].", st); err != nil {
			return
		}
	}
	return patient, provider, encounter, nil
}

// CreateOptions are a create's options beyond its body.
type CreateOptions struct {
	// IdempotencyKey makes the create repeatable: a second create with the
	// same key returns the first workflow (created false).
	IdempotencyKey string
}

// Create starts a workflow: its row, its run, its template's (or the
// request's) steps with their human tasks, its FHIR Tasks and its created
// event, in one transaction with the decision's audit entry.
func (s *Service) Create(ctx context.Context, g Guard, req CreateRequest, opts CreateOptions) (json.RawMessage, bool, error) {
	defer s.metrics.time("create")()
	if len(opts.IdempotencyKey) > 200 {
		return nil, false, errs.E(errs.Invalid, "at most 200 characters").InField("Idempotency-Key")
	}
	patientID, providerID, encounterID, err := checkCreate(&req)
	if err != nil {
		return nil, false, err
	}
	actor := g.Caller().Principal
	if actor == nil {
		return nil, false, errs.E(errs.Forbidden, "only a person or a client starts a clinical workflow")
	}
	var (
		out     json.RawMessage
		created bool
	)
	err = s.cfg.DB.Tx(ctx, func(tx store.Tx) error {
		// A patient that does not exist and one out of reach get the same
		// answer, so a create cannot probe patient ids.
		if _, ok, err := s.cfg.Record.PatientOf(ctx, tx, "Patient", patientID); err != nil {
			return err
		} else if !ok {
			if d := g.CheckType(ctx, auth.Request{Action: auth.ActionCreate, ResourceType: ResourceType}); !d.Allowed {
				_ = g.AuditDecision(ctx, access.Action{Req: auth.Request{Action: auth.ActionCreate, ResourceType: ResourceType}}, d)
				return access.DenialError(d)
			}
			return errs.E(errs.Unprocessable, "no such Patient").InField("patient")
		}
		d, err := g.AuthorizeRecordTx(ctx, tx, access.Action{Req: auth.Request{Action: auth.ActionCreate, ResourceType: ResourceType,
			PatientID: patientID, Elements: createElements(&req)}})
		if err != nil {
			if hidden(d) {
				return errs.E(errs.Unprocessable, "no such Patient").InField("patient")
			}
			return err
		}
		if err := s.checkRefs(ctx, tx, patientID, providerID, encounterID); err != nil {
			return err
		}
		startKey := ""
		if opts.IdempotencyKey != "" {
			startKey = actor.Subject + ":" + opts.IdempotencyKey
		}
		run, isNew, err := s.cfg.Engine.StartRunTx(ctx, tx, engine.StartOptions{Definition: WorkflowDefinition, PatientID: patientID,
			Input: map[string]string{"type": string(req.Type)}, StartKey: startKey})
		if err != nil {
			return err
		}
		if !isNew {
			w, err := loadWorkflow(ctx, tx, run.ID, false)
			if err != nil {
				return err
			}
			steps, err := loadSteps(ctx, tx, w.ID)
			if err != nil {
				return err
			}
			out, err = s.render(ctx, g, d, w, steps)
			return err
		}
		now := s.clock()
		w := &workflowRow{ID: run.ID, Type: req.Type, Priority: req.Priority, Status: StatusActive, PatientID: patientID,
			ProviderID: providerID, EncounterID: encounterID, CreatedBy: actor.Subject, CreatedAt: now, UpdatedAt: now, Version: 1}
		if w.Sealed, err = s.seal(w.ID, clinicalText{ChiefComplaint: req.ChiefComplaint, ClinicalNotes: req.ClinicalNotes,
			WorkingDiagnosis: req.WorkingDiagnosis}); err != nil {
			return err
		}
		// The template's steps come first, then any the request adds.
		var specs []StepSpec
		for _, t := range templates[req.Type] {
			specs = append(specs, StepSpec{Code: t.Code, Role: t.Role, DueMinutes: int(dueIn(t.Due, req.Priority) / time.Minute)})
		}
		specs = append(specs, req.Steps...)
		for _, sp := range specs {
			if due := now.Add(stepDue(sp)); w.DueAt == nil || due.After(*w.DueAt) {
				w.DueAt = &due
			}
		}
		doc, err := workflowTask(w, false)
		if err != nil {
			return err
		}
		if w.FHIRTaskID, err = s.cfg.Records.CreateTx(ctx, tx, runStep(w), "Task", doc); err != nil {
			return err
		}
		if err := insertWorkflow(ctx, tx, w); err != nil {
			return err
		}
		if err := writeEvent(ctx, tx, w, EventCreated, nil); err != nil {
			return err
		}
		steps := make([]*stepRow, 0, len(specs))
		for i, sp := range specs {
			st, err := s.addStep(ctx, tx, w, i+1, sp, actor.Subject, now)
			if err != nil {
				return err
			}
			steps = append(steps, st)
		}
		rollupChange(tx, nil, w, steps)
		s.metrics.created.WithLabelValues(string(w.Type), string(w.Priority)).Inc()
		created = true
		out, err = s.render(ctx, g, d, w, steps)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return out, created, nil
}

// addStep adds a step to a locked, active workflow: its human task on the
// workflow's run (due, escalated when overdue to the whole role's list),
// its FHIR Task, its row and its event.
func (s *Service) addStep(ctx context.Context, tx store.Tx, w *workflowRow, seq int, sp StepSpec, by string, now time.Time) (*stepRow, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	dueAfter := stepDue(sp)
	due := now.Add(dueAfter)
	task, err := s.cfg.Engine.AttachTaskTx(ctx, tx, w.ID, "step-"+strconv.Itoa(seq), engine.TaskSpec{
		Title: titleOf(sp.Code), Role: sp.Role,
		Decisions: []string{string(StepCompleted), string(StepSkipped), string(StepFailed)},
		Due:       dueAfter,
		// An overdue step is released from whoever started it and put
		// back, flagged, on its role's whole list: the work stays the
		// role's.
		EscalateAfter: dueAfter, EscalateTo: sp.Role,
	})
	if err != nil {
		return nil, err
	}
	st := &stepRow{ID: id, WorkflowID: w.ID, Seq: seq, Code: sp.Code, Role: sp.Role, Status: StepPending, TaskID: task.ID,
		DueAt: &due, AddedBy: by, CreatedAt: now, UpdatedAt: now, Version: 1}
	doc, err := stepTask(w, st)
	if err != nil {
		return nil, err
	}
	if st.FHIRTaskID, err = s.cfg.Records.CreateTx(ctx, tx, runStep(w), "Task", doc); err != nil {
		return nil, err
	}
	if err := insertStep(ctx, tx, st); err != nil {
		return nil, err
	}
	return st, writeEvent(ctx, tx, w, EventStepAdded, st)
}
