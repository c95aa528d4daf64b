package record

import (
	"slices"
	"strings"

	"github.com/careflow/careflow/internal/fhir"
)

// The search parameters are R4's own, generated from the pinned
// definitions (fhir.SearchParams: every SearchParameter of every resource
// type, its FHIRPath expression resolved to element paths). What this file
// adds is the one decision the definitions cannot make: which values are
// PHI and how they are indexed. It is a rule over what the definitions say
// of each parameter, not a list per parameter, so a type or parameter that
// R4 adds is decided the moment it is generated:
//
//   - A HumanName anywhere (a patient's, a practitioner's, a relative's) is
//     PHI: its parts are blind-indexed by prefix and whole. A type that
//     has family and given parameters indexes name over the other parts
//     (text, prefix, suffix) and lets name match the family and given rows
//     (Also), instead of indexing every part twice.
//   - An Address string is PHI, indexed whole only; a ContactPoint token
//     (phone, email, telecom) is PHI, exact only; a birth date is PHI,
//     matched as one exact date (a token whose spec type is date).
//   - In a patient record (Patient, a type of R4's Patient compartment, or
//     one this server puts in a compartment, patientPaths): an Identifier
//     is PHI; a token that is not bound to a small fixed value set (a
//     required binding, or a boolean) is a clinical code, blind-indexed
//     exactly (blindcodes.go), unless plainTokens names it with its
//     reason; a string is free text about the patient, indexed whole only;
//     a uri is exact only, blind.
//   - Everything else stays plain: dates, numbers, quantities, references
//     (opaque ids), and the codes, names and identifiers of records that
//     are no patient's (organisations, locations, definitions).
//
// Parameters whose expression is not a set of element paths (composite
// parameters, extensions, computed conditions such as Patient.deceased)
// are not indexed; a search naming one is refused with a 400 that says
// why (unsupportedParams). Chains and _has are answered over the reference
// parameters (search_chain.go).

// plainTokens are the tokens of patient records that stay plain though
// their binding is open: each is a record's kind or state in a handful of
// values, which a blind index would not hide (counting undoes it) and
// lists lean on. A key is a parameter name (every type) or Type.name.
var plainTokens = map[string]string{
	"class":                         "AMB/EMER/IMP...: the setting, a handful of values",
	"class-type":                    "group/plan/subgroup...: the insurance's structure",
	"severity":                      "mild/moderate/severe: how, not what; three values",
	"scope":                         "adr/research/patient-privacy/treatment: the kind of consent",
	"action":                        "access/collect/use/disclose/correct: what a consent governs",
	"business-status":               "a workflow's state",
	"priority":                      "routine/urgent/asap/stat: workflow",
	"Task.code":                     "approve/fulfill/abort...: the workflow operation",
	"Condition.category":            "problem-list-item/encounter-diagnosis/health-concern: the kind of record",
	"Observation.category":          "vital-signs/laboratory/imaging/...: the kind of record, needed for lists",
	"Communication.category":        "alert/notification/reminder/instruction",
	"CommunicationRequest.category": "alert/notification/reminder/instruction",
	"clinical-status":               "active/recurrence/relapse/inactive/remission/resolved: state, not what",
	"verification-status":           "unconfirmed/provisional/differential/confirmed/refuted: state, not what",
}

// notOffered are R4 parameters whose paths the index could hold but whose
// matching it cannot do: phonetic search would index every name a second
// time (21 blind rows a part) to answer it with the name prefix match,
// which is not what a phonetic match promises.
var notOffered = map[string]string{
	"phonetic": "sound-alike matching is not offered (names are blind-indexed by exact value and typed prefixes only); search by name",
}

// PlainTokenReason says why a token parameter of a patient record is
// plain though its binding is open, or "" when nothing names it.
func PlainTokenReason(typ, name string) string {
	if r := plainTokens[typ+"."+name]; r != "" {
		return r
	}
	return plainTokens[name]
}

