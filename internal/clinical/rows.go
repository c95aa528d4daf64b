package clinical

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// The tables, and the sealed column's name in its associated data.
const (
	tableWorkflows = "clinical_workflows"
	tableSteps     = "clinical_steps"
	columnPHI      = "phi"
)

// clinicalText is the sealed part of a workflow: its PHI.
type clinicalText struct {
	ChiefComplaint   string `json:"chief_complaint,omitempty"`
	ClinicalNotes    string `json:"clinical_notes,omitempty"`
	WorkingDiagnosis string `json:"working_diagnosis,omitempty"`
}

func (t clinicalText) empty() bool {
	return t.ChiefComplaint == "" && t.ClinicalNotes == "" && t.WorkingDiagnosis == ""
}

// workflowRow is a clinical_workflows row, its text still sealed.
type workflowRow struct {
	ID          string
	Type        WorkflowType
	Priority    Priority
	Status      Status
	PatientID   string
	ProviderID  string
	EncounterID string
	FHIRTaskID  string
	Sealed      []byte
	CreatedBy   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DueAt       *time.Time
	CompletedAt *time.Time
	Version     int
}

const workflowColumns = `id, type, priority, status, patient_id, provider_id, encounter_id, fhir_task_id, phi,
	created_by, created_at, updated_at, due_at, completed_at, version`

type scanner interface{ Scan(dest ...any) error }

func scanWorkflow(s scanner) (*workflowRow, error) {
	var (
		w         workflowRow
		encounter *string
	)
	if err := s.Scan(&w.ID, &w.Type, &w.Priority, &w.Status, &w.PatientID, &w.ProviderID, &encounter, &w.FHIRTaskID,
		&w.Sealed, &w.CreatedBy, &w.CreatedAt, &w.UpdatedAt, &w.DueAt, &w.CompletedAt, &w.Version); err != nil {
		return nil, err
	}
	if encounter != nil {
		w.EncounterID = *encounter
	}
	return &w, nil
}

// loadWorkflow reads a workflow; lock takes its row lock (a writer's
// first statement, so every writer of a workflow queues on it).
func loadWorkflow(ctx context.Context, q store.Querier, id string, lock bool) (*workflowRow, error) {
	if !idPattern.MatchString(id) {
		return nil, errs.E(errs.NotFound, "no such workflow")
	}
	query := `SELECT ` + workflowColumns + ` FROM clinical_workflows WHERE id = $1`
	if tx, ok := q.(store.Tx); ok && lock {
		query += tx.Dialect().ForUpdate()
	}
	w, err := scanWorkflow(q.QueryRow(ctx, query, id))
	if errors.Is(err, store.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "no such workflow")
	}
	return w, err
}

