package httpapi

import (
	"context"

	"github.com/careflow/careflow/internal/auth"
)

// SeesElement implements record.ElementGuard: whether the caller's role
// sees the top-level element of typ's records for the purpose the request
// is decided for (the access policy's field rules, auth.ElementVisible).
// The record refuses a search, sort, include or conditional criteria
// over an element this denies, so what a response redacts cannot be
// learned from which records match.
func (g *fhirGuard) SeesElement(_ context.Context, typ, element string) bool {
	pol := g.s.opts.Access.Policy
	return pol.ElementVisible(g.p.Role, typ, g.listingPurpose(), element)
}

// listingPurpose is the purpose the request's listings are decided for:
// the one its last allowed decision was made for, else the one Decide
// would take (the stated purpose of use, else the role's default), for
// criteria checked before any decision (a conditional create's).
func (g *fhirGuard) listingPurpose() auth.Purpose {
	if p := g.decidedPurpose(); p != "" {
		return p
	}
	if p := auth.PurposeFrom(g.r.Context()); p != "" {
		return p
	}
	return g.s.opts.Access.Policy.DefaultPurpose(g.p.Role)
}
