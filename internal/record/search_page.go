package record

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Result is one page of a search.
type Result struct {
	Query    *Query
	Matches  []Record
	Included []Record
	// Total is the number of matches when known.
	Total   *int
	HasNext bool
}

// ParseQuery parses search parameters for typ. Parameters this server does
// Search runs a query and returns one page, with its includes. The search
// itself is passed to the guard first (Action search, no ID; the patient
// it names, if any); with a Reacher it is confined to the caller's reach,
// and every match and include is passed to Allow (Action search, with its
// ID) before it is opened. Matches the guard refuses are left out, and the
// total with them, since it would count them.
func (s *Service) Search(ctx context.Context, g Guard, q *Query) (*Result, error) {
	return s.search(ctx, g, s.db.Reader(), q)
}

// search runs q on rd: the reader pool, or a transaction's own connection
// when a transaction's GET entries must see its writes.
func (s *Service) search(ctx context.Context, g Guard, rd store.Querier, q *Query) (*Result, error) {
	if err := allowOn(ctx, g, rd, Access{Action: ActSearch, Type: q.Type, PatientID: q.patient}); err != nil {
		return nil, err
	}
	// After the search's decision, so that a role that may not search the
	// type at all gets that answer, and the purpose is the one decided.
	if err := s.checkElements(ctx, g, q); err != nil {
		return nil, err
	}
	if len(q.chains) > 0 {
		var err error
		if q, err = s.resolveChains(ctx, g, rd, q); err != nil {
			return nil, err
		}
	}
	c, err := s.confine(ctx, g, q.Type, listResources, false, q.whereSQL(), q.args)
	if err != nil {
		return nil, err
	}
	d := s.db.Dialect()
	res := &Result{Query: q}
	countArgs := slices.Clone(c.args)
	count := func() error {
		var n int
		if err := rd.QueryRow(ctx, "SELECT COUNT(*) FROM "+c.from+" WHERE "+c.where, confined{args: countArgs, lists: c.lists}.queryArgs(d)...).Scan(&n); err != nil {
			return fmt.Errorf("count %s: %w", q.Type, err)
		}
		res.Total = &n
		return nil
	}
	if q.SummaryCount || q.Total != "none" {
		if err := count(); err != nil {
			return nil, err
		}
	}
	if q.SummaryCount || q.Count == 0 {
		return res, nil
	}
	var order []string
	for _, k := range q.sorts {
		if k.param == "" {
			order = append(order, k.expr)
			continue
		}
		c.args = append(c.args, paramKey(q.Type, k.param))
		order = append(order, fmt.Sprintf(k.expr, "$"+strconv.Itoa(len(c.args))))
	}
	order = append(order, "r.id")
	c.args = append(c.args, q.Count+1, q.Offset)
	sqlText := "SELECT r.id, r.version, r.last_updated, r.patient_id, r.ciphertext FROM " + c.from + " WHERE " + c.where +
		" ORDER BY " + strings.Join(order, ", ") +
		" LIMIT $" + strconv.Itoa(len(c.args)-1) + " OFFSET $" + strconv.Itoa(len(c.args))
	all, err := s.found(ctx, rd, q.Type, sqlText, c.queryArgs(d)...)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", q.Type, err)
	}
	if len(all) > q.Count {
		res.HasNext = true
		all = all[:q.Count]
	}
	// The last page tells the total for free: its offset plus its rows. A
	// page past the end has no rows to tell it by (the offset is no count),
	// so the matches are counted.
	switch {
	case res.Total != nil || res.HasNext:
	case len(all) > 0 || q.Offset == 0:
		n := q.Offset + len(all)
		res.Total = &n
	default:
		if err := count(); err != nil {
			return nil, err
		}
	}
	res.Matches, err = s.openAllowed(ctx, g, all)
	if err != nil {
		return nil, err
	}
	if len(res.Matches) < len(all) {
		res.Total = nil
	}
	if err := s.addIncludes(ctx, g, rd, res); err != nil {
		return nil, err
	}
	return res, nil
}

// foundRecord is a row a listing selected, still sealed.
type foundRecord struct {
	rec Record
	ct  []byte
}

