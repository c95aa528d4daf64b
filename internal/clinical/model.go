package clinical

import (
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// WorkflowType is the kind of clinical work a workflow is.
type WorkflowType string

// The workflow types. Each but custom has a built-in template (templates.go).
const (
	TypeAdmission     WorkflowType = "admission"
	TypeConsultation  WorkflowType = "outpatient_consultation"
	TypeProcedure     WorkflowType = "procedure"
	TypeDischarge     WorkflowType = "discharge"
	TypeMedRec        WorkflowType = "medication_reconciliation"
	TypeCustom        WorkflowType = "custom"
	workflowTypeNames              = "admission, outpatient_consultation, procedure, discharge, medication_reconciliation, custom"
)

// Types lists the workflow types.
func Types() []WorkflowType {
	return []WorkflowType{TypeAdmission, TypeConsultation, TypeProcedure, TypeDischarge, TypeMedRec, TypeCustom}
}

// Priority says how urgent the work is; emergency work sorts first in
// every list, search and work queue.
type Priority string

// The priorities, most urgent first.
const (
	PriorityEmergency Priority = "emergency"
	PriorityUrgent    Priority = "urgent"
	PriorityRoutine   Priority = "routine"
	priorityNames              = "emergency, urgent, routine"
)

// rank orders priorities for sorting: emergency 0, urgent 1, routine 2.
func (p Priority) rank() int {
	switch p {
	case PriorityEmergency:
		return 0
	case PriorityUrgent:
		return 1
	default:
		return 2
	}
}

// priorityOfRank is the priority of a rank.
func priorityOfRank(r int64) Priority {
	switch r {
	case 0:
		return PriorityEmergency
	case 1:
		return PriorityUrgent
	default:
		return PriorityRoutine
	}
}

// dueFactor shortens a template's due times for more urgent work.
func (p Priority) dueFactor() float64 {
	switch p {
	case PriorityEmergency:
		return 0.25
	case PriorityUrgent:
		return 0.5
	default:
		return 1
	}
}

// fhirPriority is the FHIR request-priority code of the priority.
func (p Priority) fhirPriority() string {
	switch p {
	case PriorityEmergency:
		return "stat"
	case PriorityUrgent:
		return "urgent"
	default:
		return "routine"
	}
}

func (p Priority) valid() bool {
	return p == PriorityEmergency || p == PriorityUrgent || p == PriorityRoutine
}

// Status is a workflow's state: active until its steps are all finished
// (completed) or someone cancels it (cancelled); both are final.
type Status string

// The workflow states.
const (
	StatusActive    Status = "active"
	StatusCompleted Status = "completed"
	StatusCancelled Status = "cancelled"
	statusNames            = "active, completed, cancelled"
)

func (s Status) valid() bool {
	return s == StatusActive || s == StatusCompleted || s == StatusCancelled
}

// StepStatus is a step's state. A step moves pending -> in_progress ->
// completed | skipped | failed, or pending -> skipped; the last three are
// final (nextStepStatus).
type StepStatus string

// The step states.
const (
	StepPending    StepStatus = "pending"
	StepInProgress StepStatus = "in_progress"
	StepCompleted  StepStatus = "completed"
	StepSkipped    StepStatus = "skipped"
	StepFailed     StepStatus = "failed"
	stepStatusList            = "pending, in_progress, completed, skipped, failed"
)

// Final reports whether the step is done with.
func (s StepStatus) Final() bool {
	return s == StepCompleted || s == StepSkipped || s == StepFailed
}

func (s StepStatus) valid() bool {
	return s == StepPending || s == StepInProgress || s.Final()
}

// allowedMove reports whether a step may go from one state to another.
func allowedMove(from, to StepStatus) bool {
	switch from {
	case StepPending:
		return to == StepInProgress || to == StepSkipped
	case StepInProgress:
		return to == StepCompleted || to == StepSkipped || to == StepFailed
	}
	return false
}

// Roles that perform steps: the care roles of the access policy.
var stepRoles = []string{"nurse", "physician"}

// codePattern is a step's code and a skip or failure reason: a code, never
// free text, so no PHI reaches a plain column, a task title or an event.
var codePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// idPattern is an R4 resource id.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// Limits of the clinical text fields (bytes).
const (
	maxComplaint = 1000
	maxNotes     = 20000
	maxDiagnosis = 1000
	maxSteps     = 50
)

// Workflow is the JSON view of a workflow. The clinical text fields are
// PHI: stored sealed, shown only to roles whose policy fields include them.
type Workflow struct {
	ID        string       `json:"id"`
	Type      WorkflowType `json:"type"`
	Priority  Priority     `json:"priority"`
	Status    Status       `json:"status"`
	Patient   string       `json:"patient"`
	Provider  string       `json:"provider"`
	Encounter string       `json:"encounter,omitempty"`
	// FHIRTask is the workflow's FHIR Task ("Task/<id>"); each step has
	// its own, partOf this one.
	FHIRTask         string     `json:"fhir_task"`
	ChiefComplaint   string     `json:"chief_complaint,omitempty"`
	ClinicalNotes    string     `json:"clinical_notes,omitempty"`
	WorkingDiagnosis string     `json:"working_diagnosis,omitempty"`
	Steps            []Step     `json:"steps"`
	CreatedBy        string     `json:"created_by"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
	DueAt            *time.Time `json:"due_at,omitempty"`
	CompletedAt      *time.Time `json:"completed_at,omitempty"`
	Version          int        `json:"version"`
}

// Step is the JSON view of one step.
type Step struct {
	ID     string     `json:"id"`
	Seq    int        `json:"seq"`
	Code   string     `json:"code"`
	Title  string     `json:"title"`
	Role   string     `json:"role"`
	Status StepStatus `json:"status"`
	// Task is the step's engine task (GET /api/v1/workflows/tasks/{id}),
	// FHIRTask its FHIR Task.
	Task        string     `json:"task"`
	FHIRTask    string     `json:"fhir_task"`
	DueAt       *time.Time `json:"due_at,omitempty"`
	Overdue     bool       `json:"overdue,omitempty"`
	EscalatedAt *time.Time `json:"escalated_at,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	StartedBy   string     `json:"started_by,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	FinishedBy  string     `json:"finished_by,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	AddedBy     string     `json:"added_by"`
	Version     int        `json:"version"`
}

// StepSpec is a step to add: a code, the role that performs it, and how
// long after it is added it is due (minutes; 0: the default, 60).
type StepSpec struct {
	Code       string `json:"code"`
	Role       string `json:"role"`
	DueMinutes int    `json:"due_minutes,omitempty"`
}

// CreateRequest is POST /workflows. Patient, Provider and Encounter are
// references ("Patient/<id>", "Practitioner/<id>", "Encounter/<id>").
// Steps are a custom workflow's; other types take their template's and may
// add to them later.
type CreateRequest struct {
	Type             WorkflowType `json:"type"`
	Priority         Priority     `json:"priority"`
	Patient          string       `json:"patient"`
	Provider         string       `json:"provider"`
	Encounter        string       `json:"encounter,omitempty"`
	ChiefComplaint   string       `json:"chief_complaint,omitempty"`
	ClinicalNotes    string       `json:"clinical_notes,omitempty"`
	WorkingDiagnosis string       `json:"working_diagnosis,omitempty"`
	Steps            []StepSpec   `json:"steps,omitempty"`
}

// UpdateRequest is PUT /workflows/{id}: the fields to change (nil: keep),
// with the version the caller read. Status may only become cancelled (a
// workflow completes when its steps do).
type UpdateRequest struct {
	Version          int       `json:"version"`
	Priority         *Priority `json:"priority,omitempty"`
	Provider         *string   `json:"provider,omitempty"`
	Encounter        *string   `json:"encounter,omitempty"`
	Status           *Status   `json:"status,omitempty"`
	Reason           *string   `json:"reason,omitempty"`
	ChiefComplaint   *string   `json:"chief_complaint,omitempty"`
	ClinicalNotes    *string   `json:"clinical_notes,omitempty"`
	WorkingDiagnosis *string   `json:"working_diagnosis,omitempty"`
}

// StepUpdate is PUT /workflows/{id}/steps/{step_id}: the state to move the
// step to, with the step's version the caller read; Reason (a code) may
// say why a step was skipped or failed.
type StepUpdate struct {
	Status  StepStatus `json:"status"`
	Version int        `json:"version"`
	Reason  string     `json:"reason,omitempty"`
}

// reference checks "<Type>/<id>" and returns the id.
func reference(field, typ, ref string, required bool) (string, error) {
	if ref == "" {
		if required {
			return "", errs.E(errs.Invalid, "is required: a reference %s/<id>", typ).InField(field)
		}
		return "", nil
	}
	id, ok := strings.CutPrefix(ref, typ+"/")
	if !ok || !idPattern.MatchString(id) {
		return "", errs.E(errs.Invalid, "must be a reference %s/<id>", typ).InField(field)
	}
	return id, nil
}

// checkText bounds a clinical text field; the message never echoes it.
func checkText(field, v string, limit int) error {
	if len(v) > limit {
		return errs.E(errs.Invalid, "at most %d bytes", limit).InField(field)
	}
	return nil
}

// checkStepSpec checks a step to add; prefix places its fields in the
// request ("" for a step added alone, "steps[2]." in a create).
func checkStepSpec(prefix string, s StepSpec) error {
	if !codePattern.MatchString(s.Code) {
		return errs.E(errs.Invalid, "must be a code: lower-case letters, digits and _, starting with a letter").InField(prefix + "code")
	}
	if !slices.Contains(stepRoles, s.Role) {
		return errs.E(errs.Invalid, "must be one of nurse, physician").InField(prefix + "role")
	}
	if s.DueMinutes < 0 || s.DueMinutes > 30*24*60 {
		return errs.E(errs.Invalid, "must be 0-43200 (30 days)").InField(prefix + "due_minutes")
	}
	return nil
}
