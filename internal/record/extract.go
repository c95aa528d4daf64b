package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/phi"
)

// indexRows are the search-index rows of one resource version.
type indexRows struct {
	tokens  []tokenRow
	strs    []stringRow
	dates   []dateRow
	refs    []refRow
	numbers []numberRow
}

// tokenRow is one token; blind when code is a blind index (stored as
// blindValue says).
type tokenRow struct {
	param, system, code string
	blind               bool
}

// stringRow is one string: a blind index when raw is nil (PHI), else
// the normalised value and the text as sent.
type stringRow struct {
	param, value string
	raw          *string
}
type dateRow struct {
	param     string
	low, high time.Time
}
type refRow struct{ param, targetType, targetID string }
type numberRow struct {
	param        string
	value        float64
	system, code string
}

// Open ends of a Period and the bounds of what a date can say.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// decodeDoc decodes a resource for index extraction. Numbers stay
// json.Number so decimals keep their text.
func decodeDoc(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// blindDomain separates the blind indexes of each parameter, so that equal
// values under different parameters do not link.
func blindDomain(typ, param string) string { return "record:" + typ + "." + param }

// extract computes the index rows of a resource. PHI values pass through
// the ring's blind index and never reach a row in plain text. It stops,
// refusing the resource, as soon as the rows pass maxRows: a name of many
// parts costs up to 21 rows a part, so rows are capped on their own.
func extract(ring *phi.Ring, typ string, doc map[string]any, maxRows int) (indexRows, error) {
	var rows indexRows
	for _, p := range typeParams[typ] {
		for _, path := range p.Paths {
			for _, v := range walk(doc, path) {
				if err := rows.add(ring, typ, p, v); err != nil {
					return indexRows{}, err
				}
				if rows.count() > maxRows {
					return indexRows{}, limitError(&fhir.LimitError{Limit: fhir.LimitIndexRows, Max: maxRows, Path: typ + "." + paramElement(path)})
				}
			}
		}
	}
	return rows, nil
}

func (rows *indexRows) count() int {
	return len(rows.tokens) + len(rows.strs) + len(rows.dates) + len(rows.refs) + len(rows.numbers)
}

// walk returns the values at path; arrays are flattened at every step.
func walk(doc any, path string) []any {
	cur := []any{doc}
	for step := range strings.SplitSeq(path, ".") {
		name, fkey, fval := step, "", ""
		if i := strings.IndexByte(step, '['); i > 0 && strings.HasSuffix(step, "]") {
			name = step[:i]
			kv := step[i+1 : len(step)-1]
			if j := strings.IndexByte(kv, '='); j > 0 {
				fkey, fval = kv[:j], kv[j+1:]
			}
		}
		var next []any
		for _, c := range cur {
			obj, ok := c.(map[string]any)
			if !ok {
				continue
			}
			v, ok := obj[name]
			if !ok {
				continue
			}
			items, isArr := v.([]any)
			if !isArr {
				items = []any{v}
			}
			for _, it := range items {
				if it == nil {
					continue
				}
				if fkey != "" {
					o, ok := it.(map[string]any)
					if !ok || o[fkey] != fval {
						continue
					}
				}
				next = append(next, it)
			}
		}
		cur = next
	}
	return cur
}

func (rows *indexRows) add(ring *phi.Ring, typ string, p *Param, v any) error {
	switch p.Kind {
	case Token, URI:
		for _, t := range tokensOf(v) {
			code := t.code
			if p.PHI {
				var err error
				if code, err = tokenIndex(ring, typ, p, t.code); err != nil {
					continue // nothing searchable left after normalisation
				}
			}
			rows.tokens = append(rows.tokens, tokenRow{param: p.Name, system: t.system, code: code, blind: p.PHI})
		}
	case String:
		for _, s := range stringsOf(v) {
			if p.PHI && p.Whole {
				if h, err := ring.BlindIndex(blindDomain(typ, p.Name), s); err == nil {
					rows.strs = append(rows.strs, stringRow{param: p.Name, value: h})
				}
				continue
			}
			if p.PHI {
				prefixes, err := ring.NamePrefixIndexes(blindDomain(typ, p.Name), s)
				if err != nil {
					continue
				}
				for _, h := range prefixes {
					rows.strs = append(rows.strs, stringRow{param: p.Name, value: h})
				}
				if h, err := ring.BlindIndex(blindDomain(typ, p.Name+":exact"), s); err == nil {
					rows.strs = append(rows.strs, stringRow{param: p.Name + ":exact", value: h})
				}
				continue
			}
			n := phi.Normalize(s)
			if n == "" {
				continue
			}
			raw := s
			rows.strs = append(rows.strs, stringRow{param: p.Name, value: n, raw: &raw})
		}
	case Date:
		low, high, ok := dateRangeOf(v)
		if ok {
			rows.dates = append(rows.dates, dateRow{param: p.Name, low: low, high: high})
		}
	case Reference:
		var s string
		switch x := v.(type) {
		case map[string]any:
			s, _ = x["reference"].(string)
		case string:
			// A canonical (Questionnaire/x|1.0, or its URL): the
			// resource it names, without the version.
			s, _, _ = strings.Cut(x, "|")
		}
		t, id, ok := parseLiteralRef(s)
		if !ok || (len(p.Targets) > 0 && !contains(p.Targets, t)) {
			return nil
		}
		rows.refs = append(rows.refs, refRow{param: p.Name, targetType: t, targetID: id})
	case Number, Quantity:
		var num json.Number
		system, code := "", ""
		switch x := v.(type) {
		case json.Number:
			num = x
		case map[string]any:
			num, _ = x["value"].(json.Number)
			system, _ = x["system"].(string)
			code, _ = x["code"].(string)
			if code == "" {
				code, _ = x["unit"].(string)
			}
			if code == "" {
				code, _ = x["currency"].(string)
			}
		}
		f, err := num.Float64()
		if num == "" || err != nil {
			return nil
		}
		rows.numbers = append(rows.numbers, numberRow{param: p.Name, value: f, system: system, code: code})
	}
	return nil
}

type token struct{ system, code string }

// tokensOf reads the tokens of a code, boolean, Coding, CodeableConcept,
// Identifier or ContactPoint.
func tokensOf(v any) []token {
	switch x := v.(type) {
	case string:
		return []token{{code: x}}
	case bool:
		return []token{{code: strconv.FormatBool(x)}}
	case map[string]any:
		if codings, ok := x["coding"].([]any); ok {
			var out []token
			for _, c := range codings {
				out = append(out, tokensOf(c)...)
			}
			return out
		}
		sys, _ := x["system"].(string)
		if code, ok := x["code"].(string); ok {
			return []token{{system: sys, code: code}}
		}
		if val, ok := x["value"].(string); ok {
			return []token{{system: sys, code: val}}
		}
	}
	return nil
}

// stringsOf reads the searchable text of a string, HumanName or Address.
func stringsOf(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case map[string]any:
		var out []string
		for _, k := range []string{"text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"} {
			switch y := x[k].(type) {
			case string:
				out = append(out, y)
			case []any:
				for _, s := range y {
					if s, ok := s.(string); ok {
						out = append(out, s)
					}
				}
			}
		}
		return out
	}
	return nil
}

