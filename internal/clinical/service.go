package clinical

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

// ResourceType is the access policy's name for a clinical workflow.
const ResourceType = "ClinicalWorkflow"

// Engine is what the workflows need of the workflow engine
// (*engine.Engine): a run per workflow, whose attached tasks are the steps'
// human tasks, moved in the workflow's own transactions.
type Engine interface {
	StartRunTx(ctx context.Context, tx store.Tx, opts engine.StartOptions) (*engine.Run, bool, error)
	AttachTaskTx(ctx context.Context, tx store.Tx, runID, step string, spec engine.TaskSpec) (*engine.Task, error)
	ClaimTaskTx(ctx context.Context, tx store.Tx, id string, actor engine.Actor, expectVersion int64) (*engine.Task, error)
	CompleteTaskTx(ctx context.Context, tx store.Tx, id string, actor engine.Actor, decision string, result any, expectVersion int64) (*engine.Task, error)
	CancelTx(ctx context.Context, tx store.Tx, runID string, expectVersion int64, reason string) (*engine.Run, error)
	SendSignalTx(ctx context.Context, tx store.Tx, runID string, sig engine.Signal) (engine.SignalResult, error)
}

// Records writes the workflows' FHIR Tasks in the workflow's transaction,
// as the system acting for the workflow's run in its patient's record
// (access.RunRecords).
type Records interface {
	CreateTx(ctx context.Context, tx store.Tx, who access.RunStep, typ string, body []byte) (string, error)
	UpdateTx(ctx context.Context, tx store.Tx, who access.RunStep, typ, id string, body []byte) error
}

// Record is the FHIR record as the encounter routes use it, as the caller
// (*record.Service), and the plain look-up of which patient a record is
// of, to check the references a workflow names.
type Record interface {
	Create(ctx context.Context, g record.Guard, typ string, body []byte, ifNoneExist string) (record.Record, bool, error)
	Read(ctx context.Context, g record.Guard, typ, id string) (record.Record, error)
	ParseQuery(typ string, params url.Values) (*record.Query, error)
	Search(ctx context.Context, g record.Guard, q *record.Query) (*record.Result, error)
	PatientOf(ctx context.Context, q store.Querier, typ, id string) (patientID string, exists bool, err error)
}

// Guard is what the workflows need of the caller's access guard
// (*access.Guard): decisions on a ClinicalWorkflow, audited; the caller's
// reach for listings; the response filter; and the record guard the
// encounter routes read and write with.
type Guard interface {
	record.Guard
	Caller() access.Caller
	CheckType(ctx context.Context, req auth.Request) auth.Decision
	AuditDecision(ctx context.Context, a access.Action, d auth.Decision) error
	Authorize(ctx context.Context, a access.Action) (auth.Decision, error)
	AuthorizeRecord(ctx context.Context, a access.Action) (auth.Decision, error)
	AuthorizeRecordTx(ctx context.Context, tx store.Tx, a access.Action) (auth.Decision, error)
	Reach(ctx context.Context, typ string) (record.Reach, error)
	Recheck(ctx context.Context, purpose auth.Purpose, recs []access.Record) ([]json.RawMessage, error)
	Redact(d auth.Decision, doc []byte) ([]byte, error)
	Visible(ctx context.Context, recs []record.Record, action audit.Action) ([]json.RawMessage, []record.Record, error)
}

// Config wires a Service.
type Config struct {
	DB      *store.DB
	Engine  Engine
	Records Records
	Record  Record
	Ring    *phi.Ring
	// ExportKey keys the research export's pseudonymous patient keys
	// (32 bytes, kept apart from the data; see export.go).
	ExportKey []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the clinical workflows module.
type Service struct {
	cfg     Config
	now     func() time.Time
	metrics *metrics
	// rollupBuilt: the analytics rollup is known built (EnsureRollup).
	rollupBuilt atomic.Bool
}

// New returns a Service; Register must have put the workflow definition on
// the engine's registry.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Engine == nil || cfg.Records == nil || cfg.Record == nil || cfg.Ring == nil {
		return nil, fmt.Errorf("clinical: DB, Engine, Records, Record and Ring are required")
	}
	if len(cfg.ExportKey) != 0 && len(cfg.ExportKey) < 32 {
		return nil, fmt.Errorf("clinical: the export key must be at least 32 bytes")
	}
	s := &Service{cfg: cfg, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	s.metrics = newMetrics(s)
	return s, nil
}

// clock is the time a change is stamped with, to the microsecond: what
// PostgreSQL keeps, so a time read back is the time written, and the
// analytics rollup, which files a workflow by its times when it changes,
// takes away exactly what it added (a time rounded on the way in could
// cross a minute and leave a count behind).
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// actorOf is the engine actor of the caller: the person and the role they
// hold now. A caller without a principal (the system) works no step.
func actorOf(g Guard) (engine.Actor, error) {
	p := g.Caller().Principal
	if p == nil || p.Subject == "" {
		return engine.Actor{}, errs.E(errs.Forbidden, "only a person works a clinical step")
	}
	return engine.Actor{User: p.Subject, Roles: []string{string(p.Role)}}, nil
}

// runStep is who writes a workflow's FHIR Tasks: its run, in its patient's
// record.
func runStep(w *workflowRow) access.RunStep {
	return access.RunStep{RunID: w.ID, Step: "open", PatientID: w.PatientID}
}

// notFound answers a workflow the caller may not see as one that does not
// exist (the same words), so ids cannot be probed.
func notFound() error { return errs.E(errs.NotFound, "no such workflow") }

// hidden reports whether a denial is one a missing workflow must look like.
func hidden(d auth.Decision) bool {
	return d.Reason == auth.ReasonNotRelated || d.Reason == auth.ReasonPatientRequired
}

