package auth

// How a request is decided (Authorizer.Decide), in order; the first "no"
// is the answer and every step fails closed:
//
//  1. Who: a principal with a subject and a role the policy knows.
//  2. What: the purpose (the request's, else the role's default), the
//     action and the resource type must be known.
//  3. The role's rules: some rule of the role must grant this action on
//     this type for this purpose (no_rule, or purpose_not_allowed when a
//     rule grants the action for other purposes only). This step never
//     looks at the patient, so its denial says nothing about them.
//  4. The token: its scopes must grant the action's SMART permission on
//     the type (scope). Scopes only narrow the role. A careflow login
//     session whose token names no resource scope acts with the policy's
//     session_scopes.
//     A create or update naming no patient is refused
//     (unreachable_record) unless some role's none rule reads the type,
//     so that no record is stored that no one can read (policy_served.go).
//  5. The patient: a rule for records of no patient ("none") passes for
//     types that are not patient data, and for patient-data types only
//     when no patient is named; a rule for every patient ("any") passes; a compartment
//     rule needs a relationship (care team, assignment in force, or an
//     active break-the-glass grant, which counts only for the policy's
//     break-the-glass purposes); none is not_related, which the HTTP layer
//     answers as 404. No patient named: only a search, create or export,
//     whose records the caller must decide again one by one.
//  6. Consent: unless the rule is consent_exempt, the patient's decision
//     for the purpose, or the policy's default when none is in force
//     (research: always deny). A deny refuses (consent_denied), except
//     that an active break-the-glass grant passes it when the policy says
//     overrides_consent_deny. A failed look-up refuses.
//  7. Fields, for a create or update: the rule's fields must cover every
//     element the body sets (field_not_writable, naming the element);
//     otherwise the next rule is tried. See policy_write.go.
//
// The decision carries the visible fields of the rule that allowed it, so
// the response filter redacts what the role may not see.

