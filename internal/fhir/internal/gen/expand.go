package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

type codeSystem struct {
	ResourceType string    `json:"resourceType"`
	URL          string    `json:"url"`
	Content      string    `json:"content"`
	Concept      []concept `json:"concept"`
}

type concept struct {
	Code    string    `json:"code"`
	Concept []concept `json:"concept"`
}

type valueSet struct {
	ResourceType string `json:"resourceType"`
	URL          string `json:"url"`
	Compose      *struct {
		Include []include `json:"include"`
		Exclude []include `json:"exclude"`
	} `json:"compose"`
	Expansion *struct {
		Contains []contains `json:"contains"`
	} `json:"expansion"`
}

type include struct {
	System   string                  `json:"system"`
	Concept  []struct{ Code string } `json:"concept"`
	Filter   []json.RawMessage       `json:"filter"`
	ValueSet []string                `json:"valueSet"`
}

type contains struct {
	System   string     `json:"system"`
	Code     string     `json:"code"`
	Contains []contains `json:"contains"`
}

// codeSet is a value set's codes, per system.
type codeSet map[string]map[string]bool

func (c codeSet) add(system, code string) {
	if c[system] == nil {
		c[system] = map[string]bool{}
	}
	c[system][code] = true
}

func (c codeSet) sorted() map[string][]string {
	out := make(map[string][]string, len(c))
	for sys, codes := range c {
		list := make([]string, 0, len(codes))
		for code := range codes {
			list = append(list, code)
		}
		sort.Strings(list)
		out[sys] = list
	}
	return out
}

// expander expands value sets from the CodeSystems and ValueSets that ship in
// the package. It only enumerates: a filter, an external code system or a
// code system whose content is not in the package makes the value set
// unexpandable, and the caller records why.
type expander struct {
	systems   map[string]codeSystem
	valueSets map[string]valueSet
}

func newExpander(dir string) (*expander, error) {
	x := &expander{systems: map[string]codeSystem{}, valueSets: map[string]valueSet{}}
	for _, file := range []string{"valuesets.json", "v3-codesystems.json", "v2-tables.json"} {
		resources, err := readBundle(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		for _, raw := range resources {
			var head struct{ ResourceType, URL string }
			if err := json.Unmarshal(raw, &head); err != nil {
				return nil, err
			}
			switch head.ResourceType {
			case "CodeSystem":
				var cs codeSystem
				if err := json.Unmarshal(raw, &cs); err != nil {
					return nil, err
				}
				// The first definition of a URL wins: valuesets.json (the
				// FHIR core) is read first and is authoritative for R4.
				if _, dup := x.systems[cs.URL]; !dup {
					x.systems[cs.URL] = cs
				}
			case "ValueSet":
				var vs valueSet
				if err := json.Unmarshal(raw, &vs); err != nil {
					return nil, err
				}
				if _, dup := x.valueSets[vs.URL]; !dup {
					x.valueSets[vs.URL] = vs
				}
			}
		}
	}
	return x, nil
}

func (x *expander) expand(url string, depth int) (codeSet, error) {
	if depth > 10 {
		return nil, fmt.Errorf("value set imports nest too deep")
	}
	vs, ok := x.valueSets[url]
	if !ok {
		return nil, fmt.Errorf("value set not in the package")
	}
	out := codeSet{}
	if vs.Compose == nil {
		if vs.Expansion == nil {
			return nil, fmt.Errorf("value set has neither compose nor expansion")
		}
		var walk func([]contains)
		walk = func(cs []contains) {
			for _, c := range cs {
				if c.Code != "" {
					out.add(c.System, c.Code)
				}
				walk(c.Contains)
			}
		}
		walk(vs.Expansion.Contains)
		return out, nil
	}
	for _, inc := range vs.Compose.Include {
		part, err := x.include(inc, depth)
		if err != nil {
			return nil, err
		}
		for sys, codes := range part {
			for code := range codes {
				out.add(sys, code)
			}
		}
	}
	for _, exc := range vs.Compose.Exclude {
		part, err := x.include(exc, depth)
		if err != nil {
			return nil, err
		}
		for sys, codes := range part {
			for code := range codes {
				delete(out[sys], code)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("value set expands to no codes")
	}
	return out, nil
}

func (x *expander) include(inc include, depth int) (codeSet, error) {
	if len(inc.Filter) > 0 {
		return nil, fmt.Errorf("include of %s uses a filter", inc.System)
	}
	if len(inc.ValueSet) > 0 {
		if inc.System != "" {
			return nil, fmt.Errorf("include intersects %s with value sets", inc.System)
		}
		out := codeSet{}
		for _, u := range inc.ValueSet {
			u, _, _ = strings.Cut(u, "|")
			part, err := x.expand(u, depth+1)
			if err != nil {
				return nil, fmt.Errorf("imported %s: %w", u, err)
			}
			for sys, codes := range part {
				for code := range codes {
					out.add(sys, code)
				}
			}
		}
		return out, nil
	}
	out := codeSet{}
	if len(inc.Concept) > 0 {
		for _, c := range inc.Concept {
			out.add(inc.System, c.Code)
		}
		return out, nil
	}
	cs, ok := x.systems[inc.System]
	if !ok {
		return nil, fmt.Errorf("code system %s is not in the package", inc.System)
	}
	if cs.Content != "complete" {
		return nil, fmt.Errorf("code system %s has content %q", inc.System, cs.Content)
	}
	var walk func([]concept)
	walk = func(cs []concept) {
		for _, c := range cs {
			out.add(inc.System, c.Code)
			walk(c.Concept)
		}
	}
	walk(cs.Concept)
	return out, nil
}
