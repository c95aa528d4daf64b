// Package fhir holds careflow's model of FHIR R4 JSON: the resource envelope,
// typed views of the resources the domain reasons about, validation against
// the R4 definitions, search-parameter parsing, Bundles and
// OperationOutcome. It imports nothing else from careflow.
//
// The JSON a client sends is the record: typed views read from it, they never
// replace it, so unknown-but-valid elements, extensions and _element
// primitives round-trip unchanged.
package fhir