import (
	"context"
	"sync"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// Reason says why a decision came out as it did. It is a code, safe for
// logs, audit entries and error bodies: it never holds PHI.
type Reason string

// The reasons. Every denial has its own, so that an operator reading the
// audit log can tell a missing rule from a refused consent.
const (
	ReasonAllowed                 Reason = "allowed"
	ReasonUnauthenticated         Reason = "unauthenticated"
	ReasonUnknownRole             Reason = "unknown_role"
	ReasonUnknownPurpose          Reason = "unknown_purpose"
	ReasonUnknownResource         Reason = "unknown_resource"
	ReasonUnknownAction           Reason = "unknown_action"
	ReasonScope                   Reason = "scope"
	ReasonNoRule                  Reason = "no_rule"
	ReasonPurposeNotAllowed       Reason = "purpose_not_allowed"
	ReasonPatientRequired         Reason = "patient_required"
	ReasonNotRelated              Reason = "not_related"
	ReasonConsentDenied           Reason = "consent_denied"
	ReasonConsentUnavailable      Reason = "consent_unavailable"
	ReasonRelationshipUnavailable Reason = "relationship_unavailable"
)

// Via says how the principal reaches the patient.
type Via string

// The ways in. ViaAny is a rule for every patient, ViaNone a resource
// that is not patient data.
const (
	ViaCareTeam   Via = "care_team"
	ViaAssignment Via = "assignment"
	ViaBreakGlass Via = "break_glass"
	ViaAny        Via = "any"
	ViaNone       Via = "none"
)

// Vias is a set of relationships between a principal and a patient.
type Vias uint8

// The relationship bits.
const (
	RelCareTeam Vias = 1 << iota
	RelAssignment
	RelBreakGlass
)

// Request is one question to the policy: may the principal do Action to a
// ResourceType of PatientID's record for Purpose? An empty PatientID asks
// about a search or create across patients: it is allowed when a rule
// could allow some patient, and Decision.RecheckRecords tells the caller to
// check every record it returns.
type Request struct {
	Action       Action
	ResourceType string
	PatientID    string
	// Purpose defaults to the role's default purpose.
	Purpose Purpose
	// Elements are the top-level elements a create or update sets (a
	// primitive's "_name" extension sibling named as name). A rule allows
	// the write only when its fields cover them all (policy_write.go).
	Elements []string
}

// Decision is the policy's answer.
type Decision struct {
	Allowed bool
	Reason  Reason
	// Purpose is the purpose decided for (the request's or the role's default).
	Purpose Purpose
	// Via says how the patient was reached; empty on a denial.
	Via Via
	// Fields are the visible top-level elements; nil means all of them.
	// For a create or update they are also the elements the write may set
	// (with the always-visible ones; see Policy.WritableFields).
	Fields []string
	// Field names the element a field_not_writable denial is about.
	Field string
	// Consent is the decision that applied ("none" when nothing was
	// recorded and the default applied, "" when the rule is exempt or no
	// patient is involved).
	Consent ConsentDecision
	// RecheckRecords is set when no patient was named and the rule is
	// patient-scoped: each returned record must be decided again.
	RecheckRecords bool
	// BreakGlass is set when only an active break-the-glass grant let the
	// access through; the access is then audited at high severity.
	BreakGlass bool
}

// RelationshipSource answers how a user is related to a patient at a time.
type RelationshipSource interface {
	Relationships(ctx context.Context, userID, patientID string, at time.Time) (Vias, error)
}

// ConsentSource answers a patient's consent for a purpose at a time.
type ConsentSource interface {
	ConsentAt(ctx context.Context, patientID string, purpose Purpose, at time.Time) (ConsentDecision, error)
}

// TxRelationshipSource is a RelationshipSource that can answer through the
// caller's transaction. A source that reads the database must offer it:
// a decision made inside a transaction (DecideTx) that asked the pool for
// a second connection would hold one connection while waiting for
// another, and N such transactions exhaust a pool of N (every start
// stalls until its context ends, then fails as relationship_unavailable).
type TxRelationshipSource interface {
	RelationshipSource
	RelationshipsTx(ctx context.Context, tx store.Tx, userID, patientID string, at time.Time) (Vias, error)
}

// TxConsentSource is a ConsentSource that can answer through the caller's
// transaction, for the same reason (consent_unavailable otherwise).
type TxConsentSource interface {
	ConsentSource
	ConsentAtTx(ctx context.Context, tx store.Tx, patientID string, purpose Purpose, at time.Time) (ConsentDecision, error)
}

// Authorizer decides requests against a policy, the principal's
// relationships to patients and the patients' consents.
type Authorizer struct {
	policy   *Policy
	rel      RelationshipSource
	consents ConsentSource
	now      func() time.Time
}

// NewAuthorizer builds an Authorizer. now defaults to time.Now.
func NewAuthorizer(p *Policy, rel RelationshipSource, consents ConsentSource, now func() time.Time) *Authorizer {
	if now == nil {
		now = time.Now
	}
	return &Authorizer{policy: p, rel: rel, consents: consents, now: now}
}

// Policy returns the policy the authorizer enforces.
func (a *Authorizer) Policy() *Policy { return a.policy }

func deny(r Reason, pu Purpose) Decision { return Decision{Reason: r, Purpose: pu} }

// Decide answers a request. It fails closed: an error reading
// relationships or consent is a denial with its own reason, never an
// allow. It reads the database at most once per (patient) relationship and
// (patient, purpose) consent per request when ctx carries a cache (see
// WithDecisionCache).
func (a *Authorizer) Decide(ctx context.Context, p *Principal, req Request) Decision {
	return a.DecideTx(ctx, nil, p, req)
}

// DecideTx is Decide for a decision made inside tx (a write and its
// audit entry, a journey's start): every relationship and consent it
// reads goes through tx, never through a second pooled connection, so a
// transaction never waits for a connection while holding one. A source
// without a Tx variant (one that reads no database) answers as for
// Decide. A nil tx is Decide.
func (a *Authorizer) DecideTx(ctx context.Context, tx store.Tx, p *Principal, req Request) Decision {
	rules, purpose, denial := a.typeRules(ctx, p, req)
	if !denial.Allowed {
		return denial
	}
	return a.decidePatient(ctx, tx, p, req, purpose, rules)
}

// typeRules runs steps 1 to 4: the rules of the principal's role that
// grant the action on the type for the purpose, when the token's scopes
// let them. The returned decision is allowed when there are some, else it
// is the denial; nothing here looks at the patient or the record.
func (a *Authorizer) typeRules(ctx context.Context, p *Principal, req Request) ([]*Rule, Purpose, Decision) {
	if p == nil || p.Subject == "" {
		return nil, "", deny(ReasonUnauthenticated, req.Purpose)
	}
	rp, ok := a.policy.roles[p.Role]
	if !ok {
		return nil, "", deny(ReasonUnknownRole, req.Purpose)
	}
	if !a.policy.RoleIsFor(p.Role, p.Kind) {
		return nil, "", deny(ReasonRoleNotForPrincipal, req.Purpose)
	}
	purpose := req.Purpose
	if purpose == "" {
		purpose = PurposeFrom(ctx)
	}
	if purpose == "" {
		purpose = rp.defaultPurpose
	}
	if !purpose.Valid() {
		return nil, "", deny(ReasonUnknownPurpose, "")
	}
	if !req.Action.Valid() {
		return nil, "", deny(ReasonUnknownAction, purpose)
	}
	if !KnownResourceType(req.ResourceType) {
		return nil, "", deny(ReasonUnknownResource, purpose)
	}
	// The role's rules first: whether this role may ever do this must not
	// depend on which patient is named, so that a denial here says nothing
	// about the patient.
	var rules []*Rule
	purposeMismatch := false
	for _, r := range rp.rules[req.ResourceType] {
		if r.allows(req.Action, purpose) {
			rules = append(rules, r)
		} else if containsAction(r.Actions, req.Action) {
			purposeMismatch = true
		}
	}
	if len(rules) == 0 {
		if purposeMismatch {
			return nil, "", deny(ReasonPurposeNotAllowed, purpose)
		}
		return nil, "", deny(ReasonNoRule, purpose)
	}
	if !scopesAllow(p.Kind, a.policy.effectiveScopes(p), req.ResourceType, req.Action) {
		return nil, "", deny(ReasonScope, purpose)
	}
	return rules, purpose, Decision{Allowed: true, Reason: ReasonAllowed, Purpose: purpose}
}

// decidePatient runs steps 5 to 7 over the rules typeRules found.
func (a *Authorizer) decidePatient(ctx context.Context, tx store.Tx, p *Principal, req Request, purpose Purpose, rules []*Rule) Decision {
	// A write of a record that names no patient stores something only a
	// none rule can reach: without one, the record would be write-only
	// (policy_served.go). This looks at the type only, but it needs to
	// know that the record names no patient, so it is not part of the
	// type question (DecideType), which is asked before the record is.
	if writesFields(req.Action) && req.PatientID == "" && !a.policy.ReadsPatientless(req.ResourceType) {
		return deny(ReasonUnreachableRecord, purpose)
	}
	// Rules that need no patient relationship come first, so that a role
	// with an "any" rule never pays for a relationship lookup.
	var denial Decision
	haveDenial := false
	for _, pass := range []bool{false, true} {
		for _, r := range rules {
			if (r.Patients == PatientsCompartment) != pass {
				continue
			}
			// A rule for records of no patient never reaches a patient's
			// record (see PatientsNone).
			if r.Patients == PatientsNone && req.PatientID != "" && PatientData(req.ResourceType) {
				continue
			}
			d := a.decideRule(ctx, tx, p, req, purpose, r)
			if d.Allowed && writesFields(req.Action) {
				// A rule whose fields do not cover what the body sets does
				// not allow the write; another rule of the role may.
				if e := a.policy.unwritable(r.Fields, req.Elements); e != "" {
					d = Decision{Reason: ReasonFieldNotWritable, Purpose: purpose, Field: e}
				}
			}
			if d.Allowed {
				return d
			}
			// Keep the most telling denial: consent, lookup and field
			// failures over "not related".
			if !haveDenial || denial.Reason == ReasonNotRelated {
				denial, haveDenial = d, true
			}
		}
	}
	if !haveDenial {
		// Every rule was for records of no patient and this one is a
		// patient's: the role may act on the type (DecideType said so) but
		// this record is out of its reach, which is not_related, answered
		// as if the record did not exist. no_rule would tell an id that
		// exists from one that does not.
		return deny(ReasonNotRelated, purpose)
	}
	return denial
}

func containsAction(as []Action, a Action) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

func (a *Authorizer) decideRule(ctx context.Context, tx store.Tx, p *Principal, req Request, purpose Purpose, r *Rule) Decision {
	allow := Decision{Allowed: true, Reason: ReasonAllowed, Purpose: purpose, Fields: r.Fields}
	switch {
	case r.Patients == PatientsNone:
		allow.Via = ViaNone
		// Patient-less records of a patient-data type: a search may still
		// have matched records of patients, which need their own rule.
		allow.RecheckRecords = PatientData(req.ResourceType)
		return allow
	case req.PatientID == "":
		// A search or a create across patients: the caller rechecks each
		// record. Reading, changing or deleting a record always names its
		// patient.
		if req.Action != ActionSearch && req.Action != ActionCreate && req.Action != ActionExport {
			return deny(ReasonPatientRequired, purpose)
		}
		allow.Via = ViaAny
		if r.Patients == PatientsCompartment {
			allow.Via = ""
		}
		allow.RecheckRecords = true
		return allow
	}

	now := a.now()
	cache := cacheFrom(ctx)
	var vias Vias
	if r.Patients == PatientsAny {
		allow.Via = ViaAny
	} else {
		var err error
		vias, err = a.relationships(ctx, tx, cache, p.Subject, req.PatientID, now)
		if err != nil {
			return deny(ReasonRelationshipUnavailable, purpose)
		}
		if !a.breakGlassCounts(purpose) {
			vias &^= RelBreakGlass
		}
		// The strongest relationship names the way in: a grant matters
		// (and makes the access high severity) only when nothing else
		// would have let the principal through.
		switch {
		case vias&RelCareTeam != 0:
			allow.Via = ViaCareTeam
		case vias&RelAssignment != 0:
			allow.Via = ViaAssignment
		case vias&RelBreakGlass != 0:
			allow.Via = ViaBreakGlass
			allow.BreakGlass = true
		default:
			return deny(ReasonNotRelated, purpose)
		}
	}
	if r.ConsentExempt {
		return allow
	}
	c, err := a.consent(ctx, tx, cache, req.PatientID, purpose, now)
	if err != nil {
		return deny(ReasonConsentUnavailable, purpose)
	}
	allow.Consent = c
	if a.effectiveConsent(purpose, c) == ConsentDeny {
		// The emergency-treatment exception, when the policy grants it:
		// an active grant passes a refusal, and the access is then on the
		// grant's account (high severity, reviewed).
		if vias&RelBreakGlass != 0 && a.policy.breakGlass.OverridesConsentDeny {
			allow.Via = ViaBreakGlass
			allow.BreakGlass = true
			return allow
		}
		d := deny(ReasonConsentDenied, purpose)
		d.Consent = c
		return d
	}
	return allow
}

func (a *Authorizer) effectiveConsent(purpose Purpose, c ConsentDecision) ConsentDecision {
	switch c {
	case ConsentPermit, ConsentDeny:
		return c
	case ConsentNone:
		return a.policy.DefaultConsent(purpose)
	}
	return ConsentDeny
}

func (a *Authorizer) breakGlassCounts(purpose Purpose) bool {
	for _, pu := range a.policy.breakGlass.Purposes {
		if pu == purpose {
			return true
		}
	}
	return false
}

func (a *Authorizer) relationships(ctx context.Context, tx store.Tx, c *decisionCache, user, patient string, at time.Time) (Vias, error) {
	if a.rel == nil {
		return 0, errNoSource
	}
	key := user + "\x00" + patient
	if c != nil {
		c.mu.Lock()
		v, ok := c.rel[key]
		c.mu.Unlock()
		if ok {
			return v, nil
		}
	}
	var (
		v   Vias
		err error
	)
	if ts, ok := a.rel.(TxRelationshipSource); ok && tx != nil {
		v, err = ts.RelationshipsTx(ctx, tx, user, patient, at)
	} else {
		v, err = a.rel.Relationships(ctx, user, patient, at)
	}
	if err != nil {
		return 0, err
	}
	if c != nil {
		c.mu.Lock()
		c.rel[key] = v
		c.mu.Unlock()
	}
	return v, nil
}

func (a *Authorizer) consent(ctx context.Context, tx store.Tx, c *decisionCache, patient string, purpose Purpose, at time.Time) (ConsentDecision, error) {
	if a.consents == nil {
		return "", errNoSource
	}
	key := patient + "\x00" + string(purpose)
	if c != nil {
		c.mu.Lock()
		v, ok := c.consent[key]
		c.mu.Unlock()
		if ok {
			return v, nil
		}
	}
	var (
		v   ConsentDecision
		err error
	)
	if ts, ok := a.consents.(TxConsentSource); ok && tx != nil {
		v, err = ts.ConsentAtTx(ctx, tx, patient, purpose, at)
	} else {
		v, err = a.consents.ConsentAt(ctx, patient, purpose, at)
	}
	if err != nil {
		return "", err
	}
	switch v {
	case ConsentPermit, ConsentDeny, ConsentNone:
	default:
		return "", errBadConsent
	}
	if c != nil {
		c.mu.Lock()
		c.consent[key] = v
		c.mu.Unlock()
	}
	return v, nil
}

type authError string

func (e authError) Error() string { return string(e) }

const (
	errNoSource   authError = "auth: no relationship or consent source configured"
	errBadConsent authError = "auth: consent source returned an unknown decision"
)

// decisionCache remembers relationship and consent look-ups for one
// request, so that checking every record of a list costs one query per
// distinct patient. It lives no longer than the request: a grant that
// expires or a consent withdrawn takes effect on the next request.
type decisionCache struct {
	mu      sync.Mutex
	rel     map[string]Vias
	consent map[string]ConsentDecision
}

type cacheKey struct{}

// WithDecisionCache returns a context whose Decide calls share look-ups.
// Call it once per request; a context that already has a cache is
// returned unchanged.
func WithDecisionCache(ctx context.Context) context.Context {
	if cacheFrom(ctx) != nil {
		return ctx
	}
	return context.WithValue(ctx, cacheKey{}, &decisionCache{
		rel:     map[string]Vias{},
		consent: map[string]ConsentDecision{},
	})
}

// ForgetRelationships drops the cached relationships of the request, after
// the request itself changed them (a break-the-glass grant it opened).
func ForgetRelationships(ctx context.Context) {
	if c := cacheFrom(ctx); c != nil {
		c.mu.Lock()
		clear(c.rel)
		c.mu.Unlock()
	}
}

func cacheFrom(ctx context.Context) *decisionCache {
	c, _ := ctx.Value(cacheKey{}).(*decisionCache)
	return c
}

// Now is the authorizer's clock, for callers that must agree with it (a
// listing of grants active "now").
func (a *Authorizer) Now() time.Time { return a.now() }
