package auth

import (
	"fmt"
	"strings"

	"github.com/careflow/careflow/internal/errs"
)

// Who a role is for. A role is written for people or for machine clients,
// and the policy says which (each role's "principals": ["people"],
// ["clients"] or both). The difference matters because the two are
// narrowed differently: a person's careflow session acts with the policy's
// session_scopes (the role's rules alone limit it), while a client acts
// only with the system/ scopes it was granted. A role made broad on the
// understanding that scopes narrow it (integration: every patient, any
// resource) would hand a person with a password everything. So:
//
//   - an account cannot be given a role that is not for people, nor a
//     client one that is not for clients (AddUser, SetRole, AddClient);
//   - an account that has such a role anyway (made before the policy
//     said so, or by hand) cannot sign in or refresh, with a reason that
//     names the fix (careflow user set-role), and a client likewise gets
//     no token;
//   - every decision denies a principal whose kind the role is not for
//     (ReasonRoleNotForPrincipal), whatever issued its token: careflow,
//     an OIDC provider or a forged-but-signed leftover;
//   - session_scopes apply only to roles for people.
//
// The loader requires the key on every role, so that a policy file cannot
// leave the question open by omission.

// Principal kinds as the policy document names them.
const (
	principalsPeople  = "people"
	principalsClients = "clients"
)

// ReasonRoleNotForPrincipal denies a principal whose role is not for its
// kind (a person with a role for machine clients, or the reverse).
const ReasonRoleNotForPrincipal Reason = "role_not_for_principal"

// parsePrincipals validates a role's "principals" list.
func parsePrincipals(role string, list []string) (forPeople, forClients bool, err error) {
	if len(list) == 0 {
		return false, false, fmt.Errorf(`roles.%s.principals is required: ["people"], ["clients"] or both, saying whether accounts or machine clients may have the role`, role)
	}
	for _, p := range list {
		switch p {
		case principalsPeople:
			if forPeople {
				return false, false, fmt.Errorf("roles.%s.principals names people twice", role)
			}
			forPeople = true
		case principalsClients:
			if forClients {
				return false, false, fmt.Errorf("roles.%s.principals names clients twice", role)
			}
			forClients = true
		default:
			return false, false, fmt.Errorf(`roles.%s.principals: %q is neither "people" nor "clients"`, role, p)
		}
	}
	return forPeople, forClients, nil
}

// RoleIsFor reports whether the policy lets principals of kind have role.
// A role the policy does not name is for nobody.
func (p *Policy) RoleIsFor(role Role, kind PrincipalKind) bool {
	rp, ok := p.roles[role]
	if !ok {
		return false
	}
	switch kind {
	case KindUser:
		return rp.forPeople
	case KindClient:
		return rp.forClients
	}
	return false
}

// RolesFor lists the roles the policy lets principals of kind have, in
// Roles() order.
func (p *Policy) RolesFor(kind PrincipalKind) []Role {
	var out []Role
	for _, r := range Roles() {
		if p.RoleIsFor(r, kind) {
			out = append(out, r)
		}
	}
	return out
}

// CheckRoleFor returns an Invalid error naming the roles allowed when the
// policy does not let principals of kind have role.
func (p *Policy) CheckRoleFor(role Role, kind PrincipalKind) error {
	if !role.Valid() {
		return errs.E(errs.Invalid, "unknown role %q", string(role)).InField("role")
	}
	if p.RoleIsFor(role, kind) {
		return nil
	}
	who, other := "an account (a person)", "machine clients"
	if kind == KindClient {
		who, other = "a machine client", "people"
	}
	if _, named := p.roles[role]; !named {
		return errs.E(errs.Invalid, "role %s is not in the access policy, so it would grant nothing; give %s one of: %s",
			role, who, joinRoles(p.RolesFor(kind))).InField("role")
	}
	return errs.E(errs.Invalid, "role %s is for %s only and cannot be given to %s; use one of: %s",
		role, other, who, joinRoles(p.RolesFor(kind))).InField("role")
}

func joinRoles(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
