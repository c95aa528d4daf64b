package rcm

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Fees holds the payers' settings (rcm_payers) and their fee schedules
// (rcm_fee_schedules, rcm_fee_items), and implements FeeSchedule.
//
// Invariants:
//   - A load is one transaction: a file with any bad row loads nothing, and
//     a load that fails half-way leaves the schedules as they were.
//   - Versions are never replaced or deleted. A code is priced, on a date of
//     service, by the newest load (the highest seq) that has a row for it
//     effective on that date; an older version keeps pricing the dates a
//     newer one does not cover.
//   - Amounts are integers in the currency's minor units, parsed from the
//     file's decimals without floating point.
type Fees struct {
	db  *store.DB
	now func() time.Time
}

var _ FeeSchedule = (*Fees)(nil)

// NewFees returns the fee schedules stored in db; now is the clock (nil:
// time.Now).
func NewFees(db *store.DB, now func() time.Time) *Fees {
	if now == nil {
		now = time.Now
	}
	return &Fees{db: db, now: now}
}

// FeeLoad says what a load is.
type FeeLoad struct {
	// Payer is the payer's HCX participant code.
	Payer string
	// Version names the schedule; empty names it by the file's content
	// (sha256- and the first 16 hex digits of its SHA-256).
	Version string
	// Currency sets the payer's currency (ISO 4217); empty keeps it (EGP
	// for a payer careflow did not know).
	Currency string
	// Name sets the payer's display name; empty keeps it.
	Name string
}

// ScheduleVersion is one loaded version of a payer's schedule.
type ScheduleVersion struct {
	Payer       string `json:"-"`
	Version     string `json:"version"`
	Seq         int64  `json:"seq"`
	ContentHash string `json:"content_hash"`
	Items       int    `json:"items"`
	// EffectiveFrom and EffectiveTo span the rows' periods (YYYY-MM-DD);
	// EffectiveTo is empty when some row is open-ended.
	EffectiveFrom string    `json:"effective_from"`
	EffectiveTo   string    `json:"effective_to,omitempty"`
	LoadedAt      time.Time `json:"loaded_at"`
}

// PayerSettings is what careflow keeps of a payer beyond the registry.
type PayerSettings struct {
	Code     string
	Name     string
	Currency string
}

