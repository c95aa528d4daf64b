package record

import (
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
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

// paramArg is arg of the key of the query type's parameter name, as the
// index rows hold it (paramKey).
func (q *Query) paramArg(name string) string { return q.arg(paramKey(q.Type, name)) }

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
		q.sorts = append(q.sorts, sortKey{expr: "(SELECT " + agg + "(low) FROM resource_dates x WHERE x.rid = r.rid AND x.param = %s)" + dir, param: f})
	case String:
		q.sorts = append(q.sorts, sortKey{expr: "(SELECT " + agg + "(value) FROM resource_strings x WHERE x.rid = r.rid AND x.param = %s)" + dir, param: f})
	default:
		return badParam("_sort", "sorting by %s is not offered; sort by _id, _lastUpdated, a date or a non-PHI string", f)
	}
	return nil
}

// sortKey is one _sort field: an ORDER BY expression, with %s standing for
// the parameter name's parameter marker when param is set.
type sortKey struct {
	expr  string
	param string
}
