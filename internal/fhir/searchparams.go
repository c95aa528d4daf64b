package fhir

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"sync"
)

// SearchParam is one R4 SearchParameter of a resource type, as the
// generator (internal/gen, search.go) resolved its FHIRPath expression
// against the pinned definitions: the element paths it indexes, the
// datatypes on the way, and why it cannot be indexed when it cannot.
type SearchParam struct {
	Name string `json:"name"`
	// Kind is the R4 search-param-type (token, string, date, reference,
	// number, quantity, uri, composite, special).
	Kind string `json:"kind"`
	// Paths are element paths from the resource root, dot-separated, every
	// step descending into arrays; a step may carry a filter
	// "telecom[system=phone]"; choice elements are named concretely.
	Paths []string `json:"paths"`
	// Targets are the types a reference parameter may point at (empty:
	// any).
	Targets []string `json:"targets"`
	// Via are the datatypes the paths pass through or end at, sorted.
	Via []string `json:"via"`
	// Fixed: every element reached is a boolean or has a required binding.
	Fixed bool `json:"fixed"`
	// Unsupported, when set, says why the parameter is not indexed.
	Unsupported string `json:"unsupported"`
}

type searchTable struct {
	Params []struct {
		Type string `json:"type"`
		SearchParam
	} `json:"searchParams"`
	PatientCompartment map[string][]string `json:"patientCompartment"`
}

type searchDefs struct {
	byType             map[string][]SearchParam
	patientCompartment map[string][]string
}

var loadSearchDefs = sync.OnceValue(func() *searchDefs {
	zr, err := gzip.NewReader(bytes.NewReader(r4defsGz))
	if err != nil {
		panic("fhir: embedded R4 definitions: " + err.Error())
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		panic("fhir: embedded R4 definitions: " + err.Error())
	}
	var t searchTable
	if err := json.Unmarshal(raw, &t); err != nil {
		panic("fhir: embedded R4 definitions: " + err.Error())
	}
	d := &searchDefs{byType: map[string][]SearchParam{}, patientCompartment: t.PatientCompartment}
	for _, p := range t.Params {
		d.byType[p.Type] = append(d.byType[p.Type], p.SearchParam)
	}
	return d
})

// SearchParams returns the R4 search parameters defined on a resource type
// itself (not the ones every resource has: _id, _lastUpdated, _tag, ...),
// sorted by name. The slice and its members must not be modified.
func SearchParams(resourceType string) []SearchParam {
	return loadSearchDefs().byType[resourceType]
}

// SearchParamTypes lists the resource types that have search parameters.
func SearchParamTypes() []string {
	d := loadSearchDefs()
	out := make([]string, 0, len(d.byType))
	for t := range d.byType {
		out = append(out, t)
	}
	return out
}

// PatientCompartmentParams returns the parameters through which R4's
// Patient compartment holds a resource of the type, or nil when the type
// is not in it.
func PatientCompartmentParams(resourceType string) []string {
	return loadSearchDefs().patientCompartment[resourceType]
}
