package clinical

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Filter selects workflows; empty fields select all. Patient and Provider
// are references ("Patient/<id>", "Practitioner/<id>") or bare ids.
type Filter struct {
	Patient, Provider string
	Status            Status
	Type              WorkflowType
	Priority          Priority
	// CreatedFrom/CreatedTo and DueFrom/DueTo bound the creation and due
	// times (from inclusive, to exclusive); zero is unbounded.
	CreatedFrom, CreatedTo time.Time
	DueFrom, DueTo         time.Time
	// Cursor is a page's NextCursor; Limit is 1-200 (0: 50).
	Cursor string
	Limit  int
}

// Page is one page of workflows (summaries, without steps), emergency
// first, then newest first.
type Page struct {
	Workflows  []json.RawMessage `json:"workflows"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// check validates a filter in place (references become ids).
func (f *Filter) check() error {
	var err error
	if f.Patient, err = idOrRef("patient", "Patient", f.Patient); err != nil {
		return err
	}
	if f.Provider, err = idOrRef("provider", "Practitioner", f.Provider); err != nil {
		return err
	}
	if f.Status != "" && !f.Status.valid() {
		return errs.E(errs.Invalid, "must be one of %s", statusNames).InField("status")
	}
	if f.Type != "" {
		if _, ok := templates[f.Type]; !ok && f.Type != TypeCustom {
			return errs.E(errs.Invalid, "must be one of %s", workflowTypeNames).InField("type")
		}
	}
	if f.Priority != "" && !f.Priority.valid() {
		return errs.E(errs.Invalid, "must be one of %s", priorityNames).InField("priority")
	}
	switch {
	case f.Limit == 0:
		f.Limit = 50
	case f.Limit < 0 || f.Limit > 200:
		return errs.E(errs.Invalid, "must be 1-200").InField("limit")
	}
	return nil
}

// idOrRef accepts "<Type>/<id>" or a bare id.
func idOrRef(field, typ, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if id, ok := strings.CutPrefix(v, typ+"/"); ok {
		v = id
	}
	if !idPattern.MatchString(v) {
		return "", errs.E(errs.Invalid, "must be a reference %s/<id> or an id", typ).InField(field)
	}
	return v, nil
}

// query is a confined, filtered SELECT over clinical_workflows being built.
type query struct {
	args  []any
	where []string
}

func (q *query) bind(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

func (q *query) sql() string {
	if len(q.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(q.where, " AND ")
}

// confined starts a query over the workflows the caller may reach: the
// search is decided (and audited) first, then confined in SQL, so a page
// or a count never includes a workflow out of reach.
func (s *Service) confined(ctx context.Context, g Guard, f *Filter, alias string) (*query, auth.Decision, error) {
	reach, d, err := s.searchReach(ctx, g, f)
	if err != nil {
		return nil, d, err
	}
	q := &query{}
	if c := s.cfg.DB.Dialect().ReachCondition(alias+"patient_id", reach, &q.args); c != "" {
		q.where = append(q.where, "("+c+")")
	}
	for _, c := range []struct{ col, v string }{{"patient_id", f.Patient}, {"provider_id", f.Provider}, {"status", string(f.Status)},
		{"type", string(f.Type)}} {
		if c.v != "" {
			q.where = append(q.where, alias+c.col+" = "+q.bind(c.v))
		}
	}
	if f.Priority != "" {
		// By its rank: the list indexes hold the rank in list order, so a
		// filter on it is a seek, not a walk over the other priorities.
		q.where = append(q.where, alias+"priority_rank = "+q.bind(f.Priority.rank()))
	}
	for _, c := range []struct {
		col string
		op  string
		v   time.Time
	}{{"created_at", ">=", f.CreatedFrom}, {"created_at", "<", f.CreatedTo}, {"due_at", ">=", f.DueFrom}, {"due_at", "<", f.DueTo}} {
		if !c.v.IsZero() {
			q.where = append(q.where, alias+c.col+" "+c.op+" "+q.bind(c.v.UTC()))
		}
	}
	return q, d, nil
}

// searchReach checks a filter, decides (and audits) the search, and gives
// the caller's reach: the patients whose workflows the search may return.
func (s *Service) searchReach(ctx context.Context, g Guard, f *Filter) (store.Reach, auth.Decision, error) {
	if err := f.check(); err != nil {
		return store.Reach{}, auth.Decision{}, err
	}
	d, err := g.Authorize(ctx, access.Action{Req: auth.Request{Action: auth.ActionSearch, ResourceType: ResourceType, PatientID: f.Patient}})
	if err != nil {
		return store.Reach{}, d, err
	}
	reach, err := g.Reach(ctx, ResourceType)
	if err != nil {
		return store.Reach{}, d, err
	}
	return store.Reach(reach), d, nil
}

// List lists the workflows the caller may see, emergency first, newest
// first within a priority, each redacted to the fields the caller's role
// may see.
func (s *Service) List(ctx context.Context, g Guard, f Filter) (Page, error) {
	defer s.metrics.time("list")()
	q, d, err := s.confined(ctx, g, &f, "")
	if err != nil {
		return Page{}, err
	}
	if f.Cursor != "" {
		rank, at, id, err := parseCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		r, t, i := q.bind(rank), q.bind(at), q.bind(id)
		q.where = append(q.where, fmt.Sprintf("(priority_rank > %s OR (priority_rank = %s AND (created_at < %s OR (created_at = %s AND id < %s))))",
			r, r, t, t, i))
	}
	from := " FROM clinical_workflows"
	if s.cfg.DB.Dialect() == store.SQLite && (!f.DueFrom.IsZero() || !f.DueTo.IsZero()) && f.Patient == "" {
		// SQLite plans without statistics: told nothing, it walks every
		// workflow of the caller's patients for a due range, where the
		// due index holds the range with its patients and list order.
		from += " INDEXED BY clinical_workflows_due"
	}
	rows, err := s.cfg.DB.Reader().Query(ctx, `SELECT `+workflowColumns+from+q.sql()+
		` ORDER BY priority_rank, created_at DESC, id DESC LIMIT `+strconv.Itoa(f.Limit+1), s.cfg.DB.Dialect().PlanEach(q.args)...)
	if err != nil {
		return Page{}, err
	}
	var found []*workflowRow
	for rows.Next() {
		w, err := scanWorkflow(rows)
		if err != nil {
			rows.Close()
			return Page{}, err
		}
		found = append(found, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Page{}, err
	}
	page := Page{Workflows: []json.RawMessage{}}
	if len(found) > f.Limit {
		last := found[f.Limit-1]
		page.NextCursor = cursorOf(last)
		found = found[:f.Limit]
	}
	recs := make([]access.Record, 0, len(found))
	for _, w := range found {
		v, err := s.view(ctx, w, nil)
		if err != nil {
			return Page{}, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return Page{}, err
		}
		recs = append(recs, access.Record{ResourceType: ResourceType, ResourceID: w.ID, PatientID: w.PatientID, JSON: b})
	}
	// The response filter decides each again and redacts it to its fields.
	bodies, err := g.Recheck(ctx, d.Purpose, recs)
	if err != nil {
		return Page{}, err
	}
	for _, b := range bodies {
		if b != nil {
			page.Workflows = append(page.Workflows, b)
		}
	}
	return page, nil
}

// cursorOf is the cursor after w: its rank, creation time and id.
func cursorOf(w *workflowRow) string {
	return strconv.Itoa(w.Priority.rank()) + "~" + w.CreatedAt.UTC().Format(time.RFC3339Nano) + "~" + w.ID
}

func parseCursor(c string) (int, time.Time, string, error) {
	bad := errs.E(errs.Invalid, "is not a cursor this server gave").InField("cursor")
	parts := strings.Split(c, "~")
	if len(parts) != 3 {
		return 0, time.Time{}, "", bad
	}
	rank, err := strconv.Atoi(parts[0])
	if err != nil || rank < 0 || rank > 2 {
		return 0, time.Time{}, "", bad
	}
	t, err := time.Parse(time.RFC3339Nano, parts[1])
	if err != nil || !idPattern.MatchString(parts[2]) {
		return 0, time.Time{}, "", bad
	}
	return rank, t, parts[2], nil
}