// Load reads a fee schedule file (the format is described in
// fees_load.go) and stores it as a new version of the payer's schedule,
// with the payer's settings, in one transaction. Loading the same content
// under a version already loaded changes nothing and returns that version
// with loaded false; other content under a taken version is a conflict.
// A refused file is an errs.Invalid wrapping a *FeeFileError that lists
// every problem.
func (f *Fees) Load(ctx context.Context, r io.Reader, l FeeLoad) (ScheduleVersion, bool, error) {
	if !payerCode.MatchString(l.Payer) {
		return ScheduleVersion{}, false, errs.E(errs.Invalid, "must be a payer's participant code (letters, digits and @ . _ : -, up to 100)").InField("payer")
	}
	if l.Version != "" && !scheduleVersion.MatchString(l.Version) {
		return ScheduleVersion{}, false, errs.E(errs.Invalid, "must be 1-64 letters, digits and . _ : + -, starting with a letter or digit").InField("version")
	}
	if l.Currency != "" {
		c, err := ParseCurrency(l.Currency)
		if err != nil {
			return ScheduleVersion{}, false, errs.E(errs.Invalid, "must be an ISO 4217 currency code such as EGP").InField("currency")
		}
		l.Currency = c
	}
	if len([]rune(l.Name)) > 200 {
		return ScheduleVersion{}, false, errs.E(errs.Invalid, "is at most 200 characters").InField("name")
	}
	// The rows are checked against the currency the payer will have, which
	// needs its settings: read them first (a load with --currency names it).
	cur := l.Currency
	if cur == "" {
		var err error
		if cur, err = f.Currency(ctx, f.db.Reader(), l.Payer); err != nil {
			return ScheduleVersion{}, false, err
		}
	}
	parsed, err := parseFeeFile(r, cur)
	if err != nil {
		return ScheduleVersion{}, false, err
	}
	version := l.Version
	if version == "" {
		version = "sha256-" + parsed.hash[:16]
	}
	now := f.now().UTC()
	sv := ScheduleVersion{Payer: l.Payer, Version: version, ContentHash: parsed.hash, Items: len(parsed.rows),
		EffectiveFrom: parsed.from, EffectiveTo: parsed.to, LoadedAt: now}
	loaded := false
	err = f.db.Tx(ctx, func(tx store.Tx) error {
		if err := upsertPayer(ctx, tx, l, now); err != nil {
			return err
		}
		var hash string
		var seq int64
		var loadedAt time.Time
		err := tx.QueryRow(ctx, `SELECT content_hash, seq, loaded_at FROM rcm_fee_schedules WHERE payer = $1 AND version = $2`,
			l.Payer, version).Scan(&hash, &seq, &loadedAt)
		switch {
		case err == nil && hash == parsed.hash:
			sv.Seq, sv.LoadedAt = seq, loadedAt
			return nil
		case err == nil:
			return errs.E(errs.Conflict, "version already loaded for this payer with other content; name the new schedule with another version").InField("version")
		case err != store.ErrNoRows:
			return fmt.Errorf("read fee schedule: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM rcm_fee_schedules WHERE payer = $1`, l.Payer).Scan(&sv.Seq); err != nil {
			return fmt.Errorf("number fee schedule: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rcm_fee_schedules (payer, version, seq, content_hash, items, effective_from, effective_to, loaded_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			l.Payer, version, sv.Seq, parsed.hash, len(parsed.rows), parsed.from, store.NullIfEmpty(parsed.to), now); err != nil {
			return fmt.Errorf("store fee schedule: %w", err)
		}
		if err := insertFeeItems(ctx, tx, l.Payer, version, parsed.rows); err != nil {
			return err
		}
		loaded = true
		return nil
	})
	if err != nil {
		return ScheduleVersion{}, false, err
	}
	return sv, loaded, nil
}

// upsertPayer records the payer, setting what the load names and keeping
// the rest.
func upsertPayer(ctx context.Context, tx store.Tx, l FeeLoad, now time.Time) error {
	cur := l.Currency
	if cur == "" {
		cur = DefaultCurrency
	}
	_, err := tx.Exec(ctx, `INSERT INTO rcm_payers (code, name, currency, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (code) DO UPDATE SET
			name = CASE WHEN $5 THEN excluded.name ELSE rcm_payers.name END,
			currency = CASE WHEN $6 THEN excluded.currency ELSE rcm_payers.currency END,
			updated_at = excluded.updated_at`,
		l.Payer, l.Name, cur, now, l.Name != "", l.Currency != "")
	if err != nil {
		return fmt.Errorf("store payer settings: %w", err)
	}
	return nil
}

// feeInsertChunk rows go in one statement: well under SQLite's and
// PostgreSQL's limits on parameters (11 per row).
const feeInsertChunk = 500

func insertFeeItems(ctx context.Context, tx store.Tx, payer, version string, rows []feeRow) error {
	for start := 0; start < len(rows); start += feeInsertChunk {
		chunk := rows[start:min(len(rows), start+feeInsertChunk)]
		q := []byte(`INSERT INTO rcm_fee_items (payer, version, line, system, code, description, amount, currency, preauth, effective_from, effective_to) VALUES `)
		args := make([]any, 0, len(chunk)*11)
		for i, r := range chunk {
			if i > 0 {
				q = append(q, ',')
			}
			n := len(args)
			q = fmt.Appendf(q, "($%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10, n+11)
			args = append(args, payer, version, r.line, r.system, r.code, r.description, r.amount, r.currency, r.preauth, r.from, store.NullIfEmpty(r.to))
		}
		if _, err := tx.Exec(ctx, string(q), args...); err != nil {
			return fmt.Errorf("store fee schedule rows: %w", err)
		}
	}
	return nil
}

// effectiveRow is the query of the row that prices a code on a date: the
// newest load with a row effective then.
const effectiveRow = `SELECT i.amount, i.currency, i.version, i.preauth
	FROM rcm_fee_items i JOIN rcm_fee_schedules s ON s.payer = i.payer AND s.version = i.version
	WHERE i.payer = $1 AND i.system = $2 AND i.code = $3
	  AND i.effective_from <= $4 AND (i.effective_to IS NULL OR i.effective_to >= $4)
	ORDER BY s.seq DESC LIMIT 1`

// Price is the payer's price of a code on the date of on (in on's own
// time zone). system is CPT, HCPCS or a URI. false: the payer's schedule
// has no row for the code effective on that date.
func (f *Fees) Price(ctx context.Context, q store.Querier, payer, system, code string, on time.Time) (Price, bool, error) {
	var p Price
	var preauth bool
	err := q.QueryRow(ctx, effectiveRow, payer, FeeSystem(system), code, on.Format(time.DateOnly)).Scan(&p.Amount, &p.Currency, &p.ScheduleVersion, &preauth)
	if err == store.ErrNoRows {
		return Price{}, false, nil
	}
	if err != nil {
		return Price{}, false, fmt.Errorf("read fee schedule: %w", err)
	}
	return p, true, nil
}

// PreauthRequired reports whether the payer's schedule marks the code as
// needing pre-authorization on that date; a code it does not price needs
// none by the schedule (the journey may still ask for one).
func (f *Fees) PreauthRequired(ctx context.Context, q store.Querier, payer, system, code string, on time.Time) (bool, error) {
	var p Price
	var preauth bool
	err := q.QueryRow(ctx, effectiveRow, payer, FeeSystem(system), code, on.Format(time.DateOnly)).Scan(&p.Amount, &p.Currency, &p.ScheduleVersion, &preauth)
	if err == store.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read fee schedule: %w", err)
	}
	return preauth, nil
}

// Currency is the payer's currency: as its last load set it, else EGP.
func (f *Fees) Currency(ctx context.Context, q store.Querier, payer string) (string, error) {
	var cur string
	err := q.QueryRow(ctx, `SELECT currency FROM rcm_payers WHERE code = $1`, payer).Scan(&cur)
	if err == store.ErrNoRows {
		return DefaultCurrency, nil
	}
	if err != nil {
		return "", fmt.Errorf("read payer settings: %w", err)
	}
	return cur, nil
}

// Payer returns a payer's settings; false when careflow has none.
func (f *Fees) Payer(ctx context.Context, code string) (PayerSettings, bool, error) {
	p := PayerSettings{Code: code}
	err := f.db.Reader().QueryRow(ctx, `SELECT name, currency FROM rcm_payers WHERE code = $1`, code).Scan(&p.Name, &p.Currency)
	if err == store.ErrNoRows {
		return PayerSettings{Code: code, Currency: DefaultCurrency}, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read payer settings: %w", err)
	}
	return p, true, nil
}

// PayerSettingsAll lists every payer careflow has settings for, by code.
func (f *Fees) PayerSettingsAll(ctx context.Context) ([]PayerSettings, error) {
	rows, err := f.db.Reader().Query(ctx, `SELECT code, name, currency FROM rcm_payers ORDER BY code`)
	if err != nil {
		return nil, fmt.Errorf("list payers: %w", err)
	}
	defer rows.Close()
	var out []PayerSettings
	for rows.Next() {
		var p PayerSettings
		if err := rows.Scan(&p.Code, &p.Name, &p.Currency); err != nil {
			return nil, fmt.Errorf("list payers: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Schedules lists the loaded versions of a payer's schedule, newest first;
// payer "" lists every payer's, by payer.
func (f *Fees) Schedules(ctx context.Context, payer string) ([]ScheduleVersion, error) {
	q := `SELECT payer, version, seq, content_hash, items, effective_from, effective_to, loaded_at FROM rcm_fee_schedules`
	var args []any
	if payer != "" {
		q += ` WHERE payer = $1`
		args = append(args, payer)
	}
	rows, err := f.db.Reader().Query(ctx, q+` ORDER BY payer, seq DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("list fee schedules: %w", err)
	}
	defer rows.Close()
	var out []ScheduleVersion
	for rows.Next() {
		var v ScheduleVersion
		var to *string
		if err := rows.Scan(&v.Payer, &v.Version, &v.Seq, &v.ContentHash, &v.Items, &v.EffectiveFrom, &to, &v.LoadedAt); err != nil {
			return nil, fmt.Errorf("list fee schedules: %w", err)
		}
		if to != nil {
			v.EffectiveTo = *to
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// CodeRef names a code of a code system.
type CodeRef struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// PreauthCodes lists the codes a payer requires pre-authorization for on
// the date of on: those whose pricing row (the newest effective, as Price
// picks it) says so.
func (f *Fees) PreauthCodes(ctx context.Context, payer string, on time.Time) ([]CodeRef, error) {
	day := on.Format(time.DateOnly)
	rows, err := f.db.Reader().Query(ctx, `SELECT i.system, i.code, i.preauth, s.seq
		FROM rcm_fee_items i JOIN rcm_fee_schedules s ON s.payer = i.payer AND s.version = i.version
		WHERE i.payer = $1 AND i.effective_from <= $2 AND (i.effective_to IS NULL OR i.effective_to >= $2)
		ORDER BY i.system, i.code, s.seq DESC`, payer, day)
	if err != nil {
		return nil, fmt.Errorf("list pre-authorization codes: %w", err)
	}
	defer rows.Close()
	var out []CodeRef
	var last CodeRef
	for rows.Next() {
		var c CodeRef
		var preauth bool
		var seq int64
		if err := rows.Scan(&c.System, &c.Code, &preauth, &seq); err != nil {
			return nil, fmt.Errorf("list pre-authorization codes: %w", err)
		}
		// The first row of each code is its newest load's: it decides.
		if c == last {
			continue
		}
		last = c
		if preauth {
			out = append(out, c)
		}
	}
	return out, rows.Err()
}
