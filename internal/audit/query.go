package audit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Paging limits for List.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Filter selects entries for List. Zero fields do not filter; set fields
// must all match.
type Filter struct {
	// Since and Until bound the entry time: Since <= Time < Until.
	Since, Until time.Time
	Actor        string
	PatientID    string
	ResourceType string
	ResourceID   string
	Action       Action
	Outcome      Outcome
	Severity     Severity
	RequestID    string

	// Newest lists in descending sequence order (the default is ascending).
	Newest bool
	// After continues a listing: only entries after this sequence number
	// in the listing's order (pass the previous Page's Next).
	After *int64
	// Limit is the page size: DefaultListLimit when zero, at most
	// MaxListLimit.
	Limit int
}

// Page is one page of a listing.
type Page struct {
	Entries []Entry `json:"entries"`
	// Next is the cursor for the following page (Filter.After), nil on the
	// last page.
	Next *int64 `json:"next,omitempty"`
}

// List returns the entries that match f, a page at a time, in sequence
// order. Paging is by keyset on the sequence number, so a page costs the
// same however deep it is and entries appended meanwhile never shift it.
// It reads from db alone, so the API handler needs no Log.
func List(ctx context.Context, db *store.DB, f Filter) (Page, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = DefaultListLimit
	case limit < 0 || limit > MaxListLimit:
		return Page{}, errs.E(errs.Invalid, "must be between 1 and %d", MaxListLimit).InField("limit")
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if !f.Since.IsZero() {
		add("occurred_at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("occurred_at < ?", f.Until.UTC())
	}
	for _, c := range []struct{ col, v string }{
		{"actor", f.Actor}, {"patient_id", f.PatientID}, {"resource_type", f.ResourceType},
		{"resource_id", f.ResourceID}, {"action", string(f.Action)}, {"outcome", string(f.Outcome)},
		{"request_id", f.RequestID},
	} {
		if c.v != "" {
			add(c.col+" = ?", c.v)
		}
	}
	switch f.Severity {
	case "":
	case SeverityInfo, SeverityWarning, SeverityHigh:
		// A literal, not a parameter: only a literal lets the planners use
		// the partial index on high-severity entries. The value is one of
		// three constants, never caller text.
		where = append(where, "severity = '"+string(f.Severity)+"'")
	default:
		return Page{}, errs.E(errs.Invalid, "must be info, warning or high").InField("severity")
	}
	order := "ASC"
	if f.Newest {
		order = "DESC"
	}
	if f.After != nil {
		if f.Newest {
			add("seq < ?", *f.After)
		} else {
			add("seq > ?", *f.After)
		}
	}
	q := `SELECT ` + entryColumns + ` FROM audit_entries`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit+1)
	q += ` ORDER BY seq ` + order + ` LIMIT $` + strconv.Itoa(len(args))
	rows, err := db.Reader().Query(ctx, q, args...)
	if err != nil {
		return Page{}, fmt.Errorf("audit: list entries: %w", err)
	}
	defer rows.Close()
	var p Page
	p.Entries = make([]Entry, 0, min(limit, 64))
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return Page{}, fmt.Errorf("audit: list entries: %w", err)
		}
		p.Entries = append(p.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("audit: list entries: %w", err)
	}
	if len(p.Entries) > limit {
		p.Entries = p.Entries[:limit]
		next := p.Entries[limit-1].Seq
		p.Next = &next
	}
	return p, nil
}

// Get returns the entry at seq.
func Get(ctx context.Context, db *store.DB, seq int64) (Entry, error) {
	e, err := scanEntry(db.Reader().QueryRow(ctx, `SELECT `+entryColumns+` FROM audit_entries WHERE seq = $1`, seq))
	if err == store.ErrNoRows {
		return Entry{}, errs.E(errs.NotFound, "no audit entry %d", seq)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("audit: read entry %d: %w", seq, err)
	}
	return e, nil
}

func scanEntry(r interface{ Scan(...any) error }) (Entry, error) {
	var e Entry
	var action, outcome, severity string
	err := r.Scan(&e.Seq, &e.Time, &e.Actor, &e.Role, &action, &e.ResourceType, &e.ResourceID,
		&e.PatientID, &e.Purpose, &outcome, &severity, &e.RequestID, &e.ClientAddr)
	e.Action, e.Outcome, e.Severity = Action(action), Outcome(outcome), Severity(severity)
	e.Time = e.Time.UTC()
	return e, err
}

// Checkpoints lists the stored checkpoints, oldest first (not verified:
// that is Verify's job).
func Checkpoints(ctx context.Context, db *store.DB) ([]Checkpoint, error) {
	rows, err := db.Reader().Query(ctx, `SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints ORDER BY tree_size`)
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		var root []byte
		if err := rows.Scan(&c.Size, &root, &c.Note, &c.Time); err != nil {
			return nil, fmt.Errorf("audit: read checkpoints: %w", err)
		}
		c.Root = hashString(root)
		c.Time = c.Time.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
