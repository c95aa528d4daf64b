package auth

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
)

// Care teams bound clinicians to their patients: a user reaches a patient
// in the compartment when some care team has both as members. Workflows
// add narrower, time-limited reach with Assign. Both live in the database
// so that every node decides alike.

// CareTeam is a named group of users and the patients they care for.
type CareTeam struct {
	ID        string           `json:"id"`
	Name      string           `json:"name"`
	Version   int              `json:"version"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
	Members   []CareTeamMember `json:"members"`
	Patients  []string         `json:"patients"`
}

// CareTeamMember is a user in a care team.
type CareTeamMember struct {
	UserID string `json:"user_id"`
	// Role is the member's function in the team (attending, nurse, ...);
	// informational only: permissions come from the account's role.
	Role    string    `json:"role"`
	AddedAt time.Time `json:"added_at"`
}

// CareTeamSummary is a care team without its member and patient lists.
type CareTeamSummary struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Version      int       `json:"version"`
	MemberCount  int       `json:"member_count"`
	PatientCount int       `json:"patient_count"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// CareTeams manages care teams and assignments.
type CareTeams struct {
	db  *store.DB
	now func() time.Time
}

// NewCareTeams returns the care-team store of db. now defaults to time.Now.
func NewCareTeams(db *store.DB, now func() time.Time) *CareTeams {
	if now == nil {
		now = time.Now
	}
	return &CareTeams{db: db, now: now}
}

func (c *CareTeams) stamp() time.Time { return c.now().UTC().Truncate(time.Microsecond) }

// maxTeamName bounds a care team's name.
const maxTeamName = 100

// Create makes a care team. Names are unique.
func (c *CareTeams) Create(ctx context.Context, name string) (CareTeam, error) {
	name = strings.TrimSpace(name)
	if err := checkTeamName(name); err != nil {
		return CareTeam{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return CareTeam{}, fmt.Errorf("care team id: %w", err)
	}
	now := c.stamp()
	_, err = c.db.Writer().Exec(ctx,
		`INSERT INTO care_teams (id, name, row_version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)`,
		id.String(), name, now)
	if store.IsUniqueViolation(err) {
		return CareTeam{}, errs.E(errs.Conflict, "a care team with this name exists").InField("name")
	}
	if err != nil {
		return CareTeam{}, fmt.Errorf("create care team: %w", err)
	}
	return CareTeam{ID: id.String(), Name: name, Version: 1, CreatedAt: now, UpdatedAt: now,
		Members: []CareTeamMember{}, Patients: []string{}}, nil
}

func checkTeamName(name string) error {
	if name == "" {
		return errs.E(errs.Invalid, "is required").InField("name")
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxTeamName {
		return errs.E(errs.Invalid, "must be at most %d characters of text", maxTeamName).InField("name")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return errs.E(errs.Invalid, "must not contain control characters").InField("name")
		}
	}
	// Team names are chosen from lists by people: a bidi override or an
	// invisible character would let one team's name pass for another's
	// (the same rule as for names in the record; see fhir.DisguisingRune).
	if r, ok := fhir.DisguisingRune(name); ok {
		return errs.E(errs.Invalid, "must not contain U+%04X: bidi controls and invisible characters are refused in names", r).InField("name")
	}
	return nil
}

// List returns every care team, by name.
func (c *CareTeams) List(ctx context.Context) ([]CareTeamSummary, error) {
	rows, err := c.db.Reader().Query(ctx, `
		SELECT t.id, t.name, t.row_version, t.updated_at,
			(SELECT count(*) FROM care_team_members m WHERE m.care_team_id = t.id),
			(SELECT count(*) FROM care_team_patients p WHERE p.care_team_id = t.id)
		FROM care_teams t ORDER BY t.name, t.id`)
	if err != nil {
		return nil, fmt.Errorf("list care teams: %w", err)
	}
	defer rows.Close()
	out := []CareTeamSummary{}
	for rows.Next() {
		var s CareTeamSummary
		if err := rows.Scan(&s.ID, &s.Name, &s.Version, &s.UpdatedAt, &s.MemberCount, &s.PatientCount); err != nil {
			return nil, fmt.Errorf("list care teams: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Get returns a care team with its members and patients.
func (c *CareTeams) Get(ctx context.Context, id string) (CareTeam, error) {
	q := c.db.Reader()
	var t CareTeam
	err := q.QueryRow(ctx, `SELECT id, name, row_version, created_at, updated_at FROM care_teams WHERE id = $1`, id).
		Scan(&t.ID, &t.Name, &t.Version, &t.CreatedAt, &t.UpdatedAt)
	if err == store.ErrNoRows {
		return CareTeam{}, errs.E(errs.NotFound, "no such care team")
	}
	if err != nil {
		return CareTeam{}, fmt.Errorf("read care team: %w", err)
	}
	t.Members = []CareTeamMember{}
	t.Patients = []string{}
	rows, err := q.Query(ctx, `SELECT user_id, member_role, added_at FROM care_team_members WHERE care_team_id = $1 ORDER BY user_id`, id)
	if err != nil {
		return CareTeam{}, fmt.Errorf("read care team members: %w", err)
	}
	for rows.Next() {
		var m CareTeamMember
		if err := rows.Scan(&m.UserID, &m.Role, &m.AddedAt); err != nil {
			rows.Close()
			return CareTeam{}, fmt.Errorf("read care team members: %w", err)
		}
		t.Members = append(t.Members, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return CareTeam{}, fmt.Errorf("read care team members: %w", err)
	}
	rows, err = q.Query(ctx, `SELECT patient_id FROM care_team_patients WHERE care_team_id = $1 ORDER BY patient_id`, id)
	if err != nil {
		return CareTeam{}, fmt.Errorf("read care team patients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return CareTeam{}, fmt.Errorf("read care team patients: %w", err)
		}
		t.Patients = append(t.Patients, p)
	}
	return t, rows.Err()
}

// touch bumps a team's version inside tx, and reports NotFound for a team
// that does not exist.
func (c *CareTeams) touch(ctx context.Context, tx store.Tx, teamID string, now time.Time) error {
	n, err := tx.Exec(ctx, `UPDATE care_teams SET row_version = row_version + 1, updated_at = $2 WHERE id = $1`, teamID, now)
	if err != nil {
		return fmt.Errorf("update care team: %w", err)
	}
	if n == 0 {
		return errs.E(errs.NotFound, "no such care team")
	}
	return nil
}

// AddMember puts a user in a team (or changes their team role). It is
// idempotent.
func (c *CareTeams) AddMember(ctx context.Context, teamID, userID, role string) error {
	if !ValidUserID(userID) {
		return errs.E(errs.Invalid, "must be a user id").InField("user_id")
	}
	if !isCode(role) {
		return errs.E(errs.Invalid, "must be a code of lower-case letters, digits and _ (e.g. attending)").InField("role")
	}
	now := c.stamp()
	return c.db.Tx(ctx, func(tx store.Tx) error {
		if err := c.touch(ctx, tx, teamID, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO care_team_members (care_team_id, user_id, member_role, added_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (care_team_id, user_id) DO UPDATE SET member_role = excluded.member_role`,
			teamID, userID, role, now)
		if err != nil {
			return fmt.Errorf("add care team member: %w", err)
		}
		return nil
	})
}

// RemoveMember takes a user out of a team. Removing a non-member is not an
// error.
func (c *CareTeams) RemoveMember(ctx context.Context, teamID, userID string) error {
	now := c.stamp()
	return c.db.Tx(ctx, func(tx store.Tx) error {
		if err := c.touch(ctx, tx, teamID, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM care_team_members WHERE care_team_id = $1 AND user_id = $2`, teamID, userID); err != nil {
			return fmt.Errorf("remove care team member: %w", err)
		}
		return nil
	})
}

// AddPatient puts a patient in a team's care. It is idempotent.
func (c *CareTeams) AddPatient(ctx context.Context, teamID, patientID string) error {
	if !ValidPatientID(patientID) {
		return errs.E(errs.Invalid, "must be a patient id (1-64 letters, digits, - and .)").InField("patient_id")
	}
	now := c.stamp()
	return c.db.Tx(ctx, func(tx store.Tx) error {
		if err := c.touch(ctx, tx, teamID, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO care_team_patients (care_team_id, patient_id, added_at) VALUES ($1, $2, $3)
			ON CONFLICT (care_team_id, patient_id) DO NOTHING`, teamID, patientID, now)
		if err != nil {
			return fmt.Errorf("add care team patient: %w", err)
		}
		return nil
	})
}

// RemovePatient ends a team's care of a patient.
func (c *CareTeams) RemovePatient(ctx context.Context, teamID, patientID string) error {
	now := c.stamp()
	return c.db.Tx(ctx, func(tx store.Tx) error {
		if err := c.touch(ctx, tx, teamID, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM care_team_patients WHERE care_team_id = $1 AND patient_id = $2`, teamID, patientID); err != nil {
			return fmt.Errorf("remove care team patient: %w", err)
		}
		return nil
	})
}

// Assign lets a user reach a patient until a time, because a workflow gave
// them the patient's work item. Assigning again replaces the end; an end in
// the past withdraws the assignment.
func (c *CareTeams) Assign(ctx context.Context, userID, patientID string, until time.Time) error {
	if !ValidUserID(userID) {
		return errs.E(errs.Invalid, "must be a user id").InField("user_id")
	}
	if !ValidPatientID(patientID) {
		return errs.E(errs.Invalid, "must be a patient id").InField("patient_id")
	}
	if until.IsZero() {
		return errs.E(errs.Invalid, "an assignment needs an end").InField("until")
	}
	now := c.stamp()
	_, err := c.db.Writer().Exec(ctx, `
		INSERT INTO access_assignments (user_id, patient_id, ends_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (user_id, patient_id) DO UPDATE SET ends_at = excluded.ends_at, updated_at = excluded.updated_at`,
		userID, patientID, until.UTC().Truncate(time.Microsecond), now)
	if err != nil {
		return fmt.Errorf("assign: %w", err)
	}
	return nil
}

// Assignment is a user's time-limited reach to one patient's record.
type Assignment struct {
	UserID    string    `json:"user_id"`
	PatientID string    `json:"patient_id"`
	Until     time.Time `json:"until"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Unassign withdraws a user's assignment to a patient. Withdrawing one that
// does not exist is not an error.
func (c *CareTeams) Unassign(ctx context.Context, userID, patientID string) error {
	if _, err := c.db.Writer().Exec(ctx, `DELETE FROM access_assignments WHERE user_id = $1 AND patient_id = $2`, userID, patientID); err != nil {
		return fmt.Errorf("unassign: %w", err)
	}
	return nil
}

// Assignments lists the assignments to a patient still in force, soonest
// end first.
func (c *CareTeams) Assignments(ctx context.Context, patientID string) ([]Assignment, error) {
	rows, err := c.db.Reader().Query(ctx, `SELECT user_id, patient_id, ends_at, updated_at FROM access_assignments
		WHERE patient_id = $1 AND ends_at > $2 ORDER BY ends_at, user_id`, patientID, c.stamp())
	if err != nil {
		return nil, fmt.Errorf("list assignments: %w", err)
	}
	defer rows.Close()
	out := []Assignment{}
	for rows.Next() {
		var a Assignment
		if err := rows.Scan(&a.UserID, &a.PatientID, &a.Until, &a.UpdatedAt); err != nil {
			return nil, fmt.Errorf("list assignments: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Relationships is the RelationshipSource backed by the database: care
// teams, assignments and break-the-glass grants, in one query.
type Relationships struct {
	db *store.DB
}

// NewRelationships returns the relationship checker of db.
func NewRelationships(db *store.DB) *Relationships { return &Relationships{db: db} }

// Relationships reports how userID reaches patientID at a time.
func (r *Relationships) Relationships(ctx context.Context, userID, patientID string, at time.Time) (Vias, error) {
	return relationships(ctx, r.db.Reader(), userID, patientID, at)
}

// RelationshipsTx is Relationships read through tx
// (TxRelationshipSource): it takes no second connection.
func (r *Relationships) RelationshipsTx(ctx context.Context, tx store.Tx, userID, patientID string, at time.Time) (Vias, error) {
	return relationships(ctx, tx, userID, patientID, at)
}

func relationships(ctx context.Context, q store.Querier, userID, patientID string, at time.Time) (Vias, error) {
	rows, err := q.Query(ctx, `
		SELECT 1 FROM care_team_members m
			JOIN care_team_patients p ON p.care_team_id = m.care_team_id
			WHERE m.user_id = $1 AND p.patient_id = $2
		UNION ALL
		SELECT 2 FROM access_assignments WHERE user_id = $1 AND patient_id = $2 AND ends_at > $3
		UNION ALL
		SELECT 4 FROM break_glass_grants WHERE user_id = $1 AND patient_id = $2 AND expires_at > $3 AND opened_at <= $3`,
		userID, patientID, at.UTC())
	if err != nil {
		return 0, fmt.Errorf("relationships: %w", err)
	}
	defer rows.Close()
	var v Vias
	for rows.Next() {
		var bit int
		if err := rows.Scan(&bit); err != nil {
			return 0, fmt.Errorf("relationships: %w", err)
		}
		v |= Vias(bit)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("relationships: %w", err)
	}
	return v, nil
}

// ValidPatientID accepts a FHIR id: 1 to 64 letters, digits, '-' and '.'.
func ValidPatientID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ValidUserID accepts an opaque user or client id: 1 to 128 printable ASCII
// characters without spaces (UUIDs, OIDC subjects).
func ValidUserID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
