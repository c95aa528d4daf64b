package rcm

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Journey is the JSON view of a journey: ids, codes, amounts and times,
// never demographics (the FHIR references lead to those, through /fhir).
type Journey struct {
	ID         string            `json:"id"`
	Kind       string            `json:"kind"`
	Status     string            `json:"status"`
	Outcome    string            `json:"outcome,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	Patient    string            `json:"patient"`
	Payer      string            `json:"payer"`
	Currency   string            `json:"currency"`
	Amounts    Amounts           `json:"amounts"`
	Steps      []StepView        `json:"steps"`
	References map[string]string `json:"references"`
	AppealOf   string            `json:"appeal_of,omitempty"`
	BatchID    string            `json:"batch_id,omitempty"`
	NeedsInfo  bool              `json:"needs_information,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
	// LastPayerContact is when a payer last answered this journey.
	LastPayerContact *time.Time `json:"last_payer_contact,omitempty"`
}

// Amounts are decimal strings in the journey's currency; empty until known.
type Amounts struct {
	Billed   string `json:"billed"`
	Approved string `json:"approved,omitempty"`
	Paid     string `json:"paid,omitempty"`
	// PatientShare is the part of the bill the payer's adjudication
	// leaves to the patient (co-pay, co-insurance, deductible).
	PatientShare string `json:"patient_share,omitempty"`
	// Variance is what the payer owed and did not pay (see the package
	// doc's payment rule); "0.00" when paid as owed.
	Variance string `json:"variance,omitempty"`
}

// StepView is one step execution of the journey's run.
type StepView struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Error      string     `json:"error,omitempty"`
}

func optMinor(v *int64, cur string) string {
	if v == nil {
		return ""
	}
	return FormatAmount(*v, cur)
}

func (s *Service) view(ctx context.Context, row *journeyRow) (*Journey, error) {
	j := summary(row)
	steps, err := s.cfg.Engine.Steps(ctx, row.ID)
	if err != nil {
		return nil, err
	}
	for _, x := range steps {
		fin := x.FinishedAt
		j.Steps = append(j.Steps, StepView{Name: x.Step, Status: x.Status, StartedAt: x.StartedAt, FinishedAt: &fin, Error: x.Error})
	}
	run, err := s.cfg.Engine.GetRun(ctx, row.ID)
	if err != nil {
		return nil, err
	}
	if run.CurrentStep != "" && !run.Status.Final() {
		j.Steps = append(j.Steps, StepView{Name: run.CurrentStep, Status: string(run.Status), StartedAt: run.UpdatedAt, Error: run.Error})
	}
	return j, nil
}

func summary(row *journeyRow) *Journey {
	j := &Journey{ID: row.ID, Kind: row.Kind, Status: row.Status, Outcome: row.Outcome, Reason: row.Reason,
		Patient: row.PatientID, Payer: row.Payer, Currency: row.Currency, AppealOf: row.AppealOf, BatchID: row.BatchID,
		NeedsInfo: row.Needs != "", CreatedAt: row.StartedAt, UpdatedAt: row.UpdatedAt, LastPayerContact: row.LastContact,
		References: row.Refs, Steps: []StepView{},
		Amounts: Amounts{Billed: FormatAmount(row.Billed, row.Currency), Approved: optMinor(row.Approved, row.Currency),
			Paid: optMinor(row.Paid, row.Currency), Variance: optMinor(row.Variance, row.Currency),
			PatientShare: optMinor(row.PatientShare, row.Currency)}}
	return j
}

// JourneyFilter selects journeys. Empty fields select all.
type JourneyFilter struct {
	Status, Outcome, Payer, Patient, BatchID string
	// MinAge and MaxAge bound how long ago the journey started.
	MinAge, MaxAge time.Duration
	// Cursor is a page's NextCursor; Limit is 1-200 (0: 50).
	Cursor string
	Limit  int
}

