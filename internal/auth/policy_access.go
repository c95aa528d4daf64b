package auth

import (
	"time"

	"github.com/careflow/careflow/internal/store"
)

// Access bundles the authorization half of this package over one database:
// the policy, the Authorizer that enforces it, and the stores it reads
// (care teams and assignments, consents, break-the-glass grants). The HTTP
// layer takes one Access.
type Access struct {
	Policy     *Policy
	Authorizer *Authorizer
	CareTeams  *CareTeams
	Consents   *Consents
	BreakGlass *BreakGlass
}

// NewAccess builds the access services of db under policy p. A nil p is
// the embedded default; now defaults to time.Now.
func NewAccess(db *store.DB, p *Policy, now func() time.Time) *Access {
	if p == nil {
		p = DefaultPolicy()
	}
	if now == nil {
		now = time.Now
	}
	consents := NewConsents(db, now)
	return &Access{
		Policy:     p,
		Authorizer: NewAuthorizer(p, NewRelationships(db), consents, now),
		CareTeams:  NewCareTeams(db, now),
		Consents:   consents,
		BreakGlass: NewBreakGlass(db, p, now),
	}
}
