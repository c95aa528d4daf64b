package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SearchParam is one R4 SearchParameter of one resource type, its FHIRPath
// expression turned into the element paths the record indexes. Paths are
// dot-separated from the resource root; a step may carry a filter
// "telecom[system=phone]" (from .where(system='phone')); choice elements
// are listed by their concrete names (effectiveDateTime, effectivePeriod),
// narrowed by ofType/as when the expression names a type.
type SearchParam struct {
	Type string `json:"type"`
	Name string `json:"name"`
	// Kind is the R4 search-param-type: token, string, date, reference,
	// number, quantity, uri, composite, special.
	Kind  string   `json:"kind"`
	Paths []string `json:"paths,omitempty"`
	// Targets are the resource types a reference may point at, narrowed by
	// .where(resolve() is T); empty for any.
	Targets []string `json:"targets,omitempty"`
	// Via are the datatypes the paths pass through or end at (HumanName,
	// Address, ContactPoint, Identifier, CodeableConcept, code, ...), sorted:
	// what the record's PHI rule looks at.
	Via []string `json:"via,omitempty"`
	// Fixed is true when every element the paths end at is a boolean or
	// bound to a required value set: its values come from a small fixed
	// set, not from an open terminology.
	Fixed bool `json:"fixed,omitempty"`
	// Unsupported says why the expression cannot be indexed as element
	// paths (a composite, an extension, a computed condition); such a
	// parameter is refused by the record.
	Unsupported string `json:"unsupported,omitempty"`
}

type searchParameter struct {
	ResourceType string   `json:"resourceType"`
	Code         string   `json:"code"`
	Base         []string `json:"base"`
	Type         string   `json:"type"`
	Expression   string   `json:"expression"`
	Target       []string `json:"target"`
}

// elemInfo is one element of a type's definition, as the path resolver
// needs it.
type elemInfo struct {
	types    []string // type codes; Reference targets stripped
	required bool
	cref     string
}

