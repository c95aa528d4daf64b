package record

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Paging bounds.
const (
	DefaultCount = 20
	MaxCount     = 500
	// maxIncluded bounds the resources _include and _revinclude add to one
	// page, so that a broad _revinclude cannot turn a page into a dump.
	maxIncluded = 1000
)

// Query is a parsed search. Its SQL is built from the parameters with every
// value bound as an argument; PHI values are replaced by their blind
// indexes before they reach the SQL.
type Query struct {
	Type         string
	Count        int
	Offset       int
	Total        string // none | estimate | accurate
	SummaryCount bool
	// Params are the search's parameters without paging ones, to build
	// links.
	Params url.Values
	// patient is the one patient the search names ("" for none): the
	// search is then decided for that patient before it runs.
	patient string

	where []string
	args  []any
	sorts []sortKey

	includes    []include
	revIncludes []include
	// uses are the elements the search reads, checked against the
	// caller's before it runs (search_fields.go).
	uses []elementUse
	// chains are resolved when the search runs (search_chain.go).
	chains []chain
}

type include struct {
	typ, param, target string // target "" means any
	// params are the reference parameters _include=typ:* follows.
	params []string
}

// arg binds v and returns its parameter marker ($n).
func (q *Query) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

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
// not support fail with 400 rather than being ignored: a typo in a search
// for a patient must not return every patient.
func (s *Service) ParseQuery(typ string, params url.Values) (*Query, error) {
	if !fhir.IsResourceType(typ) {
		return nil, errs.E(errs.NotFound, "%s is not a FHIR R4 resource type this server knows", safeName(typ))
	}
	q := &Query{Type: typ, Count: DefaultCount, Total: "none", Params: url.Values{}}
	q.arg(typ) // $1 is always the type
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys) // stable SQL and links
	for _, key := range keys {
		for _, value := range params[key] {
			if err := s.parseParam(q, key, value); err != nil {
				return nil, err
			}
		}
	}
	q.patient = namedPatient(typ, params)
	return q, nil
}

// namedPatient is the patient a search names: Patient?_id=X, or one
// patient, subject or beneficiary value that is a Patient (or a bare id),
// not a list; "" otherwise.
func namedPatient(typ string, params url.Values) string {
	// Only a valid id names a patient: the access decision and its audit
	// entry take it as one (ParseQuery has refused any other already).
	if typ == "Patient" {
		if v := params["_id"]; len(v) == 1 && validID(v[0]) {
			return v[0]
		}
		return ""
	}
	for _, k := range []string{"patient", "subject", "beneficiary"} {
		if v := params[k]; len(v) == 1 && !strings.Contains(v[0], ",") {
			id := strings.TrimPrefix(v[0], "Patient/")
			if validID(id) {
				return id
			}
		}
	}
	return ""
}

func badParam(name, format string, args ...any) error {
	return errs.E(errs.Invalid, format, args...).InField(name)
}

func (s *Service) parseParam(q *Query, key, value string) error {
	name, modifier, _ := strings.Cut(key, ":")
	switch name {
	case "_format", "_pretty":
		return nil // content negotiation is the HTTP layer's
	case "_count":
		n, err := pagingValue(key, value, 0, MaxCount)
		if err != nil {
			return err
		}
		q.Count = n
		q.Params.Set(key, strconv.Itoa(q.Count))
		return nil
	case "_offset":
		n, err := pagingValue(key, value, 0, MaxOffset)
		if err != nil {
			return err
		}
		q.Offset = n
		return nil
	case "_total":
		switch value {
		case "none", "estimate", "accurate":
			q.Total = value
		default:
			return badParam(key, "_total must be none, estimate or accurate")
		}
		q.Params.Set(key, value)
		return nil
	case "_summary":
		switch value {
		case "count":
			q.SummaryCount = true
		case "false":
		default:
			return badParam(key, "_summary supports count and false")
		}
		q.Params.Set(key, value)
		return nil
	case "_sort":
		for f := range strings.SplitSeq(value, ",") {
			if err := s.parseSort(q, f); err != nil {
				return err
			}
		}
		q.Params.Add(key, value)
		return nil
	case "_include", "_revinclude":
		if modifier != "" && modifier != "iterate" {
			return badParam(key, "%s supports only the :iterate modifier (applied once)", name)
		}
		inc, err := parseInclude(value, name == "_revinclude", q.Type)
		if err != nil {
			return err
		}
		if inc.param == "*" {
			inc.params = referenceParams(inc.typ)
		} else {
			q.useElements(name, inc.typ, typeParams[inc.typ][inc.param])
		}
		if name == "_include" {
			q.includes = append(q.includes, inc)
		} else {
			q.revIncludes = append(q.revIncludes, inc)
		}
		q.Params.Add(key, value)
		return nil
	}
	if name == "_has" {
		if err := s.parseHas(q, key, value); err != nil {
			return err
		}
		q.Params.Add(key, value)
		return nil
	}
	if strings.Contains(name, ".") || strings.Contains(modifier, ".") {
		if err := s.parseChain(q, key, value); err != nil {
			return err
		}
		q.Params.Add(key, value)
		return nil
	}
	cond, err := s.condition(q, name, modifier, value)
	if err != nil {
		return err
	}
	q.where = append(q.where, cond)
	q.Params.Add(key, value)
	return nil
}

