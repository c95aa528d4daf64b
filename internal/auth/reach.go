package auth

import (
	"context"
	"errors"
	"slices"
	"time"
)

// Reach answers, before a search runs, the question Decide answers for one
// record after it: which records of a resource type may the principal read
// for a purpose? A search confined to its caller's reach in SQL counts,
// pages and includes only what the caller may see, so that a total, a
// _summary=count or an empty next page cannot tell a patient out of reach
// from one that does not exist. Every record is still decided again on the
// way out (defence in depth); the two must agree, and the tests hold them
// to it.
//
// The reach is the union, over the role's rules that grant the action on
// the type for the purpose (and that the token's scopes permit), of what
// each rule lets through, following Decide step by step:
//
//   - none: every record of a type that is not patient data; of a
//     patient-data type, the records that belong to no patient.
//   - any: every patient's records, less the patients whose consent for
//     the purpose is refused (for a purpose whose default is deny, such as
//     research: only the patients who permitted it), unless the rule is
//     consent_exempt.
//   - compartment: the records of the patients the principal is related
//     to now (care teams, assignments in force, active break-the-glass
//     grants when they count for the purpose), less those whose consent
//     refuses the purpose, unless an active grant passes the refusal.
//
// A record of no patient needs a none rule: Decide refuses to read such a
// record under any other (patient_required).

// Reach is the part of one resource type's records a principal may read:
// Every, or the union of NoPatient, AllPatients less Except, and Patients.
// The zero Reach is nothing.
type Reach struct {
	// Every is every record of the type, whatever patient it names.
	Every bool
	// NoPatient is the records that belong to no patient.
	NoPatient bool
	// AllPatients is the records of every patient but those in Except.
	AllPatients bool
	// Except are the patients AllPatients leaves out. Sorted.
	Except []string
	// Patients are the patients whose records are reached, when
	// AllPatients is false. Sorted.
	Patients []string
}

// Contains reports whether a record of patientID ("" for a record of no
// patient) is within the reach.
func (r Reach) Contains(patientID string) bool {
	switch {
	case r.Every:
		return true
	case patientID == "":
		return r.NoPatient
	case r.AllPatients:
		_, excepted := slices.BinarySearch(r.Except, patientID)
		return !excepted
	default:
		_, found := slices.BinarySearch(r.Patients, patientID)
		return found
	}
}

// ErrReachUnknown is returned by Reach when the authorizer's relationship
// or consent source cannot list patients (only decide one at a time). The
// caller must then rely on deciding every record, and must not report
// counts it cannot vouch for.
var ErrReachUnknown = errors.New("auth: the relationship or consent source cannot list patients")

// RelatedPatientsSource is a RelationshipSource that can list every
// patient a user is related to, in one look-up.
type RelatedPatientsSource interface {
	RelatedPatients(ctx context.Context, userID string, at time.Time) (map[string]Vias, error)
}

// ConsentListSource is a ConsentSource that can answer for many patients
// at once.
type ConsentListSource interface {
	// ConsentsAmong returns the decision in force at a time for a purpose
	// of each of patients that has one (permit or deny); the others have
	// none.
	ConsentsAmong(ctx context.Context, purpose Purpose, patients []string, at time.Time) (map[string]ConsentDecision, error)
	// PatientsWithConsent lists the patients whose decision in force at a
	// time for a purpose is d (permit or deny).
	PatientsWithConsent(ctx context.Context, purpose Purpose, d ConsentDecision, at time.Time) ([]string, error)
}

// Reach returns the records of req.ResourceType that the principal may
// req.Action (read, for a search's results) for req.Purpose (default: the
// purpose stated for ctx's request, else the role's); req.PatientID is
// ignored. A principal or request Decide would
// refuse whatever the patient reaches nothing. It fails closed: a failed
// look-up is an error, never a wider reach. The relationships and consents
// it reads are remembered in ctx's decision cache, so deciding the
// records it let through costs no further look-ups.
func (a *Authorizer) Reach(ctx context.Context, p *Principal, req Request) (Reach, error) {
	return a.reach(ctx, p, req, true)
}

