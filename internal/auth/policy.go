package auth

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/careflow/careflow/internal/fhir"
)

// The access policy is data: a JSON document naming, per role, which
// actions on which resource types are allowed, which top-level elements the
// role sees, for which purposes of use, and for which patients. The default
// ships embedded (policy/default.json); --access-policy FILE replaces it.
// Anything not granted is denied.
//
// A document is validated completely at load: an unknown role, resource
// type, action, purpose or patient scope is an error that names it, so a
// typo cannot silently grant or withhold access in production.

//go:embed policy/default.json
var defaultPolicyJSON []byte

// Action is what a request does to a resource.
type Action string

// The actions the policy can grant.
const (
	ActionRead       Action = "read"
	ActionSearch     Action = "search"
	ActionCreate     Action = "create"
	ActionUpdate     Action = "update"
	ActionDelete     Action = "delete"
	ActionExport     Action = "export"
	ActionBreakGlass Action = "break_glass"
)

// Actions lists every action, in a stable order.
func Actions() []Action {
	return []Action{ActionRead, ActionSearch, ActionCreate, ActionUpdate, ActionDelete, ActionExport, ActionBreakGlass}
}

// Valid reports whether a is a known action.
func (a Action) Valid() bool { return slices.Contains(Actions(), a) }

// Purpose is the purpose of use an access serves. Consent is given or
// refused per purpose.
type Purpose string

// The purposes of use.
const (
	PurposeTreatment  Purpose = "treatment"
	PurposePayment    Purpose = "payment"
	PurposeOperations Purpose = "operations"
	PurposeResearch   Purpose = "research"
)

// Purposes lists every purpose, in a stable order.
func Purposes() []Purpose {
	return []Purpose{PurposeTreatment, PurposePayment, PurposeOperations, PurposeResearch}
}

// Valid reports whether p is a known purpose.
func (p Purpose) Valid() bool { return slices.Contains(Purposes(), p) }

// PatientScope says which patients a rule reaches.
type PatientScope string

// The patient scopes.
const (
	// PatientsCompartment reaches only patients the principal is related
	// to: a care team it belongs to holds the patient, it is assigned to
	// the patient's work, or it holds an active break-the-glass grant.
	PatientsCompartment PatientScope = "compartment"
	// PatientsAny reaches every patient (still subject to consent).
	PatientsAny PatientScope = "any"
	// PatientsNone reaches records that belong to no patient: every record
	// of a type that is not patient data (the audit log, user accounts,
	// care teams, directories; see PatientData), and of a patient-data type
	// only the records that name no patient (a Location-less Observation of
	// a device, say). It never reaches a patient's record: that always
	// takes a compartment or any rule, with its consent check.
	PatientsNone PatientScope = "none"
)

// ConsentDecision is a patient's answer for a purpose.
type ConsentDecision string

// The answers. ConsentNone means the patient recorded nothing in force; the
// policy's default for the purpose then applies.
const (
	ConsentPermit ConsentDecision = "permit"
	ConsentDeny   ConsentDecision = "deny"
	ConsentNone   ConsentDecision = "none"
)

// AllFields is the field list entry that makes every element visible.
const AllFields = "*"

// policyDoc is the file format. Field names are the document's keys.
type policyDoc struct {
	Version     int                   `json:"version"`
	Description string                `json:"description,omitempty"`
	Purposes    map[string]purposeDoc `json:"purposes"`
	AlwaysShown []string              `json:"always_visible_fields"`
	// SessionScopes are the scopes a careflow login session acts with when
	// its token carries no resource scopes (see policy_scope.go).
	SessionScopes []string                 `json:"session_scopes"`
	BreakGlass    breakGlassDoc            `json:"break_glass"`
	Roles         map[string]rolePolicyDoc `json:"roles"`
}

type purposeDoc struct {
	// Code is the HL7 v3 PurposeOfUse code recorded in the audit log.
	Code string `json:"code"`
	// DefaultConsent applies when the patient recorded nothing in force.
	DefaultConsent string `json:"default_consent"`
	Description    string `json:"description,omitempty"`
}