func parseInclude(v string, rev bool, searchType string) (include, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return include{}, badParam("_include", "use Type:parameter or Type:parameter:TargetType")
	}
	inc := include{typ: parts[0], param: parts[1]}
	if len(parts) == 3 {
		inc.target = parts[2]
	}
	if !rev && inc.typ != searchType {
		return include{}, badParam("_include", "_include must start with the searched type %s", searchType)
	}
	if inc.param == "*" && !rev {
		return inc, nil
	}
	p := typeParams[inc.typ][inc.param]
	if p == nil || p.Kind != Reference {
		return include{}, badParam("_include", "%s:%s is not a reference search parameter here", safeName(inc.typ), safeName(inc.param))
	}
	return inc, nil
}

func (s *Service) parseSort(q *Query, f string) error {
	desc := strings.HasPrefix(f, "-")
	f = strings.TrimPrefix(f, "-")
	dir := " ASC"
	if desc {
		dir = " DESC"
	}
	switch f {
	case "_id":
		q.sorts = append(q.sorts, sortKey{expr: "r.id" + dir})
		return nil
	case "_lastUpdated":
		q.sorts = append(q.sorts, sortKey{expr: "r.last_updated" + dir})
		return nil
	}
	p := typeParams[q.Type][f]
	if p == nil {
		return badParam("_sort", "cannot sort by %s", safeName(f))
	}
	if p.PHI {
		return badParam("_sort", "sorting on %s is not offered: its values are PHI, kept only as blind indexes", f)
	}
	q.useElements("_sort", q.Type, p)
	agg := "MIN"
	if desc {
		agg = "MAX"
	}
	switch p.Kind {
	case Date:
		q.sorts = append(q.sorts, sortKey{expr: "(SELECT " + agg + "(low) FROM resource_dates x WHERE x.type = r.type AND x.id = r.id AND x.param = %s)" + dir, param: f})
	case String:
		q.sorts = append(q.sorts, sortKey{expr: "(SELECT " + agg + "(value) FROM resource_strings x WHERE x.type = r.type AND x.id = r.id AND x.param = %s)" + dir, param: f})
	default:
		return badParam("_sort", "sorting by %s is not offered; sort by _id, _lastUpdated, a date or a non-PHI string", f)
	}
	return nil
}

