package httpapi

import (
	"context"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/record"
)

// AllowType implements record.TypeGuard: the question asked of every
// interaction on one record before its id is looked up (see
// internal/record/existence.go). The policy answers it from the role, the
// purpose and the token alone (auth.Authorizer.DecideType), so its
// refusal, a 403 naming the reason, is the same for an id that exists and
// for one that does not. The refusal is audited like any denial, naming the
// id asked for and no patient: the same entry whether or not the id is
// held. An allowed answer is not audited; the record's own decision,
// which follows, is.
func (g *fhirGuard) AllowType(_ context.Context, a record.Access) error {
	acc := access{req: auth.Request{Action: auth.Action(a.Action), ResourceType: a.Type}, resourceID: a.ID}
	d := g.s.opts.Access.Authorizer.DecideType(g.r.Context(), g.p, acc.req)
	if d.Allowed {
		return nil
	}
	g.note(g.s.auditEntry(g.r, g.p, acc, d))
	return denialError(d)
}