// found runs a listing that selects id, version, last_updated, patient_id
// and ciphertext of current rows of typ.
func (s *Service) found(ctx context.Context, rd store.Querier, typ, sqlText string, args ...any) ([]foundRecord, error) {
	rows, err := rd.Query(ctx, sqlText, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var all []foundRecord
	for rows.Next() {
		var f foundRecord
		var pid *string
		f.rec.Type = typ
		if err := rows.Scan(&f.rec.ID, &f.rec.Version, &f.rec.LastUpdated, &pid, &f.ct); err != nil {
			return nil, err
		}
		if pid != nil {
			f.rec.PatientID = *pid
		}
		all = append(all, f)
	}
	return all, rows.Err()
}

// openAllowed passes each record to the guard (a record a search returns)
// and opens those it allows; refused ones are left out.
func (s *Service) openAllowed(ctx context.Context, g Guard, all []foundRecord) ([]Record, error) {
	var out []Record
	for _, f := range all {
		if err := allow(ctx, g, Access{Action: ActSearch, Type: f.rec.Type, ID: f.rec.ID, PatientID: f.rec.PatientID}); err != nil {
			if errs.Is(err, errs.Forbidden) || errs.Is(err, errs.NotFound) {
				continue
			}
			return nil, err
		}
		var err error
		f.rec.JSON, err = s.ring.Open(ctx, versionAAD(f.rec.Type, f.rec.ID, f.rec.Version), f.ct)
		if err != nil {
			return nil, fmt.Errorf("open %s/%s: %w", f.rec.Type, f.rec.ID, err)
		}
		out = append(out, f.rec)
	}
	return out, nil
}

// addIncludes adds the page's _include targets and _revinclude sources:
// current, undeleted, within the caller's reach of their own type, at
// most maxIncluded, each passed to the guard like a match.
func (s *Service) addIncludes(ctx context.Context, g Guard, rd store.Querier, res *Result) error {
	q := res.Query
	if len(res.Matches) == 0 || (len(q.includes) == 0 && len(q.revIncludes) == 0) {
		return nil
	}
	d := s.db.Dialect()
	seen := map[string]bool{}
	ids := make([]string, 0, len(res.Matches))
	for _, m := range res.Matches {
		seen[m.Ref()] = true
		ids = append(ids, m.ID)
	}
	idList := d.ListArg(ids)
	add := func(typ, where string, args []any) error {
		left := maxIncluded - len(res.Included)
		if left <= 0 {
			return nil
		}
		c, err := s.confine(ctx, g, typ, listIncluded, false, where, args)
		if err != nil {
			return err
		}
		c.args = append(c.args, left+len(seen))
		all, err := s.found(ctx, rd, typ, "SELECT r.id, r.version, r.last_updated, r.patient_id, r.ciphertext FROM "+c.from+" WHERE "+
			c.where+" ORDER BY r.id LIMIT $"+strconv.Itoa(len(c.args)), c.queryArgs(d)...)
		if err != nil {
			return fmt.Errorf("includes: %w", err)
		}
		fresh := all[:0]
		for _, f := range all {
			if !seen[f.rec.Ref()] && len(fresh) < left {
				seen[f.rec.Ref()] = true
				fresh = append(fresh, f)
			}
		}
		recs, err := s.openAllowed(ctx, g, fresh)
		res.Included = append(res.Included, recs...)
		return err
	}
	// _include: the matches' references, then their targets type by type.
	var types []string
	targets := map[string][]string{}
	queued := map[string]bool{}
	for _, inc := range q.includes {
		sqlText := "SELECT target_type, target_id FROM resource_refs WHERE rid IN (SELECT rid FROM resources WHERE type = $1 AND " + d.InList("id", "$2") + ")"
		args := []any{q.Type, idList}
		if inc.param != "*" {
			args = append(args, paramKey(q.Type, inc.param))
			sqlText += " AND param = $" + strconv.Itoa(len(args))
		} else {
			// Only the parameters the caller may follow (checkElements).
			if len(inc.params) == 0 {
				continue
			}
			marks := make([]string, len(inc.params))
			for i, name := range inc.params {
				args = append(args, paramKey(q.Type, name))
				marks[i] = "$" + strconv.Itoa(len(args))
			}
			sqlText += " AND param IN (" + strings.Join(marks, ", ") + ")"
		}
		if inc.target != "" {
			args = append(args, inc.target)
			sqlText += " AND target_type = $" + strconv.Itoa(len(args))
		}
		got, err := pairs(ctx, rd, sqlText, args...)
		if err != nil {
			return err
		}
		for _, t := range got {
			ref := t[0] + "/" + t[1]
			if !fhir.IsResourceType(t[0]) || seen[ref] || queued[ref] {
				continue
			}
			queued[ref] = true
			if targets[t[0]] == nil {
				types = append(types, t[0])
			}
			targets[t[0]] = append(targets[t[0]], t[1])
		}
	}
	for _, typ := range types {
		if err := add(typ, "r.type = $1 AND r.deleted = FALSE AND "+d.InList("r.id", "$2"), []any{typ, d.ListArg(targets[typ])}); err != nil {
			return err
		}
	}
	// _revinclude: the resources of a type whose parameter refers to a
	// match.
	for _, inc := range q.revIncludes {
		where := "r.type = $1 AND r.deleted = FALSE AND " + ridIn("SELECT x.rid FROM resource_refs x WHERE x.param = $2 AND x.target_type = $3 AND "+
			d.InList("x.target_id", "$4"))
		if err := add(inc.typ, where, []any{inc.typ, paramKey(inc.typ, inc.param), q.Type, idList}); err != nil {
			return err
		}
	}
	return nil
}

func pairs(ctx context.Context, rd store.Querier, sqlText string, args ...any) ([][2]string, error) {
	rows, err := rd.Query(ctx, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("includes: %w", err)
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var p [2]string
		if err := rows.Scan(&p[0], &p[1]); err != nil {
			return nil, fmt.Errorf("includes: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// matchIDs runs a conditional query (If-None-Exist, conditional update and
// delete, conditional references) inside q and returns up to limit ids,
// within the guard's MatchReach when it has one: a record the caller may
// not reach matches nothing, as if it did not exist.
func (s *Service) matchIDs(ctx context.Context, rd store.Querier, g Guard, typ, query string, limit int) ([]string, error) {
	vals, err := url.ParseQuery(query)
	if err != nil {
		return nil, errs.E(errs.Invalid, "the conditional criteria are not a valid query string")
	}
	if len(vals) == 0 {
		return nil, errs.E(errs.PreconditionFailed, "conditional criteria are empty")
	}
	q, err := s.ParseQuery(typ, vals)
	if err != nil {
		return nil, err
	}
	if len(q.chains) > 0 {
		return nil, badParam(q.chains[0].key, "chained parameters and _has are not offered in conditional criteria")
	}
	// Criteria are a search too: matching over a hidden element would tell
	// the caller, by what the interaction does, what the element holds.
	if err := s.checkElements(ctx, g, q); err != nil {
		return nil, err
	}
	c, err := s.confine(ctx, g, typ, listResources, true, q.whereSQL(), q.args)
	if err != nil {
		return nil, err
	}
	c.args = append(c.args, limit)
	rows, err := rd.Query(ctx, "SELECT r.id FROM "+c.from+" WHERE "+c.where+" ORDER BY r.id LIMIT $"+strconv.Itoa(len(c.args)), c.queryArgs(s.db.Dialect())...)
	if err != nil {
		return nil, fmt.Errorf("conditional match on %s: %w", typ, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// pageAAD binds sealed paging tokens to their use.
var pageAAD = phi.AAD{Table: "fhir_search", Field: "page", Record: "link"}

// SealPage turns a search's parameters and offset into an opaque token for
// paging links, so that search values (PHI) never appear in a link.
func (s *Service) SealPage(q *Query, offset int) (string, error) {
	v := url.Values{}
	for k, vs := range q.Params {
		v[k] = vs
	}
	v.Set("_offset", strconv.Itoa(offset))
	v.Set("_type", q.Type)
	ct, err := s.ring.Seal(pageAAD, []byte(v.Encode()))
	if err != nil {
		return "", err
	}
	return encodeToken(ct), nil
}

// OpenPage reads a token made by SealPage back into the search's type and
// parameters.
func (s *Service) OpenPage(ctx context.Context, token string) (string, url.Values, error) {
	ct, err := decodeToken(token)
	if err != nil {
		return "", nil, errs.E(errs.Invalid, "the paging token is not valid")
	}
	plain, err := s.ring.Open(ctx, pageAAD, ct)
	if err != nil {
		return "", nil, errs.Wrap(errs.Invalid, err, "the paging token is not valid")
	}
	v, err := url.ParseQuery(string(plain))
	if err != nil {
		return "", nil, errs.E(errs.Invalid, "the paging token is not valid")
	}
	typ := v.Get("_type")
	v.Del("_type")
	return typ, v, nil
}

func encodeToken(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeToken(s string) ([]byte, error) {
	if len(s) > 8192 {
		return nil, errors.New("token too long")
	}
	return base64.RawURLEncoding.DecodeString(s)
}