// condition builds the SQL for one parameter occurrence: values separated
// by commas are alternatives (OR); repeated parameters are all required.
func (s *Service) condition(q *Query, name, modifier, value string) (string, error) {
	if value == "" {
		return "", badParam(name, "the value of %s is empty", name)
	}
	if err := checkSearchText(name, value); err != nil {
		return "", err
	}
	if name == "_id" {
		if modifier != "" {
			return "", badParam(name, "_id takes no modifier")
		}
		var ors []string
		for _, v := range splitValues(value) {
			if !validID(v) {
				return "", badID(name)
			}
			ors = append(ors, "r.id = "+q.arg(v))
		}
		return "(" + strings.Join(ors, " OR ") + ")", nil
	}
	if name == "_lastUpdated" {
		if modifier != "" {
			return "", badParam(name, "_lastUpdated takes no modifier")
		}
		var ors []string
		for _, v := range splitValues(value) {
			c, err := lastUpdatedCond(q, v)
			if err != nil {
				return "", err
			}
			ors = append(ors, c)
		}
		return "(" + strings.Join(ors, " OR ") + ")", nil
	}
	p := typeParams[q.Type][name]
	if p == nil {
		if why := unsupportedParams[q.Type][name]; why != "" {
			return "", badParam(name, "%s is an R4 search parameter of %s that this server does not answer: %s (see the CapabilityStatement)", name, q.Type, why)
		}
		return "", badParam(name, "%s is not a search parameter of %s on this server (see the CapabilityStatement)", safeName(name), q.Type)
	}
	q.useElements(name, q.Type, p)
	if modifier == "missing" {
		table := tableOf(p.Kind)
		sub := "SELECT x.id FROM " + table + " x WHERE x.type = $1 AND x.param = " + q.arg(p.Name)
		switch value {
		case "true":
			return "r.id NOT IN (" + sub + ")", nil
		case "false":
			return "r.id IN (" + sub + ")", nil
		}
		return "", badParam(name, ":missing takes true or false")
	}
	switch p.Kind {
	case Token:
		return s.tokenCond(q, p, modifier, value)
	case URI:
		return s.uriCond(q, p, modifier, value)
	case String:
		return s.stringCond(q, p, modifier, value)
	case Date:
		return dateCond(q, p, modifier, value)
	case Reference:
		return refCond(q, p, modifier, value)
	default:
		return numberCond(q, p, modifier, value)
	}
}

func tableOf(k Kind) string {
	switch k {
	case Token, URI:
		return "resource_tokens"
	case String:
		return "resource_strings"
	case Date:
		return "resource_dates"
	case Reference:
		return "resource_refs"
	default:
		return "resource_numbers"
	}
}

// splitValues splits on commas not escaped with a backslash and unescapes
// \, \| and \$ .
func splitValues(v string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) && (v[i+1] == ',' || v[i+1] == '$' || v[i+1] == '\\') {
			b.WriteByte(v[i+1])
			i++
			continue
		}
		if c == ',' {
			out = append(out, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(c)
	}
	return append(out, b.String())
}

func (s *Service) tokenCond(q *Query, p *Param, modifier, value string) (string, error) {
	neg := false
	if p.Code {
		if err := refuseBlindCodeModifier(p, modifier); err != nil {
			return "", err
		}
	}
	switch modifier {
	case "":
	case "not":
		neg = true
	case "text", "of-type", "in", "not-in", "above", "below":
		return "", badParam(p.Name, "the :%s modifier is not supported on %s", modifier, p.Name)
	default:
		return "", badParam(p.Name, "unknown modifier :%s", safeName(modifier))
	}
	var ors []string
	for _, v := range splitValues(value) {
		system, code, hasSystem := "", v, false
		if i := strings.IndexByte(v, '|'); i >= 0 {
			system, code, hasSystem = v[:i], v[i+1:], true
		}
		var conds []string
		if code != "" {
			if p.PHI {
				if p.Spec == Date {
					code = strings.TrimPrefix(code, "eq")
					if len(code) != 10 {
						return "", badParam(p.Name, "%s is PHI and searched by exact date only (YYYY-MM-DD, optionally with the eq prefix)", p.Name)
					}
				}
				h, err := tokenIndex(s.ring, q.Type, p, code)
				if err != nil {
					return "", badParam(p.Name, "the value of %s has nothing searchable", p.Name)
				}
				code = h
			}
			conds = append(conds, "x.code = "+q.arg(code))
		}
		if hasSystem {
			conds = append(conds, "x.system = "+q.arg(system))
		}
		if len(conds) == 0 {
			return "", badParam(p.Name, "the value of %s is empty", p.Name)
		}
		ors = append(ors, "("+strings.Join(conds, " AND ")+")")
	}
	sub := "SELECT x.id FROM resource_tokens x WHERE x.type = $1 AND x.param = " + q.arg(p.Name) + " AND (" + strings.Join(ors, " OR ") + ")"
	if neg {
		return "r.id NOT IN (" + sub + ")", nil
	}
	return "r.id IN (" + sub + ")", nil
}

