package auth

import "context"

// DecideType answers the question every interaction on one record asks
// before the record is looked up: may the principal do req.Action to
// records of req.ResourceType at all, for some patient (steps 1 to 4 of
// Decide: who, what, the role's rules, the token's scopes)? req.PatientID
// is ignored.
//
// The answer depends only on the principal, the request and the policy,
// never on what the database holds, so a caller that refuses on it
// refuses an id that exists and one that does not alike: a role that may
// never delete Observations gets the same 403 for every Observation id.
// When it is allowed, the record's own decision (Decide, with its
// patient) follows once the record is found; a denial there that is
// about the patient's reach (not_related) is answered as if the record
// did not exist.
//
// An allowed decision carries the purpose decided for and RecheckRecords;
// it grants nothing by itself.
func (a *Authorizer) DecideType(ctx context.Context, p *Principal, req Request) Decision {
	_, _, d := a.typeRules(ctx, p, req)
	if d.Allowed {
		d.RecheckRecords = true
	}
	return d
}
