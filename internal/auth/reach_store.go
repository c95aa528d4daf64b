package auth

import (
	"context"
	"fmt"
	"time"
)

// The look-ups Reach makes, one query each, by the indexes of migration
// 0007 (care_team_members by user, access_assignments and
// break_glass_grants by user and patient) and 0010 (consents by purpose).

// RelatedPatients lists every patient userID reaches at a time, with how:
// the listing form of Relationships, with the same three rules.
func (r *Relationships) RelatedPatients(ctx context.Context, userID string, at time.Time) (map[string]Vias, error) {
	rows, err := r.db.Reader().Query(ctx, `
		SELECT p.patient_id, 1 FROM care_team_members m
			JOIN care_team_patients p ON p.care_team_id = m.care_team_id
			WHERE m.user_id = $1
		UNION ALL
		SELECT patient_id, 2 FROM access_assignments WHERE user_id = $1 AND ends_at > $2
		UNION ALL
		SELECT patient_id, 4 FROM break_glass_grants WHERE user_id = $1 AND expires_at > $2 AND opened_at <= $2`,
		userID, at.UTC())
	if err != nil {
		return nil, fmt.Errorf("related patients: %w", err)
	}
	defer rows.Close()
	out := map[string]Vias{}
	for rows.Next() {
		var patient string
		var bit int
		if err := rows.Scan(&patient, &bit); err != nil {
			return nil, fmt.Errorf("related patients: %w", err)
		}
		out[patient] |= Vias(bit)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("related patients: %w", err)
	}
	return out, nil
}

// ConsentsAmong returns, for those of patients that have one, the decision
// in force at a time for a purpose, as ConsentAt would answer each.
func (c *Consents) ConsentsAmong(ctx context.Context, purpose Purpose, patients []string, at time.Time) (map[string]ConsentDecision, error) {
	out := map[string]ConsentDecision{}
	if len(patients) == 0 {
		return out, nil
	}
	d := c.db.Dialect()
	rows, err := c.db.Reader().Query(ctx,
		`SELECT patient_id, decision, period_start, period_end FROM consents WHERE purpose = $1 AND `+d.InList("patient_id", "$2"),
		string(purpose), d.ListArg(patients))
	if err != nil {
		return nil, fmt.Errorf("read consents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var patient, decision string
		var start, end *time.Time
		if err := rows.Scan(&patient, &decision, &start, &end); err != nil {
			return nil, fmt.Errorf("read consents: %w", err)
		}
		if !inForce(start, end, at) {
			continue
		}
		switch ConsentDecision(decision) {
		case ConsentPermit, ConsentDeny:
			out[patient] = ConsentDecision(decision)
		default:
			return nil, fmt.Errorf("read consents: unknown decision in the database")
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read consents: %w", err)
	}
	return out, nil
}

// PatientsWithConsent lists the patients whose decision in force at a time
// for a purpose is d.
func (c *Consents) PatientsWithConsent(ctx context.Context, purpose Purpose, d ConsentDecision, at time.Time) ([]string, error) {
	rows, err := c.db.Reader().Query(ctx,
		`SELECT patient_id, period_start, period_end FROM consents WHERE purpose = $1 AND decision = $2`,
		string(purpose), string(d))
	if err != nil {
		return nil, fmt.Errorf("read consents: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var patient string
		var start, end *time.Time
		if err := rows.Scan(&patient, &start, &end); err != nil {
			return nil, fmt.Errorf("read consents: %w", err)
		}
		if inForce(start, end, at) {
			out = append(out, patient)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read consents: %w", err)
	}
	return out, nil
}

// inForce is ConsentAt's period rule: start <= at < end, open ends open.
func inForce(start, end *time.Time, at time.Time) bool {
	return !(start != nil && at.Before(*start) || end != nil && !at.Before(*end))
}