// ReachBeforeConsent is Reach without the consent step: the records of
// the patients the principal may reach at all. A conditional create,
// update or delete matches its criteria within it, so that a record of a
// patient out of reach behaves as one that does not exist, while a match
// whose patient refused the purpose is still found (and refused, 403) as
// before, rather than silently duplicated.
func (a *Authorizer) ReachBeforeConsent(ctx context.Context, p *Principal, req Request) (Reach, error) {
	return a.reach(ctx, p, req, false)
}

func (a *Authorizer) reach(ctx context.Context, p *Principal, req Request, withConsent bool) (Reach, error) {
	if p == nil || p.Subject == "" {
		return Reach{}, nil
	}
	rp, ok := a.policy.roles[p.Role]
	if !ok || !a.policy.RoleIsFor(p.Role, p.Kind) {
		return Reach{}, nil
	}
	purpose := req.Purpose
	if purpose == "" {
		purpose = PurposeFrom(ctx)
	}
	if purpose == "" {
		purpose = rp.defaultPurpose
	}
	if !purpose.Valid() || !req.Action.Valid() || !KnownResourceType(req.ResourceType) {
		return Reach{}, nil
	}
	var rules []*Rule
	for _, r := range rp.rules[req.ResourceType] {
		if r.allows(req.Action, purpose) {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 || !scopesAllow(p.Kind, a.policy.effectiveScopes(p), req.ResourceType, req.Action) {
		return Reach{}, nil
	}
	var out patientSet
	noPatient := false
	var related map[string]Vias
	for _, r := range rules {
		switch r.Patients {
		case PatientsNone:
			if !PatientData(req.ResourceType) {
				return Reach{Every: true}, nil
			}
			noPatient = true
		case PatientsAny:
			s := patientSet{all: true}
			if withConsent && !r.ConsentExempt {
				var err error
				if s, err = a.anyConsenting(ctx, purpose); err != nil {
					return Reach{}, err
				}
			}
			out = out.union(s)
		case PatientsCompartment:
			if related == nil {
				var err error
				if related, err = a.relatedPatients(ctx, p.Subject, purpose); err != nil {
					return Reach{}, err
				}
			}
			s, err := a.compartment(ctx, related, purpose, withConsent && !r.ConsentExempt)
			if err != nil {
				return Reach{}, err
			}
			out = out.union(s)
		}
	}
	ids := make([]string, 0, len(out.ids))
	for id := range out.ids {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	switch {
	case out.all && noPatient && len(ids) == 0:
		return Reach{Every: true}, nil
	case out.all:
		return Reach{NoPatient: noPatient, AllPatients: true, Except: ids}, nil
	default:
		return Reach{NoPatient: noPatient, Patients: ids}, nil
	}
}

// patientSet is every patient but ids (all), or exactly ids.
type patientSet struct {
	all bool
	ids map[string]struct{}
}

func (a patientSet) union(b patientSet) patientSet {
	out := patientSet{all: a.all || b.all, ids: map[string]struct{}{}}
	switch {
	case a.all && b.all:
		// Excluded by both.
		for id := range a.ids {
			if _, ok := b.ids[id]; ok {
				out.ids[id] = struct{}{}
			}
		}
	case a.all || b.all:
		// Excluded by the one, and not included by the other.
		ex, in := a, b
		if b.all {
			ex, in = b, a
		}
		for id := range ex.ids {
			if _, ok := in.ids[id]; !ok {
				out.ids[id] = struct{}{}
			}
		}
	default:
		for id := range a.ids {
			out.ids[id] = struct{}{}
		}
		for id := range b.ids {
			out.ids[id] = struct{}{}
		}
	}
	return out
}

// relatedPatients lists the patients the user reaches now, with the
// relationships that count for the purpose, and remembers each patient's
// relationships in the request's decision cache (as Decide would have
// looked them up).
func (a *Authorizer) relatedPatients(ctx context.Context, user string, purpose Purpose) (map[string]Vias, error) {
	src, ok := a.rel.(RelatedPatientsSource)
	if !ok {
		return nil, ErrReachUnknown
	}
	all, err := src.RelatedPatients(ctx, user, a.now())
	if err != nil {
		return nil, err
	}
	if c := cacheFrom(ctx); c != nil {
		c.mu.Lock()
		for patient, v := range all {
			c.rel[user+"\x00"+patient] = v
		}
		c.mu.Unlock()
	}
	out := make(map[string]Vias, len(all))
	glass := a.breakGlassCounts(purpose)
	for patient, v := range all {
		if !glass {
			v &^= RelBreakGlass
		}
		if v != 0 {
			out[patient] = v
		}
	}
	return out, nil
}

// compartment is the related patients whose consent for the purpose does
// not refuse it (or whose refusal an active grant passes).
func (a *Authorizer) compartment(ctx context.Context, related map[string]Vias, purpose Purpose, withConsent bool) (patientSet, error) {
	out := patientSet{ids: make(map[string]struct{}, len(related))}
	if !withConsent {
		for patient := range related {
			out.ids[patient] = struct{}{}
		}
		return out, nil
	}
	src, ok := a.consents.(ConsentListSource)
	if !ok {
		return patientSet{}, ErrReachUnknown
	}
	ids := make([]string, 0, len(related))
	for patient := range related {
		ids = append(ids, patient)
	}
	slices.Sort(ids)
	recorded, err := src.ConsentsAmong(ctx, purpose, ids, a.now())
	if err != nil {
		return patientSet{}, err
	}
	c := cacheFrom(ctx)
	for _, patient := range ids {
		d, ok := recorded[patient]
		switch {
		case !ok:
			d = ConsentNone
		case d != ConsentPermit && d != ConsentDeny:
			return patientSet{}, errBadConsent
		}
		if c != nil {
			c.mu.Lock()
			c.consent[patient+"\x00"+string(purpose)] = d
			c.mu.Unlock()
		}
		if a.effectiveConsent(purpose, d) == ConsentDeny &&
			(related[patient]&RelBreakGlass == 0 || !a.policy.breakGlass.OverridesConsentDeny) {
			continue
		}
		out.ids[patient] = struct{}{}
	}
	return out, nil
}

// anyConsenting is every patient whose consent lets the purpose through:
// all but the refusals in force when the default is permit, only the
// permissions in force when it is deny.
func (a *Authorizer) anyConsenting(ctx context.Context, purpose Purpose) (patientSet, error) {
	src, ok := a.consents.(ConsentListSource)
	if !ok {
		return patientSet{}, ErrReachUnknown
	}
	want, all := ConsentDeny, true
	if a.policy.DefaultConsent(purpose) != ConsentPermit {
		want, all = ConsentPermit, false
	}
	ids, err := src.PatientsWithConsent(ctx, purpose, want, a.now())
	if err != nil {
		return patientSet{}, err
	}
	out := patientSet{all: all, ids: make(map[string]struct{}, len(ids))}
	for _, id := range ids {
		out.ids[id] = struct{}{}
	}
	return out, nil
}

// Prefetch loads into ctx's decision cache, in one look-up, the consents
// for the purpose Decide would decide with (purpose, else the purpose
// stated for the request, else the role's) of those of patients not known
// to it yet, so that deciding a page of records of many patients costs one
// query, not one per patient. It changes no decision: without a cache, a
// source that can list, or when the look-up fails, Decide looks each
// patient up as before (and fails closed).
func (a *Authorizer) Prefetch(ctx context.Context, p *Principal, purpose Purpose, patients []string) {
	c := cacheFrom(ctx)
	src, ok := a.consents.(ConsentListSource)
	if c == nil || !ok || p == nil || len(patients) < 2 {
		return
	}
	if purpose == "" {
		purpose = PurposeFrom(ctx)
	}
	if rp, known := a.policy.roles[p.Role]; purpose == "" && known {
		purpose = rp.defaultPurpose
	}
	if !purpose.Valid() {
		return
	}
	var missing []string
	seen := make(map[string]bool, len(patients))
	c.mu.Lock()
	for _, patient := range patients {
		if _, have := c.consent[patient+"\x00"+string(purpose)]; !have && patient != "" && !seen[patient] {
			seen[patient] = true
			missing = append(missing, patient)
		}
	}
	c.mu.Unlock()
	if len(missing) < 2 {
		return
	}
	recorded, err := src.ConsentsAmong(ctx, purpose, missing, a.now())
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, patient := range missing {
		d, ok := recorded[patient]
		if !ok {
			d = ConsentNone
		}
		c.consent[patient+"\x00"+string(purpose)] = d
	}
}