func (s *Service) stringCond(q *Query, p *Param, modifier, value string) (string, error) {
	switch modifier {
	case "", "exact", "contains":
	case "text":
		return "", badParam(p.Name, "the :text modifier is not supported on %s", p.Name)
	default:
		return "", badParam(p.Name, "unknown modifier :%s", safeName(modifier))
	}
	if p.PHI && modifier == "contains" {
		return "", badParam(p.Name, ":contains is not offered on %s: it is PHI, searchable only by blind indexes of whole values and prefixes", p.Name)
	}
	var ors []string
	for _, v := range splitValues(value) {
		if p.PHI {
			cond, err := s.phiStringCond(q, p, modifier, v)
			if err != nil {
				return "", err
			}
			ors = append(ors, cond)
			continue
		}
		pa := q.arg(p.Name)
		switch modifier {
		case "exact":
			ors = append(ors, "r.id IN (SELECT x.id FROM resource_strings x WHERE x.type = $1 AND x.param = "+pa+" AND x.raw = "+q.arg(v)+")")
		case "contains":
			n := phi.Normalize(v)
			ors = append(ors, "r.id IN (SELECT x.id FROM resource_strings x WHERE x.type = $1 AND x.param = "+pa+" AND x.value LIKE "+q.arg("%"+escapeLike(n)+"%")+" ESCAPE '\\')")
		default:
			n := phi.Normalize(v)
			if n == "" {
				return "", badParam(p.Name, "the value of %s has no letters or digits", p.Name)
			}
			// A range on the index instead of LIKE, so that both databases
			// use the (type, param, value) index for starts-with.
			ors = append(ors, "r.id IN (SELECT x.id FROM resource_strings x WHERE x.type = $1 AND x.param = "+pa+" AND x.value >= "+q.arg(n)+" AND x.value < "+q.arg(n+"\U0010FFFF")+")")
		}
	}
	return "(" + strings.Join(ors, " OR ") + ")", nil
}

// phiStringCond matches one PHI string value through blind indexes: each
// typed word against the prefix tokens (of this parameter and those in
// Also), :exact (and every Whole parameter) against whole values. The
// alternatives (a name is searched in the name, family and given rows)
// are a UNION ALL of one look-up each, so that each is a range of the
// (type, param, value) index: as an OR inside one look-up, SQLite read
// every string row of the type instead.
func (s *Service) phiStringCond(q *Query, p *Param, modifier, v string) (string, error) {
	noLetters := badParam(p.Name, "the value of %s has no letters or digits", p.Name)
	params := append([]string{p.Name}, p.Also...)
	if p.Whole || modifier == "exact" {
		var alts []string
		for _, name := range params {
			param, domain := name+":exact", name+":exact"
			if typeParams[q.Type][name].Whole {
				param, domain = name, name
			}
			h, err := s.ring.BlindIndex(blindDomain(q.Type, domain), v)
			if err != nil {
				return "", noLetters
			}
			alts = append(alts, stringLookup(q, param, h))
		}
		return "r.id IN (" + strings.Join(alts, " UNION ALL ") + ")", nil
	}
	parts := phi.NameQueryParts(v)
	if len(parts) == 0 {
		return "", noLetters
	}
	var ands []string
	for _, part := range parts {
		var alts []string
		for _, name := range params {
			hs, err := s.ring.NameQueryIndexes(blindDomain(q.Type, name), part)
			if err != nil || len(hs) != 1 {
				return "", noLetters
			}
			alts = append(alts, stringLookup(q, name, hs[0]))
		}
		ands = append(ands, "r.id IN ("+strings.Join(alts, " UNION ALL ")+")")
	}
	return "(" + strings.Join(ands, " AND ") + ")", nil
}

// stringLookup selects the ids of the type's resources with one string
// row: one range of the (type, param, value) index.
func stringLookup(q *Query, param, value string) string {
	return "SELECT x.id FROM resource_strings x WHERE x.type = $1 AND x.param = " + q.arg(param) + " AND x.value = " + q.arg(value)
}

func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// prefixes are the R4 comparison prefixes.
var prefixes = []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

func splitPrefix(v string) (string, string) {
	if len(v) > 2 {
		for _, p := range prefixes {
			if strings.HasPrefix(v, p) {
				return p, v[2:]
			}
		}
	}
	return "eq", v
}