// dateRangeOf reads the range a date, dateTime, instant or Period covers.
func dateRangeOf(v any) (time.Time, time.Time, bool) {
	switch x := v.(type) {
	case string:
		return parseDateRange(x)
	case map[string]any:
		s, hasStart := x["start"].(string)
		e, hasEnd := x["end"].(string)
		if !hasStart && !hasEnd {
			return time.Time{}, time.Time{}, false
		}
		low, high := minTime, maxTime
		if hasStart {
			l, _, ok := parseDateRange(s)
			if !ok {
				return time.Time{}, time.Time{}, false
			}
			low = l
		}
		if hasEnd {
			_, h, ok := parseDateRange(e)
			if !ok {
				return time.Time{}, time.Time{}, false
			}
			high = h
		}
		return low, high, true
	}
	return time.Time{}, time.Time{}, false
}

// parseDateRange reads an R4 date, dateTime or instant (or a search value of
// those forms, where minutes precision and a missing zone are allowed) and
// returns the first and last microsecond it covers, in UTC. A value without
// a zone is taken as UTC.
func parseDateRange(s string) (time.Time, time.Time, bool) {
	switch len(s) {
	case 4:
		t, err := time.Parse("2006", s)
		if err != nil {
			return time.Time{}, time.Time{}, false
		}
		return t, t.AddDate(1, 0, 0).Add(-time.Microsecond), true
	case 7:
		t, err := time.Parse("2006-01", s)
		if err != nil {
			return time.Time{}, time.Time{}, false
		}
		return t, t.AddDate(0, 1, 0).Add(-time.Microsecond), true
	case 10:
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			return time.Time{}, time.Time{}, false
		}
		return t, t.AddDate(0, 0, 1).Add(-time.Microsecond), true
	}
	if len(s) < 16 || s[10] != 'T' {
		return time.Time{}, time.Time{}, false
	}
	// Split off the zone.
	body, zone := s, ""
	if strings.HasSuffix(s, "Z") {
		body, zone = s[:len(s)-1], "Z"
	} else if i := strings.LastIndexAny(s, "+-"); i > 10 {
		body, zone = s[:i], s[i:]
	}
	if zone == "" {
		zone = "Z"
	}
	var layout string
	var step time.Duration
	switch {
	case len(body) == 16:
		layout, step = "2006-01-02T15:04", time.Minute
	case len(body) == 19:
		layout, step = "2006-01-02T15:04:05", time.Second
	case len(body) > 20 && body[19] == '.':
		digits := len(body) - 20
		if digits > 9 {
			return time.Time{}, time.Time{}, false
		}
		layout = "2006-01-02T15:04:05." + strings.Repeat("0", digits)
		step = time.Second
		for range digits {
			step /= 10
		}
		if step < time.Microsecond {
			step = time.Microsecond
		}
	default:
		return time.Time{}, time.Time{}, false
	}
	t, err := time.Parse(layout+"Z07:00", body+zone)
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	t = t.UTC().Truncate(time.Microsecond)
	return t, t.Add(step - time.Microsecond), true
}

