package clinical

import (
	"encoding/json"
	"time"
)

// The FHIR view of the care team's work.
//
// Why Task and not CarePlan: a CarePlan states intended care (goals,
// activities, often for months) and has no owner, due date or execution
// period per activity; the work here is orders to people — who must do
// what by when, who did it and when — which is exactly R4's Task: status
// (ready, in-progress, completed, cancelled, failed), priority, owner,
// performerType, restriction.period (the due date), executionPeriod, and
// partOf to hang each step under its workflow. So a workflow is one Task
// and each of its steps a Task partOf it, all `for` the patient: a FHIR
// client reads and searches them at /fhir/R4/Task (for, part-of, status,
// owner, code...) under the same access policy as every patient record.
//
// The Tasks are written by the workflow's engine run (the system acting
// for the run, confined to its patient), in the transaction of the change
// they show, so the FHIR view never lags or leads the JSON API. They carry
// codes, references and times only; the clinical text stays in the
// workflow's sealed fields.
const (
	// SystemWorkflowID identifies a workflow Task by the workflow's id,
	// SystemStepID a step Task by the step's.
	SystemWorkflowID = "https://github.com/careflow/careflow/clinical-workflow"
	SystemStepID     = "https://github.com/careflow/careflow/clinical-workflow-step"
	// SystemWorkflowType codes Task.code of a workflow Task (the type),
	// SystemStepCode a step Task's (the step's code).
	SystemWorkflowType = "https://github.com/careflow/careflow/CodeSystem/clinical-workflow-type"
	SystemStepCode     = "https://github.com/careflow/careflow/CodeSystem/clinical-step"
	// SystemStepStatus codes Task.businessStatus: the step's own state,
	// finer than Task.status (skipped and cancelled are both "cancelled").
	SystemStepStatus = "https://github.com/careflow/careflow/CodeSystem/clinical-step-status"
	// SystemStepReason codes Task.statusReason of a skipped or failed step.
	SystemStepReason = "https://github.com/careflow/careflow/CodeSystem/clinical-step-reason"
	// SystemRole codes Task.performerType: the access policy's roles.
	SystemRole = "https://github.com/careflow/careflow/CodeSystem/role"
	// SystemUser names a careflow account in Reference.identifier (a
	// step Task's owner): the account's opaque id.
	SystemUser = "https://github.com/careflow/careflow/user"
)

type obj = map[string]any

func coding(system, code, display string) obj {
	c := obj{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return obj{"coding": []any{c}}
}

func fhirTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// typeTitle is the display of a workflow type.
func typeTitle(t WorkflowType) string {
	switch t {
	case TypeConsultation:
		return "Outpatient consultation"
	case TypeMedRec:
		return "Medication reconciliation"
	}
	return titleOf(string(t))
}

// workflowTaskStatus is the FHIR Task.status of a workflow: ready until a
// step has started, then in-progress; completed or cancelled at the end.
func workflowTaskStatus(w *workflowRow, started bool) string {
	switch w.Status {
	case StatusCompleted:
		return "completed"
	case StatusCancelled:
		return "cancelled"
	}
	if started {
		return "in-progress"
	}
	return "ready"
}

// workflowTask is the FHIR Task of a workflow.
func workflowTask(w *workflowRow, started bool) ([]byte, error) {
	t := obj{
		"resourceType": "Task",
		"identifier":   []any{obj{"system": SystemWorkflowID, "value": w.ID}},
		"status":       workflowTaskStatus(w, started),
		"intent":       "order",
		"priority":     w.Priority.fhirPriority(),
		"code":         coding(SystemWorkflowType, string(w.Type), typeTitle(w.Type)),
		"description":  typeTitle(w.Type),
		"for":          obj{"reference": "Patient/" + w.PatientID},
		"owner":        obj{"reference": "Practitioner/" + w.ProviderID},
		"authoredOn":   fhirTime(w.CreatedAt),
		"lastModified": fhirTime(w.UpdatedAt),
	}
	if w.FHIRTaskID != "" {
		t["id"] = w.FHIRTaskID
	}
	if w.EncounterID != "" {
		t["encounter"] = obj{"reference": "Encounter/" + w.EncounterID}
	}
	period := obj{}
	if started {
		period["start"] = fhirTime(w.CreatedAt)
	}
	if w.CompletedAt != nil {
		period["start"] = fhirTime(w.CreatedAt)
		period["end"] = fhirTime(*w.CompletedAt)
	}
	if len(period) > 0 {
		t["executionPeriod"] = period
	}
	if w.DueAt != nil {
		t["restriction"] = obj{"period": obj{"end": fhirTime(*w.DueAt)}}
	}
	return json.Marshal(t)
}

// stepTaskStatus is the FHIR Task.status of a step.
func stepTaskStatus(s StepStatus) string {
	switch s {
	case StepInProgress:
		return "in-progress"
	case StepCompleted:
		return "completed"
	case StepSkipped:
		return "cancelled"
	case StepFailed:
		return "failed"
	}
	return "ready"
}

// stepTask is the FHIR Task of a step, partOf its workflow's Task. A step
// of a cancelled workflow that never finished shows cancelled.
func stepTask(w *workflowRow, s *stepRow) ([]byte, error) {
	status := stepTaskStatus(s.Status)
	if w.Status == StatusCancelled && !s.Status.Final() {
		status = "cancelled"
	}
	title := titleOf(s.Code)
	t := obj{
		"resourceType":   "Task",
		"identifier":     []any{obj{"system": SystemStepID, "value": s.ID}},
		"partOf":         []any{obj{"reference": "Task/" + w.FHIRTaskID}},
		"status":         status,
		"businessStatus": coding(SystemStepStatus, string(s.Status), ""),
		"intent":         "order",
		"priority":       w.Priority.fhirPriority(),
		"code":           coding(SystemStepCode, s.Code, title),
		"description":    title,
		"for":            obj{"reference": "Patient/" + w.PatientID},
		"authoredOn":     fhirTime(s.CreatedAt),
		"lastModified":   fhirTime(s.UpdatedAt),
		"performerType":  []any{coding(SystemRole, s.Role, "")},
	}
	if s.FHIRTaskID != "" {
		t["id"] = s.FHIRTaskID
	}
	if w.EncounterID != "" {
		t["encounter"] = obj{"reference": "Encounter/" + w.EncounterID}
	}
	if s.Reason != "" {
		t["statusReason"] = coding(SystemStepReason, s.Reason, "")
	}
	if who := s.FinishedBy; who != "" || s.StartedBy != "" {
		if who == "" {
			who = s.StartedBy
		}
		t["owner"] = obj{"identifier": obj{"system": SystemUser, "value": who}}
	}
	period := obj{}
	if s.StartedAt != nil {
		period["start"] = fhirTime(*s.StartedAt)
	}
	if s.FinishedAt != nil {
		if s.StartedAt == nil {
			period["start"] = fhirTime(*s.FinishedAt)
		}
		period["end"] = fhirTime(*s.FinishedAt)
	}
	if len(period) > 0 {
		t["executionPeriod"] = period
	}
	if s.DueAt != nil {
		t["restriction"] = obj{"period": obj{"end": fhirTime(*s.DueAt)}}
	}
	return json.Marshal(t)
}