// authorize decides an access to a stored workflow, outside a transaction
// (reads). A workflow out of the caller's reach is answered as missing.
func (s *Service) authorize(ctx context.Context, g Guard, id string, action auth.Action) (*workflowRow, auth.Decision, error) {
	a := access.Action{Req: auth.Request{Action: action, ResourceType: ResourceType}, ResourceID: id}
	w, err := loadWorkflow(ctx, s.cfg.DB.Reader(), id, false)
	if errs.Is(err, errs.NotFound) {
		if d := g.CheckType(ctx, a.Req); !d.Allowed {
			_ = g.AuditDecision(ctx, a, d) // the refusal stands whether or not it was recorded
			return nil, d, access.DenialError(d)
		}
		return nil, auth.Decision{}, err
	}
	if err != nil {
		return nil, auth.Decision{}, err
	}
	a.Req.PatientID = w.PatientID
	d, err := g.AuthorizeRecord(ctx, a)
	if err != nil {
		if hidden(d) {
			return nil, d, notFound()
		}
		return nil, d, err
	}
	return w, d, nil
}

// lockAuthorized locks a workflow in tx and decides a write to it (the
// decision's entry commits with the write). elements are the fields the
// write sets.
func (s *Service) lockAuthorized(ctx context.Context, tx store.Tx, g Guard, id string, elements []string) (*workflowRow, auth.Decision, error) {
	a := access.Action{Req: auth.Request{Action: auth.ActionUpdate, ResourceType: ResourceType, Elements: elements}, ResourceID: id}
	w, err := loadWorkflow(ctx, tx, id, true)
	if errs.Is(err, errs.NotFound) {
		if d := g.CheckType(ctx, a.Req); !d.Allowed {
			_ = g.AuditDecision(ctx, a, d)
			return nil, d, access.DenialError(d)
		}
		return nil, auth.Decision{}, err
	}
	if err != nil {
		return nil, auth.Decision{}, err
	}
	a.Req.PatientID = w.PatientID
	d, err := g.AuthorizeRecordTx(ctx, tx, a)
	if err != nil {
		if hidden(d) {
			return nil, d, notFound()
		}
		return nil, d, err
	}
	return w, d, nil
}

// checkRefs checks the provider and encounter a workflow names: the
// provider a stored Practitioner, the encounter one of the patient's. A
// reference that does not hold is answered as missing, whatever the cause.
func (s *Service) checkRefs(ctx context.Context, q store.Querier, patientID, providerID, encounterID string) error {
	if providerID != "" {
		_, ok, err := s.cfg.Record.PatientOf(ctx, q, "Practitioner", providerID)
		if err != nil {
			return err
		}
		if !ok {
			return errs.E(errs.Unprocessable, "no such Practitioner").InField("provider")
		}
	}
	if encounterID != "" {
		p, ok, err := s.cfg.Record.PatientOf(ctx, q, "Encounter", encounterID)
		if err != nil {
			return err
		}
		if !ok || p != patientID {
			return errs.E(errs.Unprocessable, "no such Encounter of the workflow's patient").InField("encounter")
		}
	}
	return nil
}

// Get returns one workflow with its steps, redacted to the fields the
// caller's role may see.
func (s *Service) Get(ctx context.Context, g Guard, id string) (json.RawMessage, error) {
	defer s.metrics.time("get")()
	w, d, err := s.authorize(ctx, g, id, auth.ActionRead)
	if err != nil {
		return nil, err
	}
	steps, err := loadSteps(ctx, s.cfg.DB.Reader(), w.ID)
	if err != nil {
		return nil, err
	}
	return s.render(ctx, g, d, w, steps)
}

// render builds a workflow's view and redacts it with d.
func (s *Service) render(ctx context.Context, g Guard, d auth.Decision, w *workflowRow, steps []*stepRow) (json.RawMessage, error) {
	v, err := s.view(ctx, w, steps)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return g.Redact(d, b)
}

// view is the JSON view of a workflow (steps nil: a summary).
func (s *Service) view(ctx context.Context, w *workflowRow, steps []*stepRow) (*Workflow, error) {
	text, err := s.open(ctx, w)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	v := &Workflow{ID: w.ID, Type: w.Type, Priority: w.Priority, Status: w.Status, Patient: "Patient/" + w.PatientID,
		Provider: "Practitioner/" + w.ProviderID, FHIRTask: "Task/" + w.FHIRTaskID,
		ChiefComplaint: text.ChiefComplaint, ClinicalNotes: text.ClinicalNotes, WorkingDiagnosis: text.WorkingDiagnosis,
		CreatedBy: w.CreatedBy, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, DueAt: w.DueAt, CompletedAt: w.CompletedAt,
		Version: w.Version}
	if w.EncounterID != "" {
		v.Encounter = "Encounter/" + w.EncounterID
	}
	if steps != nil {
		v.Steps = make([]Step, 0, len(steps))
		for _, st := range steps {
			v.Steps = append(v.Steps, stepView(st, w.Status == StatusActive, now))
		}
	}
	return v, nil
}

func stepView(st *stepRow, active bool, now time.Time) Step {
	return Step{ID: st.ID, Seq: st.Seq, Code: st.Code, Title: titleOf(st.Code), Role: st.Role, Status: st.Status,
		Task: st.TaskID, FHIRTask: "Task/" + st.FHIRTaskID, DueAt: st.DueAt,
		Overdue:     active && !st.Status.Final() && st.DueAt != nil && st.DueAt.Before(now),
		EscalatedAt: st.EscalatedAt, StartedAt: st.StartedAt, StartedBy: st.StartedBy, FinishedAt: st.FinishedAt,
		FinishedBy: st.FinishedBy, Reason: st.Reason, AddedBy: st.AddedBy, Version: st.Version}
}

func newID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}