// rangeCond is the condition on a stored range [lo, hi] for a prefix and a
// query range [a, b] (R4 3.1.1.4.1 semantics).
func rangeCond(q *Query, lo, hi, prefix string, a, b any, apA, apB any) string {
	switch prefix {
	case "gt":
		return hi + " > " + q.arg(b)
	case "lt":
		return lo + " < " + q.arg(a)
	case "ge":
		return "(" + hi + " > " + q.arg(b) + " OR (" + lo + " >= " + q.arg(a) + " AND " + hi + " <= " + q.arg(b) + "))"
	case "le":
		return "(" + lo + " < " + q.arg(a) + " OR (" + lo + " >= " + q.arg(a) + " AND " + hi + " <= " + q.arg(b) + "))"
	case "sa":
		return lo + " > " + q.arg(b)
	case "eb":
		return hi + " < " + q.arg(a)
	case "ap":
		return "(" + lo + " <= " + q.arg(apB) + " AND " + hi + " >= " + q.arg(apA) + ")"
	default: // eq, and ne negated by the caller
		return "(" + lo + " >= " + q.arg(a) + " AND " + hi + " <= " + q.arg(b) + ")"
	}
}

// approxDates widens a date range by a tenth of its distance from now, at
// least a day, for the ap prefix.
func approxDates(a, b time.Time) (time.Time, time.Time) {
	gap := time.Since(a)
	if gap < 0 {
		gap = -gap
	}
	w := max(gap/10, 24*time.Hour)
	return a.Add(-w), b.Add(w)
}

func parseDateValue(name, v string) (string, time.Time, time.Time, error) {
	prefix, rest := splitPrefix(v)
	a, b, ok := parseDateRange(rest)
	if !ok {
		return "", time.Time{}, time.Time{}, badParam(name, "the value of %s is not a FHIR date or dateTime", name)
	}
	return prefix, a, b, nil
}

func dateCond(q *Query, p *Param, modifier, value string) (string, error) {
	if modifier != "" {
		return "", badParam(p.Name, "unknown modifier :%s on a date parameter", safeName(modifier))
	}
	var ors []string
	for _, v := range splitValues(value) {
		prefix, a, b, err := parseDateValue(p.Name, v)
		if err != nil {
			return "", err
		}
		apA, apB := approxDates(a, b)
		c := rangeCond(q, "x.low", "x.high", prefix, a, b, apA, apB)
		in := "IN"
		if prefix == "ne" {
			in = "NOT IN"
		}
		sub := "r.id " + in + " (SELECT x.id FROM resource_dates x WHERE x.type = $1 AND x.param = " + q.arg(p.Name) + " AND " + c + ")"
		ors = append(ors, sub)
	}
	return "(" + strings.Join(ors, " OR ") + ")", nil
}

func lastUpdatedCond(q *Query, v string) (string, error) {
	prefix, a, b, err := parseDateValue("_lastUpdated", v)
	if err != nil {
		return "", err
	}
	apA, apB := approxDates(a, b)
	c := rangeCond(q, "r.last_updated", "r.last_updated", prefix, a, b, apA, apB)
	if prefix == "ne" {
		c = "NOT " + c
	}
	return c, nil
}

func refCond(q *Query, p *Param, modifier, value string) (string, error) {
	typeFilter := ""
	switch {
	case modifier == "":
	case modifier == "identifier" || modifier == "above" || modifier == "below":
		return "", badParam(p.Name, "the :%s modifier is not supported on %s", modifier, p.Name)
	case isTypeName(modifier) && fhir.IsResourceType(modifier):
		typeFilter = modifier
	default:
		return "", badParam(p.Name, "unknown modifier :%s", safeName(modifier))
	}
	var ors []string
	for _, v := range splitValues(value) {
		t, id := "", v
		if strings.Contains(v, "/") {
			var ok bool
			t, id, ok = parseLiteralRef(v)
			if !ok {
				return "", badParam(p.Name, "the value of %s is not a reference this server can match (use Type/id or id)", p.Name)
			}
		} else if !validID(id) {
			return "", badID(p.Name)
		}
		if typeFilter != "" {
			if t != "" && t != typeFilter {
				return "", badParam(p.Name, "the :%s modifier disagrees with the value's type", typeFilter)
			}
			t = typeFilter
		}
		if t == "" && len(p.Targets) == 1 {
			t = p.Targets[0]
		}
		c := "x.target_id = " + q.arg(id)
		if t != "" {
			c += " AND x.target_type = " + q.arg(t)
		}
		ors = append(ors, "("+c+")")
	}
	return "r.id IN (SELECT x.id FROM resource_refs x WHERE x.type = $1 AND x.param = " + q.arg(p.Name) + " AND (" + strings.Join(ors, " OR ") + "))", nil
}