// JourneyPage is one page of journeys (summaries: no steps).
type JourneyPage struct {
	Journeys   []*Journey `json:"journeys"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// Journeys lists the journeys the caller may see, newest first, confined in
// SQL to the caller's reach.
func (s *Service) Journeys(ctx context.Context, g Guard, f JourneyFilter) (JourneyPage, error) {
	return s.list(ctx, g, f, nil)
}

// list lists journeys; extra, when set, adds a condition (binding its
// arguments with bind).
func (s *Service) list(ctx context.Context, g Guard, f JourneyFilter, extra func(bind func(any) string) string) (JourneyPage, error) {
	if _, err := g.Authorize(ctx, access.Action{Req: auth.Request{Action: auth.ActionSearch, ResourceType: JourneyType, PatientID: f.Patient}}); err != nil {
		return JourneyPage{}, err
	}
	reach, err := g.Reach(ctx, JourneyType)
	if err != nil {
		return JourneyPage{}, err
	}
	limit := f.Limit
	switch {
	case limit == 0:
		limit = 50
	case limit < 0 || limit > 200:
		return JourneyPage{}, errs.E(errs.Invalid, "must be 1-200").InField("limit")
	}
	d := s.cfg.DB.Dialect()
	var (
		args  []any
		where []string
	)
	bind := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if c := d.ReachCondition("patient_id", store.Reach(reach), &args); c != "" {
		where = append(where, "("+c+")")
	}
	for _, c := range []struct{ col, v string }{{"status", f.Status}, {"outcome", f.Outcome}, {"payer", f.Payer}, {"patient_id", f.Patient}, {"batch_id", f.BatchID}} {
		if c.v != "" {
			where = append(where, c.col+" = "+bind(c.v))
		}
	}
	now := s.now()
	if f.MinAge > 0 {
		where = append(where, "started_at <= "+bind(now.Add(-f.MinAge)))
	}
	if f.MaxAge > 0 {
		where = append(where, "started_at >= "+bind(now.Add(-f.MaxAge)))
	}
	if extra != nil {
		where = append(where, extra(bind))
	}
	if f.Cursor != "" {
		at, id, ok := strings.Cut(f.Cursor, "~")
		t, err := time.Parse(time.RFC3339Nano, at)
		if !ok || err != nil {
			return JourneyPage{}, errs.E(errs.Invalid, "is not a cursor this server gave").InField("cursor")
		}
		where = append(where, fmt.Sprintf("(started_at < %s OR (started_at = %s AND id < %s))", bind(t), bind(t), bind(id)))
	}
	q := `SELECT ` + journeyColumns + ` FROM rcm_journeys`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY started_at DESC, id DESC LIMIT " + strconv.Itoa(limit+1)
	rows, err := s.cfg.DB.Reader().Query(ctx, q, args...)
	if err != nil {
		return JourneyPage{}, err
	}
	defer rows.Close()
	page := JourneyPage{Journeys: []*Journey{}}
	for rows.Next() {
		row, err := scanJourney(rows)
		if err != nil {
			return JourneyPage{}, err
		}
		if len(page.Journeys) == limit {
			last := page.Journeys[limit-1]
			page.NextCursor = last.CreatedAt.UTC().Format(time.RFC3339Nano) + "~" + last.ID
			break
		}
		page.Journeys = append(page.Journeys, summary(row))
	}
	return page, rows.Err()
}

// The worklist's queues.
const (
	QueueDenied       = "denied"
	QueueShortPaid    = "short_paid"
	QueueWaiting      = "waiting"
	QueueNeedsInfo    = "needs_information"
	QueueInvalidCodes = "invalid_codes"
	QueueAttention    = "attention" // every journey stopped with a work item
)

// WorklistFilter selects a queue of journeys needing billing's work.
type WorklistFilter struct {
	Queue string
	// WaitingLonger: for QueueWaiting, no payer contact for this long (0: 7 days).
	WaitingLonger time.Duration
	Payer         string
	Cursor        string
	Limit         int
}

// WorklistPage is one page of a worklist queue.
type WorklistPage = JourneyPage

// Worklist lists the journeys of one queue the caller may see.
func (s *Service) Worklist(ctx context.Context, g Guard, f WorklistFilter) (WorklistPage, error) {
	jf := JourneyFilter{Payer: f.Payer, Cursor: f.Cursor, Limit: f.Limit}
	fixed := func(cond string) func(func(any) string) string {
		return func(func(any) string) string { return cond }
	}
	var extra func(bind func(any) string) string
	switch f.Queue {
	case QueueDenied:
		extra = fixed("outcome = 'denied'")
	case QueueShortPaid:
		extra = fixed("outcome = 'partially_paid'")
	case QueueInvalidCodes:
		extra = fixed("outcome = 'invalid_codes'")
	case QueueNeedsInfo:
		extra = fixed("status = 'active' AND needs IS NOT NULL")
	case QueueAttention:
		extra = fixed("status = 'attention'")
	case QueueWaiting:
		d := f.WaitingLonger
		if d <= 0 {
			d = 7 * 24 * time.Hour
		}
		// Submitted, unpaid, and no word from the payer for d (counted
		// from the start when the payer never answered).
		cut := s.now().Add(-d)
		extra = func(bind func(any) string) string {
			return "status = 'active' AND claim_id IS NOT NULL AND paid IS NULL AND " +
				"((last_contact_at IS NULL AND started_at <= " + bind(cut) + ") OR last_contact_at <= " + bind(cut) + ")"
		}
	default:
		return WorklistPage{}, errs.E(errs.Invalid, "must be denied, short_paid, waiting, needs_information, invalid_codes or attention").InField("queue")
	}
	return s.list(ctx, g, jf, extra)
}