// isPatientRecord reports whether records of typ belong to a patient:
// Patient itself, R4's Patient compartment, or a type this server files
// in a compartment.
func isPatientRecord(typ string) bool {
	return typ == "Patient" || fhir.PatientCompartmentParams(typ) != nil || patientPaths[typ] != nil
}

// unsupportedParams maps type → R4 parameter → why this server does not
// answer it (filled by buildParams).
var unsupportedParams = map[string]map[string]string{}

// buildParams fills typeParams (and unsupportedParams) for every resource
// type R4 defines search parameters on.
func buildParams() {
	for _, typ := range fhir.SearchParamTypes() {
		defs := fhir.SearchParams(typ)
		family, given := false, false
		for _, sp := range defs {
			family = family || sp.Name == "family"
			given = given || sp.Name == "given"
		}
		m := map[string]*Param{}
		for _, sp := range defs {
			why := sp.Unsupported
			if why == "" {
				why = notOffered[sp.Name]
			}
			if why != "" {
				if unsupportedParams[typ] == nil {
					unsupportedParams[typ] = map[string]string{}
				}
				unsupportedParams[typ][sp.Name] = why
				continue
			}
			p := decide(typ, sp, family && given)
			p.Doc = paramDoc(typ, p)
			m[p.Name] = p
		}
		typeParams[typ] = m
	}
	for _, x := range extraParams {
		p := decide(x.typ, x.SearchParam, false)
		p.Doc = paramDoc(x.typ, p)
		typeParams[x.typ][p.Name] = p
	}
}

// extraParams are parameters this server answered before the table was
// generated, which R4 does not define (later versions do); they are kept
// so that clients using them keep working, and decided by the same rule.
var extraParams = []struct {
	typ string
	fhir.SearchParam
}{
	{"Communication", fhir.SearchParam{Name: "about", Kind: "reference", Paths: []string{"about"}, Via: []string{"Reference"}}},
	{"CommunicationRequest", fhir.SearchParam{Name: "about", Kind: "reference", Paths: []string{"about"}, Via: []string{"Reference"}}},
	{"Coverage", fhir.SearchParam{Name: "subscriber-id", Kind: "token", Paths: []string{"subscriberId"}, Via: []string{"string"}}},
	{"CoverageEligibilityRequest", fhir.SearchParam{Name: "insurer", Kind: "reference", Paths: []string{"insurer"}, Targets: []string{"Organization"}, Via: []string{"Reference"}}},
}

// decide turns one generated parameter into a Param by the rule above.
func decide(typ string, sp fhir.SearchParam, splitName bool) *Param {
	p := &Param{Name: sp.Name, Kind: Kind(sp.Kind), Paths: slices.Clone(sp.Paths), Targets: slices.Clone(sp.Targets)}
	via := func(t string) bool { return slices.Contains(sp.Via, t) }
	patient := isPatientRecord(typ)
	switch {
	case via("HumanName"):
		p.PHI = true
		if p.Name == "name" && splitName {
			p.Paths = nil
			for _, path := range sp.Paths {
				p.Paths = append(p.Paths, path+".text", path+".prefix", path+".suffix")
			}
			p.Also = []string{"family", "given"}
		}
	case via("Address") && p.Kind == String:
		p.PHI, p.Whole = true, true
	case via("ContactPoint") && p.Kind == Token:
		p.PHI = true
	case p.Kind == Date && slices.ContainsFunc(sp.Paths, func(path string) bool { return strings.HasSuffix(path, "birthDate") }):
		p.Kind, p.Spec, p.PHI = Token, Date, true
	case !patient:
	case via("Identifier") && p.Kind == Token:
		p.PHI = true
	case p.Kind == Token && !sp.Fixed && PlainTokenReason(typ, p.Name) == "":
		// A coded value is a clinical code; any other open token (a
		// subscriber id, a string) identifies like an identifier.
		p.PHI = true
		p.Code = via("CodeableConcept") || via("Coding") || via("code")
	case p.Kind == String:
		p.PHI, p.Whole = true, true
	case p.Kind == URI:
		p.PHI = true
	}
	return p
}
