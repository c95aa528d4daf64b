package auth

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Break-the-glass: a clinician declares an emergency and gets one patient's
// record for a limited time, outside their care teams. The grant is a row
// that the relationship check reads (so it works on every node at once and
// ends by itself at expires_at); whoever opens it writes the high-severity
// audit entry in the same transaction (Open takes a callback for that,
// because this package does not depend on the audit log), so a grant
// never exists without its audit record. Grants are never deleted: they
// are the review list.
//
// The reason is a code from the policy's list, not free text: a typed
// reason invites clinical detail, which would put PHI in a table and a
// review screen that were meant to hold none.

// Grant is one break-the-glass grant.
type Grant struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Role      Role      `json:"role"`
	PatientID string    `json:"patient_id"`
	Reason    string    `json:"reason"`
	OpenedAt  time.Time `json:"opened_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RequestID string    `json:"request_id,omitempty"`
	// AuditSeq is the sequence number of the grant's audit entry.
	AuditSeq *int64 `json:"audit_seq,omitempty"`
}

// Active reports whether the grant is in force at t.
func (g Grant) Active(t time.Time) bool { return !t.Before(g.OpenedAt) && t.Before(g.ExpiresAt) }

// BreakGlassRequest asks for a grant.
type BreakGlassRequest struct {
	Principal *Principal
	PatientID string
	Reason    string
	// Minutes is the grant's length; zero means the policy default.
	Minutes   int
	RequestID string
}

// BreakGlass stores break-the-glass grants.
type BreakGlass struct {
	db     *store.DB
	policy *Policy
	now    func() time.Time
}

// NewBreakGlass returns the grant store of db under a policy. now defaults
// to time.Now.
func NewBreakGlass(db *store.DB, p *Policy, now func() time.Time) *BreakGlass {
	if now == nil {
		now = time.Now
	}
	return &BreakGlass{db: db, policy: p, now: now}
}

// Validate checks a request against the policy's reasons and limits, and
// returns the grant's length. It does not decide whether the principal may
// break the glass: that is the Authorizer's break_glass action.
func (b *BreakGlass) Validate(req BreakGlassRequest) (time.Duration, error) {
	bg := b.policy.breakGlass
	if req.Principal == nil || !ValidUserID(req.Principal.Subject) {
		return 0, errs.E(errs.Unauthenticated, "break-the-glass needs an authenticated user")
	}
	if !ValidPatientID(req.PatientID) {
		return 0, errs.E(errs.Invalid, "must be a patient id").InField("id")
	}
	if !slices.Contains(bg.Reasons, req.Reason) {
		return 0, errs.E(errs.Invalid, "must be one of %s", strings.Join(bg.Reasons, ", ")).InField("reason")
	}
	minutes := req.Minutes
	if minutes == 0 {
		minutes = bg.DefaultMinutes
	}
	if minutes < 1 || minutes > bg.MaxMinutes {
		return 0, errs.E(errs.Invalid, "must be between 1 and %d", bg.MaxMinutes).InField("minutes")
	}
	return time.Duration(minutes) * time.Minute, nil
}

// Open records a grant and, in the same transaction, calls record (which
// writes the audit entry and returns its sequence number). If record fails
// nothing is stored.
func (b *BreakGlass) Open(ctx context.Context, req BreakGlassRequest, record func(ctx context.Context, tx store.Tx, g Grant) (int64, error)) (Grant, error) {
	length, err := b.Validate(req)
	if err != nil {
		return Grant{}, err
	}
	if record == nil {
		return Grant{}, errs.E(errs.Unavailable, "break-the-glass is unavailable without the audit log")
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Grant{}, fmt.Errorf("grant id: %w", err)
	}
	now := b.now().UTC().Truncate(time.Microsecond)
	g := Grant{
		ID: id.String(), UserID: req.Principal.Subject, Role: req.Principal.Role,
		PatientID: req.PatientID, Reason: req.Reason,
		OpenedAt: now, ExpiresAt: now.Add(length), RequestID: req.RequestID,
	}
	err = b.db.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO break_glass_grants (id, user_id, role, patient_id, reason, opened_at, expires_at, request_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			g.ID, g.UserID, string(g.Role), g.PatientID, g.Reason, g.OpenedAt, g.ExpiresAt, g.RequestID)
		if err != nil {
			return fmt.Errorf("record break-the-glass grant: %w", err)
		}
		seq, err := record(ctx, tx, g)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE break_glass_grants SET audit_seq = $2 WHERE id = $1`, g.ID, seq); err != nil {
			return fmt.Errorf("record break-the-glass grant: %w", err)
		}
		g.AuditSeq = &seq
		return nil
	})
	if err != nil {
		return Grant{}, err
	}
	return g, nil
}

// GrantFilter selects grants for review. Zero fields do not filter.
type GrantFilter struct {
	// Since and Until bound the opening time: Since <= OpenedAt < Until.
	Since, Until time.Time
	UserID       string
	PatientID    string
	// ActiveAt, when set, keeps grants in force at that time.
	ActiveAt time.Time
	// Limit is the page size (default 100, at most 1000).
	Limit int
	// After continues a listing from the previous page's Next.
	After string
}

// GrantPage is one page of grants, newest first.
type GrantPage struct {
	Grants []Grant `json:"grants"`
	// Next is the cursor for the following page, empty on the last.
	Next string `json:"next,omitempty"`
}

// List returns grants for review, newest first. The cursor is the last
// grant's id: ids are UUIDv7, so they order as the opening times do.
func (b *BreakGlass) List(ctx context.Context, f GrantFilter) (GrantPage, error) {
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > 1000 {
		return GrantPage{}, errs.E(errs.Invalid, "must be between 1 and 1000").InField("limit")
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if !f.Since.IsZero() {
		add("opened_at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("opened_at < ?", f.Until.UTC())
	}
	if f.UserID != "" {
		add("user_id = ?", f.UserID)
	}
	if f.PatientID != "" {
		add("patient_id = ?", f.PatientID)
	}
	if !f.ActiveAt.IsZero() {
		add("opened_at <= ?", f.ActiveAt.UTC())
		add("expires_at > ?", f.ActiveAt.UTC())
	}
	if f.After != "" {
		add("id < ?", f.After)
	}
	q := `SELECT id, user_id, role, patient_id, reason, opened_at, expires_at, request_id, audit_seq FROM break_glass_grants`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit+1)
	q += " ORDER BY id DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := b.db.Reader().Query(ctx, q, args...)
	if err != nil {
		return GrantPage{}, fmt.Errorf("list break-the-glass grants: %w", err)
	}
	defer rows.Close()
	page := GrantPage{Grants: []Grant{}}
	for rows.Next() {
		var g Grant
		var role string
		if err := rows.Scan(&g.ID, &g.UserID, &role, &g.PatientID, &g.Reason, &g.OpenedAt, &g.ExpiresAt, &g.RequestID, &g.AuditSeq); err != nil {
			return GrantPage{}, fmt.Errorf("list break-the-glass grants: %w", err)
		}
		g.Role = Role(role)
		page.Grants = append(page.Grants, g)
	}
	if err := rows.Err(); err != nil {
		return GrantPage{}, fmt.Errorf("list break-the-glass grants: %w", err)
	}
	if len(page.Grants) > limit {
		page.Grants = page.Grants[:limit]
		page.Next = page.Grants[limit-1].ID
	}
	return page, nil
}