// searchParams reads the R4 SearchParameter bundle and resolves each
// parameter of each resource type against the type definitions in t.
func searchParams(dir string, t *Table) ([]SearchParam, error) {
	raws, err := readBundle(filepath.Join(dir, "search-parameters.json"))
	if err != nil {
		return nil, err
	}
	defs := map[string]map[string]elemInfo{}
	resources := map[string]bool{}
	for _, ty := range t.Types {
		m := map[string]elemInfo{}
		for _, e := range ty.Elements {
			var types []string
			for _, c := range strings.Split(e[3].(string), "|") {
				c, _, _ = strings.Cut(c, ":")
				if c != "" {
					types = append(types, c)
				}
			}
			m[e[0].(string)] = elemInfo{types: types, required: e[4].(string) != "", cref: e[5].(string)}
		}
		defs[ty.Name] = m
		if ty.Kind == "resource" && !ty.Abstract {
			resources[ty.Name] = true
		}
	}
	var out []SearchParam
	seen := map[string]bool{}
	for _, raw := range raws {
		var sp searchParameter
		if err := json.Unmarshal(raw, &sp); err != nil {
			return nil, err
		}
		if sp.ResourceType != "SearchParameter" {
			continue
		}
		for _, base := range sp.Base {
			if !resources[base] || seen[base+"."+sp.Code] {
				continue
			}
			seen[base+"."+sp.Code] = true
			p := SearchParam{Type: base, Name: sp.Code, Kind: sp.Type}
			resolveParam(&p, sp, defs)
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func resolveParam(p *SearchParam, sp searchParameter, defs map[string]map[string]elemInfo) {
	switch sp.Type {
	case "composite", "special":
		p.Unsupported = sp.Type + " parameters are not indexed"
		return
	}
	if sp.Expression == "" {
		p.Unsupported = "no FHIRPath expression"
		return
	}
	targets := map[string]bool{}
	var narrowed []string
	via := map[string]bool{}
	fixed := true
	for _, part := range splitTop(sp.Expression, '|') {
		part = unparen(strings.TrimSpace(part))
		if a, ty, ok := cutTop(part, " as "); ok {
			part = unparen(strings.TrimSpace(a)) + ".ofType(" + strings.TrimSpace(ty) + ")"
		}
		steps := splitTop(part, '.')
		if len(sp.Base) == 1 && len(steps) > 0 && steps[0] != "" && steps[0][0] >= 'a' && steps[0][0] <= 'z' {
			// R4 writes a few expressions without their type
			// (InsurancePlan.name is "name | alias").
			steps = append([]string{p.Type}, steps...)
		}
		if len(steps) == 0 || unparen(steps[0]) != p.Type {
			continue // another base type's part
		}
		states := []resolved{{typ: p.Type}}
		for _, st := range steps[1:] {
			var err error
			states, err = step(states, st, defs, &narrowed)
			if err != nil {
				p.Unsupported = err.Error()
				p.Paths, p.Via = nil, nil
				return
			}
		}
		for _, s := range states {
			if s.path == "" || !kindHolds(sp.Type, s.final) {
				continue
			}
			p.Paths = append(p.Paths, s.path)
			for v := range s.via {
				via[v] = true
			}
			if !s.required && s.final != "boolean" {
				fixed = false
			}
		}
	}
	if len(p.Paths) == 0 {
		p.Unsupported = "the expression reaches no element of " + p.Type + " that a " + sp.Type + " index holds"
		return
	}
	p.Paths = dedupe(p.Paths)
	p.Via = sortedKeys(via)
	p.Fixed = fixed
	if sp.Type == "reference" {
		for _, t := range sp.Target {
			targets[t] = true
		}
		if len(narrowed) > 0 {
			targets = map[string]bool{}
			for _, t := range narrowed {
				targets[t] = true
			}
		}
		if !targets["Resource"] {
			p.Targets = sortedKeys(targets)
		}
	}
}

// kindHolds reports whether an element of type typ yields values of a
// search parameter kind: a choice such as Procedure.performed[x] has
// variants (performedString, performedAge) that a date index cannot hold,
// and a path to one would only make the parameter read an element it
// never indexes.
func kindHolds(kind, typ string) bool {
	var ok []string
	switch kind {
	case "date":
		ok = []string{"date", "dateTime", "instant", "Period"}
	case "number":
		ok = []string{"decimal", "integer", "positiveInt", "unsignedInt"}
	case "quantity":
		ok = []string{"Quantity", "Age", "Count", "Distance", "Duration", "Money", "SimpleQuantity", "MoneyQuantity"}
	case "reference":
		ok = []string{"Reference", "canonical"}
	case "string":
		ok = []string{"string", "markdown", "HumanName", "Address"}
	case "uri":
		ok = []string{"uri", "url", "canonical", "oid", "uuid"}
	case "token":
		ok = []string{"code", "Coding", "CodeableConcept", "Identifier", "ContactPoint", "boolean", "string", "id", "uri", "canonical"}
	default:
		return true
	}
	for _, t := range ok {
		if t == typ {
			return true
		}
	}
	return false
}

// resolved is one path being followed: the concrete JSON path so far and
// where in the definitions it stands.
type resolved struct {
	path     string
	typ      string // the type whose elements the next step looks up
	rel      string // the element path inside typ ("" at its root)
	final    string // the type code of the element reached
	required bool
	via      map[string]bool
}

// step follows one FHIRPath step (a member name or one of the functions
// the record can index as a path) from every state.
func step(states []resolved, st string, defs map[string]map[string]elemInfo, narrowed *[]string) ([]resolved, error) {
	name, arg, isCall := strings.Cut(st, "(")
	if isCall {
		arg = strings.TrimSuffix(arg, ")")
		switch name {
		case "ofType", "as":
			var out []resolved
			for _, s := range states {
				if s.final == arg {
					out = append(out, s)
				}
			}
			return out, nil
		case "where":
			if ty, ok := strings.CutPrefix(arg, "resolve() is "); ok {
				*narrowed = append(*narrowed, ty)
				return states, nil
			}
			k, v, ok := strings.Cut(arg, "=")
			if !ok || !strings.HasPrefix(v, "'") || !strings.HasSuffix(v, "'") || strings.ContainsAny(k, " ()") {
				return nil, fmt.Errorf("the condition where(%s) is not an element filter", arg)
			}
			out := make([]resolved, len(states))
			for i, s := range states {
				s.path += "[" + k + "=" + strings.Trim(v, "'") + "]"
				out[i] = s
			}
			return out, nil
		}
		return nil, fmt.Errorf("the function %s() is not indexed as an element path", name)
	}
	var out []resolved
	for _, s := range states {
		elems := defs[s.typ]
		rel := joinPath(s.rel, name)
		if e, ok := elems[rel]; ok {
			if e.cref != "" {
				rel = e.cref
				e.types = []string{"BackboneElement"}
			}
			for _, ty := range e.types {
				out = append(out, follow(s, name, rel, ty, e.required))
			}
			continue
		}
		if e, ok := elems[rel+"[x]"]; ok {
			for _, ty := range e.types {
				n := follow(s, name+strings.ToUpper(ty[:1])+ty[1:], rel+"[x]", ty, e.required)
				out = append(out, n)
			}
			continue
		}
		return nil, fmt.Errorf("%s is not an element of %s", name, s.typ)
	}
	return out, nil
}

func follow(s resolved, member, rel, ty string, required bool) resolved {
	n := resolved{path: joinPath(s.path, member), final: ty, required: required, via: map[string]bool{ty: true}}
	for v := range s.via {
		n.via[v] = true
	}
	if ty == "BackboneElement" || ty == "Element" {
		n.typ, n.rel = s.typ, rel
	} else {
		n.typ, n.rel = ty, ""
	}
	return n
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// splitTop splits s at sep outside parentheses and quotes.
func splitTop(s string, sep byte) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == sep && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// cutTop cuts s at the first sep outside parentheses.
func cutTop(s, sep string) (string, string, bool) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		}
		if depth == 0 && strings.HasPrefix(s[i:], sep) {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// unparen removes parentheses that enclose the whole of s.
func unparen(s string) string {
	for strings.HasPrefix(s, "(") && strings.HasSuffix(s, ")") {
		depth := 0
		whole := true
		for i := 0; i < len(s)-1; i++ {
			switch s[i] {
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				whole = false
				break
			}
		}
		if !whole {
			return s
		}
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// patientCompartment reads which resource types R4's Patient compartment
// holds and through which parameters.
func patientCompartment(dir string) (map[string][]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "compartmentdefinition-patient.json"))
	if err != nil {
		return nil, err
	}
	var cd struct {
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(data, &cd); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, r := range cd.Resource {
		if len(r.Param) > 0 {
			out[r.Code] = r.Param
		}
	}
	return out, nil
}
