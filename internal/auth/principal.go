package auth

import (
	"context"
	"slices"
)

// Role is what a person or machine client does in the organisation; the
// access policy grants permissions to roles.
type Role string

// The roles careflow knows. Deny by default: a role absent from the policy
// may do nothing.
const (
	Physician     Role = "physician"
	Nurse         Role = "nurse"
	ClinicalAdmin Role = "clinical_admin"
	Admin         Role = "admin"
	Billing       Role = "billing"
	Auditor       Role = "auditor"
	Integration   Role = "integration"
)

// Roles lists every role, in a stable order.
func Roles() []Role {
	return []Role{Physician, Nurse, ClinicalAdmin, Admin, Billing, Auditor, Integration}
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles(), r) }

// PrincipalKind tells people from machine clients.
type PrincipalKind string

// The kinds of principal.
const (
	KindUser   PrincipalKind = "user"
	KindClient PrincipalKind = "client"
)

// Principal is who a request acts for, established by authentication and
// read by authorization and audit. It holds ids, never names.
type Principal struct {
	// Subject is the user id or client id (opaque).
	Subject string
	Kind    PrincipalKind
	Role    Role
	// Scopes are SMART-on-FHIR-style scopes the token carries (e.g.
	// "user/Patient.rs", "system/Claim.cruds"); the effective permission is
	// the role's policy intersected with them.
	Scopes []string
	// SessionID identifies the login session (refresh-token family) or "".
	SessionID string
	// Issuer is "careflow" for local tokens or the OIDC issuer URL.
	Issuer string
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the request's principal, if authenticated.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