type breakGlassDoc struct {
	DefaultMinutes int      `json:"default_minutes"`
	MaxMinutes     int      `json:"max_minutes"`
	Reasons        []string `json:"reasons"`
	// Purposes are the purposes for which a grant counts as a relationship.
	Purposes []string `json:"purposes"`
	// OverridesConsentDeny lets an active grant pass a patient's refusal
	// for those purposes (the emergency-treatment exception).
	OverridesConsentDeny bool   `json:"overrides_consent_deny"`
	Description          string `json:"description,omitempty"`
}

type rolePolicyDoc struct {
	Description string `json:"description,omitempty"`
	// Principals says who may have the role: "people" (accounts),
	// "clients" (machine clients) or both (policy_principals.go).
	Principals     []string  `json:"principals"`
	DefaultPurpose string    `json:"default_purpose"`
	Rules          []ruleDoc `json:"rules"`
}

type ruleDoc struct {
	Comment       string   `json:"comment,omitempty"`
	Resources     []string `json:"resources"`
	Actions       []string `json:"actions"`
	Fields        []string `json:"fields"`
	Patients      string   `json:"patients"`
	Purposes      []string `json:"purposes"`
	ConsentExempt bool     `json:"consent_exempt,omitempty"`
}

// Policy is a validated access policy. It is immutable after load and safe
// for concurrent use.
type Policy struct {
	sessionScopes []string
	purposes      map[Purpose]purposeInfo
	alwaysShown   map[string]bool
	breakGlass    BreakGlassPolicy
	roles         map[Role]*rolePolicy
}

type purposeInfo struct {
	code           string
	defaultConsent ConsentDecision
}

// BreakGlassPolicy is the break-the-glass part of the policy.
type BreakGlassPolicy struct {
	DefaultMinutes       int
	MaxMinutes           int
	Reasons              []string
	Purposes             []Purpose
	OverridesConsentDeny bool
}

type rolePolicy struct {
	// forPeople and forClients say which kinds of principal may have the
	// role (policy_principals.go).
	forPeople, forClients bool
	defaultPurpose        Purpose
	// rules by resource type, in document order.
	rules map[string][]*Rule
}

// Rule is one grant of the policy after validation.
type Rule struct {
	Resources     []string
	Actions       []Action
	Fields        []string // nil means every element
	Patients      PatientScope
	Purposes      []Purpose
	ConsentExempt bool
}

func (r *Rule) allows(a Action, purpose Purpose) bool {
	return slices.Contains(r.Actions, a) && slices.Contains(r.Purposes, purpose)
}

// DefaultPolicy returns the embedded default policy. It panics if the
// embedded document is invalid, which the tests rule out.
func DefaultPolicy() *Policy {
	p, err := ParsePolicy(defaultPolicyJSON)
	if err != nil {
		panic("auth: embedded default policy is invalid: " + err.Error())
	}
	return p
}

// DefaultPolicyJSON returns a copy of the embedded default document, a
// starting point for an override file.
func DefaultPolicyJSON() []byte { return bytes.Clone(defaultPolicyJSON) }

