package auth

import (
	"fmt"
	"slices"
	"sort"

	"github.com/careflow/careflow/internal/fhir"
)

// Which FHIR types the server serves, and the rule that no record is
// write-only. Both are the policy's to decide, here, once.
//
// Served: a FHIR R4 resource type is served when some rule of the policy
// grants an interaction on it (read, search, create, update, delete). Every
// other type, R4 or not, is unsupported for everyone: the FHIR surface
// answers 404 not-supported before it looks at who is asking, the
// CapabilityStatement leaves it out, and careflow import refuses it. A
// type no role could ever touch is not worth storing.
//
// Write-only records: a stored record lands in one of two scopes, and
// rules reach one or the other. A record whose patient_id names a patient
// is reached by compartment and any rules (and, for a type that is not
// patient data, by none rules too); a record that names no patient (a
// PaymentNotice, an organisational Task, an Observation whose subject is a
// contained resource) is reached only by none rules, since a compartment
// or any rule answers patient_required for it. So:
//
//   - at load (checkReadable), every type some rule writes in a scope must
//     be read in that scope by some rule of some role, or the policy is
//     refused naming the type;
//   - at write (Decide), a create or update of a record that names no
//     patient is refused as unreachable_record unless some none rule reads
//     the type: a compartment or any rule allows writes across patients,
//     but the record it would store could then be read by no one.

// ReasonUnreachableRecord refuses a create or update of a record that
// names no patient when no rule of the policy reads such records of its
// type.
const ReasonUnreachableRecord Reason = "unreachable_record"

// interaction reports whether a is a FHIR REST interaction (what the
// CapabilityStatement can list).
func interaction(a Action) bool {
	switch a {
	case ActionRead, ActionSearch, ActionCreate, ActionUpdate, ActionDelete:
		return true
	}
	return false
}

// Serves reports whether the FHIR surface serves type t: an R4 resource
// type on which some rule grants an interaction.
func (p *Policy) Serves(t string) bool {
	if !fhir.IsResourceType(t) {
		return false
	}
	for _, rp := range p.roles {
		for _, r := range rp.rules[t] {
			if slices.ContainsFunc(r.Actions, interaction) {
				return true
			}
		}
	}
	return false
}

// ServedTypes lists the served FHIR types, sorted.
func (p *Policy) ServedTypes() []string {
	seen := map[string]bool{}
	for _, rp := range p.roles {
		for t := range rp.rules {
			if !seen[t] && p.Serves(t) {
				seen[t] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// ReadsPatientless reports whether some rule of some role reads records of
// t that name no patient: a none rule granting read.
func (p *Policy) ReadsPatientless(t string) bool {
	for _, rp := range p.roles {
		for _, r := range rp.rules[t] {
			if r.Patients == PatientsNone && slices.Contains(r.Actions, ActionRead) {
				return true
			}
		}
	}
	return false
}

// readsPatients reports whether some rule of some role reads records of t
// that name a patient: a compartment or any rule, or a none rule of a type
// that is not patient data.
func (p *Policy) readsPatients(t string) bool {
	for _, rp := range p.roles {
		for _, r := range rp.rules[t] {
			if !slices.Contains(r.Actions, ActionRead) {
				continue
			}
			if r.Patients != PatientsNone || !PatientData(t) {
				return true
			}
		}
	}
	return false
}

// checkReadable refuses a policy under which a role can write records of a
// type that no role can read back: a none rule's records need a none
// reader, a compartment or any rule's a reader of patients' records. (A
// compartment or any rule's write of a record naming no patient is
// refused at write time unless ReadsPatientless.) Types and roles are
// visited in a stable order so the message is the same on every start.
func (p *Policy) checkReadable() error {
	roles := make([]string, 0, len(p.roles))
	for r := range p.roles {
		roles = append(roles, string(r))
	}
	sort.Strings(roles)
	for _, name := range roles {
		rp := p.roles[Role(name)]
		types := make([]string, 0, len(rp.rules))
		for t := range rp.rules {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			for _, r := range rp.rules[t] {
				if !slices.Contains(r.Actions, ActionCreate) && !slices.Contains(r.Actions, ActionUpdate) {
					continue
				}
				if r.Patients == PatientsNone && !p.ReadsPatientless(t) {
					return fmt.Errorf("roles.%s: %s records that name no patient can be written (patients none) but no role's rule reads them (read with patients none); they would be write-only", name, t)
				}
				if r.Patients != PatientsNone && !p.readsPatients(t) {
					return fmt.Errorf("roles.%s: %s records of patients can be written (patients %s) but no role's rule reads them; they would be write-only", name, t, r.Patients)
				}
			}
		}
	}
	return nil
}