func numberCond(q *Query, p *Param, modifier, value string) (string, error) {
	if modifier != "" {
		return "", badParam(p.Name, "unknown modifier :%s on a number parameter", safeName(modifier))
	}
	var ors []string
	for _, v := range splitValues(value) {
		prefix, rest := splitPrefix(v)
		num, system, code := rest, "", ""
		if p.Kind == Quantity {
			parts := strings.SplitN(rest, "|", 3)
			num = parts[0]
			if len(parts) == 3 {
				system, code = parts[1], parts[2]
			} else if len(parts) == 2 {
				return "", badParam(p.Name, "a quantity is number, number|system|code or number||code")
			}
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", badParam(p.Name, "the value of %s is not a number", p.Name)
		}
		// Implicit precision: 100 means [99.5, 100.5).
		decimals := 0
		if i := strings.IndexByte(num, '.'); i >= 0 {
			decimals = len(num) - i - 1
		}
		half := 0.5 * math.Pow10(-decimals)
		a, b := f-half, f+half
		ap := math.Abs(f) * 0.1
		var c string
		switch prefix {
		case "ap":
			c = "(x.value >= " + q.arg(f-ap) + " AND x.value <= " + q.arg(f+ap) + ")"
		case "gt", "sa":
			c = "x.value > " + q.arg(f)
		case "lt", "eb":
			c = "x.value < " + q.arg(f)
		case "ge":
			c = "x.value >= " + q.arg(f)
		case "le":
			c = "x.value <= " + q.arg(f)
		case "eq", "ne":
			c = "(x.value >= " + q.arg(a) + " AND x.value < " + q.arg(b) + ")"
		}
		if system != "" {
			c += " AND x.system = " + q.arg(system)
		}
		if code != "" {
			c += " AND x.code = " + q.arg(code)
		}
		in := "IN"
		if prefix == "ne" {
			in = "NOT IN"
		}
		ors = append(ors, "r.id "+in+" (SELECT x.id FROM resource_numbers x WHERE x.type = $1 AND x.param = "+q.arg(p.Name)+" AND "+c+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", nil
}

func (q *Query) whereSQL() string {
	w := "r.type = $1 AND r.deleted = FALSE"
	for _, c := range q.where {
		w += " AND " + c
	}
	return w
}

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
	if err := allow(ctx, g, Access{Action: ActSearch, Type: q.Type, PatientID: q.patient}); err != nil {
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
		c.args = append(c.args, k.param)
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
		sqlText := "SELECT target_type, target_id FROM resource_refs WHERE type = $1 AND " + d.InList("id", "$2")
		args := []any{q.Type, idList}
		if inc.param != "*" {
			args = append(args, inc.param)
			sqlText += " AND param = $" + strconv.Itoa(len(args))
		} else {
			// Only the parameters the caller may follow (checkElements).
			if len(inc.params) == 0 {
				continue
			}
			args = append(args, d.ListArg(inc.params))
			sqlText += " AND " + d.InList("param", "$"+strconv.Itoa(len(args)))
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
		where := "r.type = $1 AND r.deleted = FALSE AND r.id IN (SELECT x.id FROM resource_refs x WHERE x.type = $1 AND x.param = $2 AND x.target_type = $3 AND " +
			d.InList("x.target_id", "$4") + ")"
		if err := add(inc.typ, where, []any{inc.typ, inc.param, q.Type, idList}); err != nil {
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

// sortKey is one _sort field: an ORDER BY expression, with %s standing for
// the parameter name's parameter marker when param is set.
type sortKey struct {
	expr  string
	param string
}

func encodeToken(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeToken(s string) ([]byte, error) {
	if len(s) > 8192 {
		return nil, errors.New("token too long")
	}
	return base64.RawURLEncoding.DecodeString(s)
}