// LoadPolicyFile reads and validates a policy document.
func LoadPolicyFile(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("access policy: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("access policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy validates a policy document. Unknown keys are errors too: a
// misspelt key would otherwise be a rule that silently does nothing.
func ParsePolicy(b []byte) (*Policy, error) {
	var doc policyDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a valid policy document: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("not a valid policy document: data after the object")
	}
	if err := checkVersion(&doc); err != nil {
		return nil, err
	}
	p := &Policy{
		purposes:    map[Purpose]purposeInfo{},
		alwaysShown: map[string]bool{},
		roles:       map[Role]*rolePolicy{},
	}
	for name, pd := range doc.Purposes {
		pu := Purpose(name)
		if !pu.Valid() {
			return nil, fmt.Errorf("purposes: unknown purpose %q (known: %s)", name, joinStrings(Purposes()))
		}
		dc := ConsentDecision(pd.DefaultConsent)
		if dc != ConsentPermit && dc != ConsentDeny {
			return nil, fmt.Errorf("purposes.%s.default_consent must be permit or deny, not %q", name, pd.DefaultConsent)
		}
		// Research needs the patient's explicit permission whatever a
		// policy file says: this one rule is code, not data, so that no
		// override can presume consent to research.
		if pu == PurposeResearch && dc != ConsentDeny {
			return nil, fmt.Errorf("purposes.research.default_consent must be deny: research always requires the patient's explicit permit")
		}
		if !isPurposeCode(pd.Code) {
			return nil, fmt.Errorf("purposes.%s.code %q is not a purpose-of-use code (upper-case letters)", name, pd.Code)
		}
		p.purposes[pu] = purposeInfo{code: pd.Code, defaultConsent: dc}
	}
	for _, pu := range Purposes() {
		if _, ok := p.purposes[pu]; !ok {
			return nil, fmt.Errorf("purposes: purpose %q is missing; every purpose needs a consent default", pu)
		}
	}
	for _, raw := range doc.SessionScopes {
		sc, err := ParseScope(raw)
		if err != nil || sc.Context != ScopeUser || sc.Params != "" {
			return nil, fmt.Errorf("session_scopes: %q is not a user/ resource scope without parameters", raw)
		}
		p.sessionScopes = append(p.sessionScopes, raw)
	}
	for _, f := range doc.AlwaysShown {
		if !isElementName(f) {
			return nil, fmt.Errorf("always_visible_fields: %q is not an element name", f)
		}
		p.alwaysShown[f] = true
	}
	bg := doc.BreakGlass
	if bg.DefaultMinutes < 1 || bg.MaxMinutes < bg.DefaultMinutes || bg.MaxMinutes > 24*60 {
		return nil, fmt.Errorf("break_glass: need 1 <= default_minutes <= max_minutes <= 1440, have %d and %d", bg.DefaultMinutes, bg.MaxMinutes)
	}
	if len(bg.Reasons) == 0 {
		return nil, fmt.Errorf("break_glass.reasons must list at least one reason code")
	}
	for _, r := range bg.Reasons {
		if !isCode(r) {
			return nil, fmt.Errorf("break_glass.reasons: %q is not a code (lower-case letters, digits, _)", r)
		}
	}
	p.breakGlass = BreakGlassPolicy{
		DefaultMinutes:       bg.DefaultMinutes,
		MaxMinutes:           bg.MaxMinutes,
		Reasons:              slices.Clone(bg.Reasons),
		OverridesConsentDeny: bg.OverridesConsentDeny,
	}
	for _, s := range bg.Purposes {
		pu := Purpose(s)
		if !pu.Valid() {
			return nil, fmt.Errorf("break_glass.purposes: unknown purpose %q", s)
		}
		if pu == PurposeResearch {
			return nil, fmt.Errorf("break_glass.purposes: research cannot be reached by breaking the glass")
		}
		p.breakGlass.Purposes = append(p.breakGlass.Purposes, pu)
	}
	for name, rd := range doc.Roles {
		role := Role(name)
		if !role.Valid() {
			return nil, fmt.Errorf("roles: unknown role %q (known: %s)", name, joinStrings(Roles()))
		}
		rp := &rolePolicy{rules: map[string][]*Rule{}}
		var err error
		if rp.forPeople, rp.forClients, err = parsePrincipals(name, rd.Principals); err != nil {
			return nil, err
		}
		dp := Purpose(rd.DefaultPurpose)
		if !dp.Valid() {
			return nil, fmt.Errorf("roles.%s.default_purpose: unknown purpose %q", name, rd.DefaultPurpose)
		}
		rp.defaultPurpose = dp
		for i, rule := range rd.Rules {
			r, err := parseRule(rule)
			if err != nil {
				return nil, fmt.Errorf("roles.%s.rules[%d]: %w", name, i, err)
			}
			for _, res := range r.Resources {
				rp.rules[res] = append(rp.rules[res], r)
			}
		}
		p.roles[role] = rp
	}
	if err := p.checkReadable(); err != nil {
		return nil, err
	}
	return p, nil
}

func parseRule(rd ruleDoc) (*Rule, error) {
	r := &Rule{ConsentExempt: rd.ConsentExempt}
	if len(rd.Resources) == 0 {
		return nil, fmt.Errorf("resources must list at least one resource type")
	}
	for _, res := range rd.Resources {
		if !KnownResourceType(res) {
			return nil, fmt.Errorf("unknown resource type %q", res)
		}
		r.Resources = append(r.Resources, res)
	}
	if len(rd.Actions) == 0 {
		return nil, fmt.Errorf("actions must list at least one action")
	}
	for _, a := range rd.Actions {
		act := Action(a)
		if !act.Valid() {
			return nil, fmt.Errorf("unknown action %q (known: %s)", a, joinStrings(Actions()))
		}
		r.Actions = append(r.Actions, act)
	}
	if len(rd.Fields) == 0 {
		return nil, fmt.Errorf(`fields must be ["*"] or list the visible elements`)
	}
	if slices.Contains(rd.Fields, AllFields) {
		if len(rd.Fields) != 1 {
			return nil, fmt.Errorf(`fields: "*" must stand alone`)
		}
	} else {
		for _, f := range rd.Fields {
			if !isElementName(f) {
				return nil, fmt.Errorf("fields: %q is not an element name", f)
			}
		}
		r.Fields = slices.Clone(rd.Fields)
	}
	switch ps := PatientScope(rd.Patients); ps {
	case PatientsCompartment, PatientsAny, PatientsNone:
		r.Patients = ps
	default:
		return nil, fmt.Errorf("patients must be compartment, any or none, not %q", rd.Patients)
	}
	if len(rd.Purposes) == 0 {
		return nil, fmt.Errorf("purposes must list at least one purpose")
	}
	for _, s := range rd.Purposes {
		pu := Purpose(s)
		if !pu.Valid() {
			return nil, fmt.Errorf("unknown purpose %q (known: %s)", s, joinStrings(Purposes()))
		}
		r.Purposes = append(r.Purposes, pu)
	}
	return r, nil
}

// BreakGlass returns the break-the-glass settings.
func (p *Policy) BreakGlass() BreakGlassPolicy {
	bg := p.breakGlass
	bg.Reasons = slices.Clone(bg.Reasons)
	bg.Purposes = slices.Clone(bg.Purposes)
	return bg
}

// PurposeCode returns the HL7 v3 PurposeOfUse code of a purpose, for the
// audit log.
func (p *Policy) PurposeCode(pu Purpose) string { return p.purposes[pu].code }

// DefaultConsent returns the decision that applies to a purpose when the
// patient recorded nothing in force.
func (p *Policy) DefaultConsent(pu Purpose) ConsentDecision {
	if info, ok := p.purposes[pu]; ok {
		return info.defaultConsent
	}
	return ConsentDeny
}

// DefaultPurpose returns the purpose a role acts for when a request names
// none, or "" for a role the policy does not know.
func (p *Policy) DefaultPurpose(r Role) Purpose {
	if rp, ok := p.roles[r]; ok {
		return rp.defaultPurpose
	}
	return ""
}

// VisibleFields returns the top-level elements a role may see of a
// resource type when reading for a purpose: the union over the rules that
// grant read or search, nil for every element, or an empty (non-nil)
// slice when the role may not read the type at all.
func (p *Policy) VisibleFields(r Role, resourceType string, pu Purpose) []string {
	rp, ok := p.roles[r]
	if !ok {
		return []string{}
	}
	set := map[string]bool{}
	any := false
	for _, rule := range rp.rules[resourceType] {
		if !slices.Contains(rule.Purposes, pu) {
			continue
		}
		if !slices.Contains(rule.Actions, ActionRead) && !slices.Contains(rule.Actions, ActionSearch) {
			continue
		}
		any = true
		if rule.Fields == nil {
			return nil
		}
		for _, f := range rule.Fields {
			set[f] = true
		}
	}
	out := make([]string, 0, len(set))
	if !any {
		return out
	}
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// apiTypes are careflow's own API records, which a policy names beside the
// FHIR R4 resource types.
func apiTypes() []string {
	return []string{"AuditLog", "BreakGlass", "User", "WorkflowRun", WorkflowTask, "Journey", "Payer", "AccessPolicy", "ClinicalWorkflow", "Webhook"}
}

// KnownResourceType reports whether the policy may name t: every concrete
// FHIR R4 resource type (fhir.IsResourceType, from the pinned definitions)
// and careflow's API records. Which of them the server serves is the
// policy's to say (Policy.Serves); a type no rule names is unsupported.
func KnownResourceType(t string) bool {
	return fhir.IsResourceType(t) || slices.Contains(apiTypes(), t)
}

// notPatientData are the known types that hold no patient's data:
// directories, definitions and code systems, and careflow's own
// administrative records, which name patients by id at most (the audit log;
// care teams, administered as a whole; workflow runs, which by the engine's
// contract hold references and codes, never readable PHI). Every other
// known type is patient data, so a type added to the policy is treated as
// a patient's until it is listed here on purpose.
func notPatientData() []string {
	return []string{"Practitioner", "PractitionerRole", "Organization", "Location", "Medication",
		"InsurancePlan", "CodeSystem", "ValueSet", "AuditLog", "AuditEvent", "BreakGlass", "User", "AccessPolicy", "CareTeam",
		"WorkflowRun",
		// The event sinks' registrations: URLs and event types, no patient.
		"Webhook",
		// Directories and definitions: what the hospital offers and how its
		// forms, devices and terminologies are defined, never a patient.
		"HealthcareService", "Endpoint", "OrganizationAffiliation", "Questionnaire", "ConceptMap", "NamingSystem",
		"DeviceDefinition", "ActivityDefinition", "PlanDefinition", "Library", "MedicationKnowledge",
		"ObservationDefinition", "SpecimenDefinition", "StructureDefinition", "SearchParameter", "OperationDefinition",
		"MessageDefinition", "CapabilityStatement"}
}

// PatientData reports whether records of type t belong to a patient, so
// that a rule for them must name the patients it reaches.
func PatientData(t string) bool {
	return KnownResourceType(t) && !slices.Contains(notPatientData(), t)
}

// isElementName accepts a FHIR top-level element name (letters and digits,
// starting with a letter) or a careflow API field (lower case with _).
func isElementName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case (c >= '0' && c <= '9' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

func isCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func isPurposeCode(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func joinStrings[T ~string](xs []T) string {
	ss := make([]string, len(xs))
	for i, x := range xs {
		ss[i] = string(x)
	}
	return strings.Join(ss, ", ")
}

// Grants reports, per resource type, the actions some role of the policy
// may take on it: what the server as configured can do for anyone at all.
// The CapabilityStatement lists only these, so that it promises nothing
// every caller would be refused.
func (p *Policy) Grants() map[string][]Action {
	seen := map[string]map[Action]bool{}
	for _, rp := range p.roles {
		for typ, rules := range rp.rules {
			for _, r := range rules {
				if seen[typ] == nil {
					seen[typ] = map[Action]bool{}
				}
				for _, a := range r.Actions {
					seen[typ][a] = true
				}
			}
		}
	}
	out := make(map[string][]Action, len(seen))
	for typ, as := range seen {
		for _, a := range Actions() {
			if as[a] {
				out[typ] = append(out[typ], a)
			}
		}
	}
	return out
}