func insertWorkflow(ctx context.Context, tx store.Tx, w *workflowRow) error {
	_, err := tx.Exec(ctx, `INSERT INTO clinical_workflows (`+workflowColumns+`, priority_rank)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		w.ID, string(w.Type), string(w.Priority), string(w.Status), w.PatientID, w.ProviderID, store.NullIfEmpty(w.EncounterID), w.FHIRTaskID,
		w.Sealed, w.CreatedBy, w.CreatedAt, w.UpdatedAt, w.DueAt, w.CompletedAt, w.Version, w.Priority.rank())
	if err != nil {
		return fmt.Errorf("insert workflow: %w", err)
	}
	return nil
}

// saveWorkflow writes a locked workflow's mutable columns.
func saveWorkflow(ctx context.Context, tx store.Tx, w *workflowRow) error {
	_, err := tx.Exec(ctx, `UPDATE clinical_workflows SET priority = $1, priority_rank = $2, status = $3, provider_id = $4,
		encounter_id = $5, phi = $6, updated_at = $7, due_at = $8, completed_at = $9, version = $10 WHERE id = $11`,
		string(w.Priority), w.Priority.rank(), string(w.Status), w.ProviderID, store.NullIfEmpty(w.EncounterID), w.Sealed,
		w.UpdatedAt, w.DueAt, w.CompletedAt, w.Version, w.ID)
	if err != nil {
		return fmt.Errorf("save workflow: %w", err)
	}
	return nil
}

// stepRow is a clinical_steps row, with its task's escalation read beside
// it.
type stepRow struct {
	ID          string
	WorkflowID  string
	Seq         int
	Code        string
	Role        string
	Status      StepStatus
	TaskID      string
	FHIRTaskID  string
	DueAt       *time.Time
	StartedAt   *time.Time
	StartedBy   string
	FinishedAt  *time.Time
	FinishedBy  string
	Reason      string
	AddedBy     string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Version     int
	EscalatedAt *time.Time
}

const stepColumns = `s.id, s.workflow_id, s.seq, s.code, s.role, s.status, s.task_id, s.fhir_task_id, s.due_at, s.started_at,
	s.started_by, s.finished_at, s.finished_by, s.reason, s.added_by, s.created_at, s.updated_at, s.version, t.escalated_at`

const stepFrom = ` FROM clinical_steps s LEFT JOIN engine_tasks t ON t.id = s.task_id`

func scanStep(s scanner) (*stepRow, error) {
	var (
		st                         stepRow
		startedBy, finishedBy, why *string
	)
	if err := s.Scan(&st.ID, &st.WorkflowID, &st.Seq, &st.Code, &st.Role, &st.Status, &st.TaskID, &st.FHIRTaskID, &st.DueAt,
		&st.StartedAt, &startedBy, &st.FinishedAt, &finishedBy, &why, &st.AddedBy, &st.CreatedAt, &st.UpdatedAt,
		&st.Version, &st.EscalatedAt); err != nil {
		return nil, err
	}
	st.StartedBy, st.FinishedBy, st.Reason = deref(startedBy), deref(finishedBy), deref(why)
	return &st, nil
}

// loadSteps reads a workflow's steps in order.
func loadSteps(ctx context.Context, q store.Querier, workflowID string) ([]*stepRow, error) {
	rows, err := q.Query(ctx, `SELECT `+stepColumns+stepFrom+` WHERE s.workflow_id = $1 ORDER BY s.seq`, workflowID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*stepRow
	for rows.Next() {
		s, err := scanStep(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func insertStep(ctx context.Context, tx store.Tx, s *stepRow) error {
	_, err := tx.Exec(ctx, `INSERT INTO clinical_steps (id, workflow_id, seq, code, role, status, task_id, fhir_task_id, due_at,
		added_by, created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)`,
		s.ID, s.WorkflowID, s.Seq, s.Code, s.Role, string(s.Status), s.TaskID, s.FHIRTaskID, s.DueAt, s.AddedBy, s.CreatedAt, s.Version)
	if err != nil {
		return fmt.Errorf("insert step: %w", err)
	}
	return nil
}

func saveStep(ctx context.Context, tx store.Tx, s *stepRow) error {
	_, err := tx.Exec(ctx, `UPDATE clinical_steps SET status = $1, started_at = $2, started_by = $3, finished_at = $4,
		finished_by = $5, reason = $6, updated_at = $7, version = $8 WHERE id = $9`,
		string(s.Status), s.StartedAt, store.NullIfEmpty(s.StartedBy), s.FinishedAt, store.NullIfEmpty(s.FinishedBy), store.NullIfEmpty(s.Reason),
		s.UpdatedAt, s.Version, s.ID)
	if err != nil {
		return fmt.Errorf("save step: %w", err)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func workflowAAD(id string) phi.AAD {
	return phi.AAD{Table: tableWorkflows, Field: columnPHI, Record: id}
}

// seal seals a workflow's clinical text (nil when there is none).
func (s *Service) seal(id string, t clinicalText) ([]byte, error) {
	if t.empty() {
		return nil, nil
	}
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	return s.cfg.Ring.Seal(workflowAAD(id), b)
}

// open opens a workflow's clinical text.
func (s *Service) open(ctx context.Context, w *workflowRow) (clinicalText, error) {
	var t clinicalText
	if len(w.Sealed) == 0 {
		return t, nil
	}
	b, err := s.cfg.Ring.Open(ctx, workflowAAD(w.ID), w.Sealed)
	if err != nil {
		return t, fmt.Errorf("open workflow text: %w", err)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("decode workflow text: %w", err)
	}
	return t, nil
}

// RegisterColumns tells the re-encryptor about the module's sealed column,
// so a key rotation moves the workflows' text to the new key like the
// record's.
func RegisterColumns(reg *phi.Registry) error {
	return reg.Register(phi.EncryptedColumns{Table: tableWorkflows, Key: []phi.KeyColumn{{Name: "id", Kind: phi.KeyText}},
		Columns: []string{columnPHI},
		AAD:     func(key []any, _ string) phi.AAD { s, _ := key[0].(string); return workflowAAD(s) }})
}
