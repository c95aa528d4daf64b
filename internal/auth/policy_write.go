package auth

import (
	"slices"
	"sort"
)

// The field half of the policy for writes. A rule's fields say which
// top-level elements its role may see; a create or update allowed by that
// rule may set, replace or remove those elements and no others. Two
// consequences, both enforced where the write happens:
//
//   - A write whose body sets an element outside the rule's fields is
//     refused (ReasonFieldNotWritable, Decision.Field naming the element),
//     even when its value equals the stored one: a client that read the
//     record through the same rule never received the element, so it has no
//     business sending it, and comparing values would let a writer probe
//     hidden values by trial.
//   - An element the rule does not cover is kept from the stored version
//     (internal/record merges inside the write's transaction), so a writer
//     cannot erase what it cannot see by leaving it out.
//
// The always-visible elements (resourceType, id, meta by default) are every
// reader's, so every writer's. meta.versionId and meta.lastUpdated are the
// server's anyway; meta.profile, meta.security and meta.tag are the
// writer's to set or keep. No decision of this policy reads a security
// label or tag, so writing them grants nothing: if the policy ever decides
// on meta.security, meta must become a field of its own.

// ReasonFieldNotWritable refuses a create or update whose body sets an
// element outside the fields of the rule that would allow it.
const ReasonFieldNotWritable Reason = "field_not_writable"

// writesFields reports whether an action writes a record's elements.
func writesFields(a Action) bool { return a == ActionCreate || a == ActionUpdate }

// unwritable returns the first of elements that a rule's fields, with the
// always-visible ones, do not cover; "" when they cover every one. A nil
// field list covers everything.
func (p *Policy) unwritable(fields, elements []string) string {
	if fields == nil {
		return ""
	}
	for _, e := range elements {
		if !p.alwaysShown[e] && !slices.Contains(fields, e) {
			return e
		}
	}
	return ""
}

// WritableFields returns the top-level elements a write allowed with a
// decision's fields may set, replace or remove: those fields and the
// always-visible elements, sorted; nil (every element) for nil.
func (p *Policy) WritableFields(fields []string) []string {
	if fields == nil {
		return nil
	}
	out := slices.Clone(fields)
	for f := range p.alwaysShown {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}