// parseLiteralRef reads a literal reference (Type/id, Type/id/_history/v,
// or an absolute URL ending so) into its target. Contained (#id), urn: and
// logical references have no target here.
func parseLiteralRef(s string) (string, string, bool) {
	if s == "" || strings.HasPrefix(s, "#") || strings.HasPrefix(s, "urn:") {
		return "", "", false
	}
	if i := strings.Index(s, "/_history/"); i > 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return "", "", false
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 {
		return "", "", false
	}
	t, id := parts[len(parts)-2], parts[len(parts)-1]
	if !isTypeName(t) || !validID(id) {
		return "", "", false
	}
	return t, id, true
}

func isTypeName(t string) bool {
	if t == "" || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// validID is the R4 id rule: 1 to 64 of A-Z a-z 0-9 - .
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// patientOf returns the id of the patient whose compartment the resource is
// in, or "".
func patientOf(typ, id string, doc map[string]any) string {
	if typ == "Patient" {
		return id
	}
	paths, ok := patientPaths[typ]
	if !ok {
		paths = genericPatientPaths
	}
	for _, p := range paths {
		for _, v := range walk(doc, p) {
			obj, ok := v.(map[string]any)
			if !ok {
				continue
			}
			s, _ := obj["reference"].(string)
			if t, pid, ok := parseLiteralRef(s); ok && t == "Patient" {
				return pid
			}
		}
	}
	return ""
}

// aadRecord is the record part of a version's associated data.
func aadRecord(typ, id string, version int) string {
	return fmt.Sprintf("%s/%s/_history/%d", typ, id, version)
}
