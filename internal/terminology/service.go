package terminology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Service answers terminology questions from the releases stored in the
// database, and loads releases into it.
type Service struct {
	db     *store.DB
	now    func() time.Time
	logger *slog.Logger
	// q, when set, is what reads go through instead of db's readers: the
	// caller's transaction (see CheckResource).
	q store.Querier
}

// reader is what a read of the code tables goes through.
func (s *Service) reader() store.Querier {
	if s.q != nil {
		return s.q
	}
	return s.db.Reader()
}

// Options configure a Service.
type Options struct {
	// Now is the clock (birth dates in the future, load times); nil is
	// time.Now.
	Now func() time.Time
	// Logger receives one line per completed load (system, version, counts:
	// no PHI); nil discards.
	Logger *slog.Logger
}

// NewService returns a Service over a migrated database.
func NewService(db *store.DB, opts Options) *Service {
	s := &Service{db: db, now: opts.Now, logger: opts.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	return s
}

// Release is one loaded version of a code system.
type Release struct {
	System  string
	Version string
	// Window is the dates of service the release is valid for; a zero end is open.
	Window   Window
	Source   string // "cms-order-file" or "code-list"
	Codes    int
	LoadedAt time.Time
}

// LoadProgress reports how far a load has come. The last call has Done set.
type LoadProgress struct {
	System  string
	Version string
	Codes   int
	Done    bool
}

// progressEvery is how many codes pass between progress calls: often enough
// for a terminal to show movement, rarely enough to cost nothing.
const progressEvery = 5000

// insertBatch is how many codes go into one INSERT. A batch travels as one
// JSON parameter, so a 98,000-line order file is a few dozen statements, not
// 98,000 round trips to PostgreSQL; and the statement text stays short, which
// matters on SQLite, where parsing a multi-row VALUES list with thousands of
// parameter markers cost more than storing the rows.
const insertBatch = 4000

// LoadICD10CM loads a CMS ICD-10-CM order file as release version of
// ICD-10-CM, valid for the dates of service in window. A zero window means
// the fiscal-year window of a four-digit version ("2026": 2025-10-01 to
// 2026-09-30); other versions must give one. The whole file loads in one
// transaction: a malformed line (reported with its number) leaves the
// database as it was. Loading a version that is already loaded replaces its
// codes and window, so running the same load twice gives the same result.
// progress may be nil.
func (s *Service) LoadICD10CM(ctx context.Context, r io.Reader, version string, window Window, progress func(LoadProgress)) (Release, error) {
	version = strings.TrimSpace(version)
	if version == "" {
		return Release{}, errs.E(errs.Invalid, "an ICD-10-CM release needs a version").InField("version")
	}
	if window == (Window{}) {
		w, err := DefaultICD10CMWindow(version)
		if err != nil {
			return Release{}, errs.E(errs.Invalid, "%v", err).InField("version")
		}
		window = w
	}
	rel := Release{System: SystemICD10CM, Version: version, Window: window.normalize(), Source: "cms-order-file"}
	return s.load(ctx, rel, progress, func(emit func(code, display, short string, billable bool) error) error {
		return ReadOrderFile(r, func(e OrderEntry) error {
			return emit(e.Code, e.Long, e.Short, e.Billable)
		})
	})
}

// CodeListOptions describe a code list being loaded.
type CodeListOptions struct {
	// Version names the release ("2026-Q1"); required.
	Version string
	// Window is the dates of service the list is valid for; zero leaves
	// both ends open.
	Window Window
	// Progress may be nil.
	Progress func(LoadProgress)
}

// LoadCodeList loads a code list (see ReadCodeList for the format) as a
// release of a CPT, HCPCS, LOINC or SNOMED CT system. Once a system has a
// release, its codes must be in the release for the date of service, not
// just well-formed. One transaction; reloading a version replaces it.
func (s *Service) LoadCodeList(ctx context.Context, system string, r io.Reader, opts CodeListOptions) (Release, error) {
	info, ok := knownSystems[system]
	if !ok || !info.loadable {
		return Release{}, errs.E(errs.Invalid, "code lists can be loaded for CPT, HCPCS, LOINC and SNOMED CT only").InField("system")
	}
	version := strings.TrimSpace(opts.Version)
	if version == "" {
		return Release{}, errs.E(errs.Invalid, "a code list needs a version").InField("version")
	}
	rel := Release{System: system, Version: version, Window: opts.Window.normalize(), Source: "code-list"}
	return s.load(ctx, rel, opts.Progress, func(emit func(code, display, short string, billable bool) error) error {
		return ReadCodeList(system, r, func(e ListEntry) error {
			return emit(e.Code, e.Display, "", true)
		})
	})
}

// load stores one release from read, which calls emit per code, in one
// transaction.
func (s *Service) load(ctx context.Context, rel Release, progress func(LoadProgress), read func(emit func(code, display, short string, billable bool) error) error) (Release, error) {
	if err := rel.Window.Validate(); err != nil {
		return Release{}, errs.E(errs.Invalid, "%v", err).InField("window")
	}
	if progress == nil {
		progress = func(LoadProgress) {}
	}
	name := knownSystems[rel.System].name
	// Both backends keep microseconds; truncating here makes the returned
	// Release equal to what Releases reads back.
	rel.LoadedAt = s.now().UTC().Truncate(time.Microsecond)
	err := s.db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO terminology_systems (uri, name) VALUES ($1, $2)
			ON CONFLICT (uri) DO UPDATE SET name = excluded.name`, rel.System, name); err != nil {
			return fmt.Errorf("record code system: %w", err)
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO terminology_releases
			(system, version, valid_from, valid_to, source, code_count, loaded_at)
			VALUES ($1, $2, $3, $4, $5, 0, $6)
			ON CONFLICT (system, version) DO UPDATE SET
				valid_from = excluded.valid_from, valid_to = excluded.valid_to,
				source = excluded.source, code_count = 0, loaded_at = excluded.loaded_at
			RETURNING id`,
			rel.System, rel.Version, nullDate(rel.Window.From), nullDate(rel.Window.To), rel.Source, rel.LoadedAt,
		).Scan(&id); err != nil {
			return fmt.Errorf("record release: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM terminology_codes WHERE release_id = $1`, id); err != nil {
			return fmt.Errorf("clear release: %w", err)
		}
		batch := make([]codeRow, 0, insertBatch)
		insert := insertCodesSQL(tx.Dialect())
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			rows, err := json.Marshal(batch)
			if err != nil {
				return fmt.Errorf("encode codes: %w", err)
			}
			if _, err := tx.Exec(ctx, insert, id, string(rows)); err != nil {
				return fmt.Errorf("insert codes: %w", err)
			}
			batch = batch[:0]
			return nil
		}
		count := 0
		err := read(func(code, display, short string, billable bool) error {
			batch = append(batch, codeRow{code, display, short, billable})
			count++
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return err
				}
			}
			if count%progressEvery == 0 {
				progress(LoadProgress{System: rel.System, Version: rel.Version, Codes: count})
			}
			return ctx.Err()
		})
		if err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE terminology_releases SET code_count = $1 WHERE id = $2`, count, id); err != nil {
			return fmt.Errorf("count codes: %w", err)
		}
		rel.Codes = count
		return nil
	})
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			return Release{}, errs.E(errs.Invalid, "%s %s: %s", name, sourceNoun(rel.Source), pe.Error()).InField("file")
		}
		if _, ok := errs.As(err); ok {
			return Release{}, err
		}
		if ctx.Err() != nil {
			return Release{}, errs.Wrap(errs.Unavailable, err, "loading %s %s was cancelled", name, rel.Version)
		}
		return Release{}, errs.Wrap(errs.Internal, err, "load %s %s", name, rel.Version)
	}
	progress(LoadProgress{System: rel.System, Version: rel.Version, Codes: rel.Codes, Done: true})
	s.logger.Info("terminology release loaded", "system", rel.System, "version", rel.Version,
		"codes", rel.Codes, "valid", rel.Window.String())
	return rel, nil
}

func sourceNoun(source string) string {
	if source == "cms-order-file" {
		return "order file"
	}
	return "code list"
}

// codeRow is one code in a JSON batch; the short keys keep the batch small.
type codeRow struct {
	Code     string `json:"c"`
	Display  string `json:"d"`
	Short    string `json:"s"`
	Billable bool   `json:"b"`
}

// insertCodesSQL inserts a JSON array of codeRow ($2) into release $1. The
// dialects unpack JSON differently; this is the one place they differ.
// SQLite's json_extract turns true/false into 1/0, which is how its schema
// stores billable.
func insertCodesSQL(d store.Dialect) string {
	if d == store.Postgres {
		return `INSERT INTO terminology_codes (release_id, code, display, short_display, billable)
			SELECT $1, r.c, r.d, r.s, r.b FROM jsonb_to_recordset($2::jsonb) AS r(c text, d text, s text, b boolean)`
	}
	return `INSERT INTO terminology_codes (release_id, code, display, short_display, billable)
		SELECT $1, json_extract(value, '$.c'), json_extract(value, '$.d'), json_extract(value, '$.s'), json_extract(value, '$.b')
		FROM json_each($2)`
}

// nullDate stores an open window end as NULL.
func nullDate(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Releases lists the loaded releases of a system, newest first (by the start
// of their window, then by load time).
func (s *Service) Releases(ctx context.Context, system string) ([]Release, error) {
	rows, err := s.reader().Query(ctx, `SELECT version, valid_from, valid_to, source, code_count, loaded_at
		FROM terminology_releases WHERE system = $1`, system)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "list releases")
	}
	defer rows.Close()
	var out []Release
	for rows.Next() {
		r := Release{System: system}
		var from, to *time.Time
		if err := rows.Scan(&r.Version, &from, &to, &r.Source, &r.Codes, &r.LoadedAt); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "list releases")
		}
		r.Window = windowOf(from, to)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "list releases")
	}
	sort.Slice(out, func(i, j int) bool { return newer(out[i].Window, out[i].LoadedAt, out[j].Window, out[j].LoadedAt) })
	return out, nil
}

func windowOf(from, to *time.Time) Window {
	var w Window
	if from != nil {
		w.From = civilDate(from.UTC())
	}
	if to != nil {
		w.To = civilDate(to.UTC())
	}
	return w
}

// newer orders releases: a later window start wins (an open start is the
// oldest), then a later load.
func newer(a Window, aLoaded time.Time, b Window, bLoaded time.Time) bool {
	if !a.From.Equal(b.From) {
		return a.From.After(b.From)
	}
	return aLoaded.After(bLoaded)
}

// candidate is one release of a system and, when it has the code asked
// about, that code's row.
type candidate struct {
	version  string
	window   Window
	loadedAt time.Time
	has      bool
	display  string
	short    string
	billable bool
}

// candidates returns every release of system with the code's row in it, in
// one query, newest release first: everything ValidateCode and Lookup need
// to choose a release and explain a refusal.
func (s *Service) candidates(ctx context.Context, system, code string) ([]candidate, error) {
	rows, err := s.reader().Query(ctx, `SELECT r.version, r.valid_from, r.valid_to, r.loaded_at,
			c.display, c.short_display, c.billable
		FROM terminology_releases r
		LEFT JOIN terminology_codes c ON c.release_id = r.id AND c.code = $2
		WHERE r.system = $1`, system, code)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "look up code")
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		var from, to *time.Time
		var display, short *string
		var billable *bool
		if err := rows.Scan(&c.version, &from, &to, &c.loadedAt, &display, &short, &billable); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "look up code")
		}
		c.window = windowOf(from, to)
		if display != nil {
			c.has = true
			c.display = *display
			if short != nil {
				c.short = *short
			}
			c.billable = billable != nil && *billable
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "look up code")
	}
	sort.Slice(out, func(i, j int) bool { return newer(out[i].window, out[i].loadedAt, out[j].window, out[j].loadedAt) })
	return out, nil
}

// pick chooses the release that answers: the pinned version, else the newest
// release whose window holds the date, else (no date) the newest release.
// ok is false when none qualifies.
func pick(cands []candidate, version string, date time.Time) (candidate, bool) {
	for _, c := range cands {
		switch {
		case version != "":
			if c.version == version {
				return c, true
			}
		case date.IsZero() || c.window.Contains(date):
			return c, true
		}
	}
	return candidate{}, false
}

// ValidateCode says whether code is a valid code of system for the options'
// date of service, and if not, why. An invalid code is an answer, not an
// error: the error is for the database failing.
func (s *Service) ValidateCode(ctx context.Context, system, code string, opts ValidateOptions) (Validation, error) {
	info, ok := knownSystems[system]
	if !ok {
		return Validation{System: system, Reason: ReasonUnknownSystem, Basis: BasisFormat,
			Message: fmt.Sprintf("code system %q is not one careflow knows", system)}, nil
	}
	if info.phi {
		return s.validateEgyptID(code), nil
	}
	v := Validation{System: system, Code: code}
	stored := code
	if system == SystemICD10CM {
		n, err := NormalizeICD10CM(code)
		if err != nil {
			v.Reason, v.Basis = ReasonMalformed, BasisFormat
			v.Message = "not an ICD-10-CM code: " + err.Error()
			return v, nil
		}
		stored, v.Code = n, DottedICD10CM(n)
	} else if p := info.checkFormat(code); p != nil {
		v.Reason, v.Basis, v.Message = p.reason, BasisFormat, p.msg
		return v, nil
	}
	cands, err := s.candidates(ctx, system, stored)
	if err != nil {
		return Validation{}, err
	}
	if len(cands) == 0 {
		return s.validateWithoutRelease(v, stored, info, opts), nil
	}
	v.Basis = BasisRelease
	c, ok := pick(cands, opts.Version, opts.Date)
	if !ok {
		v.Reason = ReasonNoRelease
		if opts.Version != "" {
			v.Message = fmt.Sprintf("%s release %q is not loaded", info.name, opts.Version)
		} else {
			v.Message = fmt.Sprintf("no loaded %s release covers the date of service %s (loaded: %s)",
				info.name, formatDate(civilDate(opts.Date)), describeReleases(cands))
		}
		return v, nil
	}
	v.Version = c.version
	if opts.Version != "" && !opts.Date.IsZero() && !c.window.Contains(opts.Date) {
		v.Reason = ReasonNotValidOnDate
		v.Message = fmt.Sprintf("%s release %s is valid for dates of service %s, not %s",
			info.name, c.version, c.window, formatDate(civilDate(opts.Date)))
		return v, nil
	}
	if !c.has {
		var others []candidate
		for _, o := range cands {
			if o.has {
				others = append(others, o)
			}
		}
		if len(others) == 0 {
			v.Reason = ReasonUnknown
			v.Message = fmt.Sprintf("%s is not a code in %s release %s", mention(system, v.Code), info.name, c.version)
			return v, nil
		}
		v.Reason = ReasonNotValidOnDate
		v.Display = others[0].display
		v.Message = fmt.Sprintf("%s is not in %s release %s (valid %s), which applies to %s; it is in %s",
			v.Code, info.name, c.version, c.window, dateNoun(opts), describeReleases(others))
		return v, nil
	}
	v.Display, v.Billable = c.display, c.billable
	return finish(v, info, c.display, c.short, c.billable, opts), nil
}

// finish applies the checks that need the code's row: billable, display.
func finish(v Validation, info systemInfo, display, short string, billable bool, opts ValidateOptions) Validation {
	if !billable && !opts.Abstract {
		v.Reason = ReasonNotBillable
		v.Message = fmt.Sprintf("%s (%s) is a header code, not billable: code to a more specific %s code below it",
			v.Code, display, info.name)
		return v
	}
	if opts.Display != "" && display != "" && !sameDisplay(opts.Display, display) && !sameDisplay(opts.Display, short) {
		v.Reason = ReasonDisplayMismatch
		v.Message = fmt.Sprintf("the display given for %s is not its display %q", v.Code, display)
		return v
	}
	v.Valid = true
	switch v.Basis {
	case BasisStarterSet:
		v.Message = fmt.Sprintf("%s is valid in careflow's built-in %s starter set; no %s release is loaded, so the date of service was not checked",
			v.Code, info.name, info.name)
	default:
		v.Message = fmt.Sprintf("%s is valid in %s release %s", v.Code, info.name, v.Version)
	}
	if !billable {
		v.Message += " (a header code, accepted because abstract codes were allowed)"
	}
	return v
}

// validateWithoutRelease answers from the starter set, or by format alone.
func (s *Service) validateWithoutRelease(v Validation, stored string, info systemInfo, opts ValidateOptions) Validation {
	if set, ok := starterSets[info.uri]; ok && len(set) > 0 {
		v.Basis, v.Version = BasisStarterSet, starterVersion
		c, ok := starterLookup(info.uri, stored)
		switch {
		case !ok && info.uri == SystemICD10CM:
			// ICD-10-CM is strict: whether a diagnosis is billable needs
			// content, and the starter set is the only content there is.
			v.Reason = ReasonUnknown
			v.Message = fmt.Sprintf("%s is not in careflow's built-in %s starter set, and no %s release is loaded: load the CMS order file (careflow codes load icd10cm)",
				v.Code, info.name, info.name)
			return v
		case !ok:
			// The HCPCS starter set only supplies displays. Refusing the
			// thousands of codes it lacks would make HCPCS stricter than CPT,
			// which is checked by format alone until a list is loaded.
			return formatOnly(v, info)
		}
		v.Display, v.Billable = c.display, c.billable
		return finish(v, info, c.display, "", c.billable, opts)
	}
	return formatOnly(v, info)
}

// formatOnly is the answer for a well-formed code careflow has no content for.
func formatOnly(v Validation, info systemInfo) Validation {
	v.Valid, v.Basis, v.Billable, v.Version = true, BasisFormat, true, ""
	v.Message = fmt.Sprintf("%s is a well-formed %s code; no %s code list is loaded, so its existence and display were not checked",
		mention(info.uri, v.Code), info.name, info.name)
	return v
}

func (s *Service) validateEgyptID(id string) Validation {
	v := Validation{System: SystemEgyptNationalID, Basis: BasisFormat}
	if _, err := ParseEgyptianNationalID(id, s.now()); err != nil {
		v.Reason = ReasonMalformed
		v.Message = "not a valid Egyptian national ID: " + err.Error()
		return v
	}
	v.Valid = true
	v.Message = "the Egyptian national ID is well-formed (century, birth date, governorate, sequence); its check digit is not verified because its algorithm is not published"
	return v
}

func dateNoun(opts ValidateOptions) string {
	if opts.Version != "" {
		return "the version asked for"
	}
	if opts.Date.IsZero() {
		return "requests without a date of service"
	}
	return "the date of service " + formatDate(civilDate(opts.Date))
}

// describeReleases lists releases as `2022 (2021-10-01..2022-09-30)`.
func describeReleases(cs []candidate) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("release %s (valid %s)", c.version, c.window))
	}
	return strings.Join(parts, ", ")
}

// sameDisplay compares displays as people type them: case and runs of white
// space do not matter, words and punctuation do.
func sameDisplay(a, b string) bool {
	return strings.EqualFold(strings.Join(strings.Fields(a), " "), strings.Join(strings.Fields(b), " "))
}

// mention names a code in a message. A code careflow has not found in any
// content is echoed only when its shape rules out PHI: ICD-10-CM, CPT, HCPCS
// and LOINC codes contain letters or a hyphen, but a bare digit string sent
// as a SNOMED CT code could be a national ID in the wrong field.
func mention(system, code string) string {
	if system == SystemSNOMED {
		return "the SNOMED CT code"
	}
	return code
}
