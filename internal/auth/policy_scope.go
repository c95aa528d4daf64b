package auth

import (
	"errors"
	"strings"
)

// Token scopes narrow what the role's policy grants; they never widen it.
// careflow reads SMART App Launch scopes:
//
//	context "/" type "." permissions [ "?" params ]
//
// context is patient, user or system; type is a resource type or "*";
// permissions are SMART v2 letters c r u d s (each at most once, in that
// order) or the v1 words read (= rs), write (= cud) and * (= cruds).
//
// Which scopes count for a principal, and why:
//   - user/ scopes count for people (KindUser), system/ scopes for machine
//     clients (KindClient). A scope of the other kind grants nothing, so a
//     backend credential leaked into a browser cannot act as a user, or the
//     reverse.
//   - patient/ scopes grant nothing: they are relative to a launch patient,
//     and careflow does not yet issue launch contexts. Reading them as
//     user/ scopes would widen a patient-bound token to every patient.
//   - A granular scope (one with ?params, e.g. Observation.rs?category=
//     laboratory) grants nothing: careflow cannot yet enforce its filter,
//     and granting the whole type would be wider than the token says.
//   - Anything else that is not a resource scope (openid, fhirUser, launch,
//     offline_access, a malformed string) is ignored for authorization.
//   - No resource scopes, no access: a token must say what it may do. One
//     case is settled by the policy instead of the token: a careflow login
//     session (a user token carrying careflow's session id) whose token
//     names no resource scope acts with the policy's session_scopes
//     (default user/*.cruds: the role's policy alone limits a person using
//     careflow's own console). A session token that does name resource
//     scopes is held to them; tokens from OIDC providers (no careflow
//     session) and machine clients always need their own scopes.

// FirstPartyUserScopes are the scopes of a first-party careflow session
// (the default policy's session_scopes): every permission on every type, so
// that the role's policy alone limits it.
func FirstPartyUserScopes() []string { return []string{"user/*.cruds"} }

// ScopeContext is the first segment of a resource scope.
type ScopeContext string

// The scope contexts.
const (
	ScopePatient ScopeContext = "patient"
	ScopeUser    ScopeContext = "user"
	ScopeSystem  ScopeContext = "system"
)

// Perms is a set of SMART permissions.
type Perms uint8

// The SMART v2 permission letters.
const (
	PermCreate Perms = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch
	PermAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch
)

const permLetters = "cruds"

// String writes the permissions in SMART v2 letter form.
func (p Perms) String() string {
	var b strings.Builder
	for i := 0; i < len(permLetters); i++ {
		if p&(1<<i) != 0 {
			b.WriteByte(permLetters[i])
		}
	}
	return b.String()
}

// Scope is one parsed resource scope.
type Scope struct {
	Context ScopeContext
	// ResourceType is a resource type name or "*".
	ResourceType string
	Perms        Perms
	// Params is the raw query of a granular scope, without the "?".
	Params string
}

// String writes the scope in SMART v2 form.
func (s Scope) String() string {
	out := string(s.Context) + "/" + s.ResourceType + "." + s.Perms.String()
	if s.Params != "" {
		out += "?" + s.Params
	}
	return out
}

// maxScopeLen bounds one scope string; real ones are a few dozen bytes.
const maxScopeLen = 512

var errNotResourceScope = errors.New("not a resource scope")

// ParseScope parses one resource scope. It reports errNotResourceScope
// (wrapped) for strings without the context/type.perms shape, and a
// descriptive error for resource scopes that are malformed.
func ParseScope(raw string) (Scope, error) {
	if len(raw) > maxScopeLen {
		return Scope{}, errors.New("scope is too long")
	}
	ctxPart, rest, ok := strings.Cut(raw, "/")
	if !ok {
		return Scope{}, errNotResourceScope
	}
	var s Scope
	switch ScopeContext(ctxPart) {
	case ScopePatient, ScopeUser, ScopeSystem:
		s.Context = ScopeContext(ctxPart)
	default:
		return Scope{}, errNotResourceScope
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		s.Params = rest[q+1:]
		rest = rest[:q]
		if s.Params == "" {
			return Scope{}, errors.New("scope has an empty query")
		}
		for i := 0; i < len(s.Params); i++ {
			if c := s.Params[i]; c <= ' ' || c > '~' {
				return Scope{}, errors.New("scope query has a space or non-ASCII character")
			}
		}
	}
	typ, perms, ok := strings.Cut(rest, ".")
	if !ok {
		return Scope{}, errors.New("scope has no permissions after the resource type")
	}
	if typ != "*" && !isResourceTypeName(typ) {
		return Scope{}, errors.New("scope resource type must be * or a resource type name")
	}
	s.ResourceType = typ
	p, err := parsePerms(perms)
	if err != nil {
		return Scope{}, err
	}
	s.Perms = p
	return s, nil
}

func parsePerms(s string) (Perms, error) {
	switch s {
	case "read":
		return PermRead | PermSearch, nil
	case "write":
		return PermCreate | PermUpdate | PermDelete, nil
	case "*":
		return PermAll, nil
	case "":
		return 0, errors.New("scope has no permissions")
	}
	var p Perms
	next := 0 // letters must come in cruds order, each once
	for i := 0; i < len(s); i++ {
		j := strings.IndexByte(permLetters, s[i])
		if j < 0 {
			return 0, errors.New("scope permissions must be letters of cruds, or read, write or *")
		}
		if j < next {
			return 0, errors.New("scope permission letters must appear once each, in the order c r u d s")
		}
		p |= 1 << j
		next = j + 1
	}
	return p, nil
}

// isResourceTypeName accepts an upper-case letter then letters.
func isResourceTypeName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// permsFor is what an action needs from the scopes.
func permsFor(a Action) Perms {
	switch a {
	case ActionRead:
		return PermRead
	case ActionSearch:
		return PermSearch
	case ActionCreate:
		return PermCreate
	case ActionUpdate:
		return PermUpdate
	case ActionDelete:
		return PermDelete
	case ActionExport:
		// An export reads and searches in bulk.
		return PermRead | PermSearch
	case ActionBreakGlass:
		// Breaking the glass is for reading the record it opens.
		return PermRead
	}
	return PermAll + 1 // never satisfiable
}

// effectiveScopes are the scopes a decision intersects with: the token's,
// or the policy's session scopes for a careflow login session whose token
// names no resource scope.
func (p *Policy) effectiveScopes(pr *Principal) []string {
	// A role not for people needs the scopes it was granted: the session
	// scopes never widen it (policy_principals.go).
	if pr.Kind != KindUser || pr.SessionID == "" || !p.RoleIsFor(pr.Role, KindUser) {
		return pr.Scopes
	}
	for _, raw := range pr.Scopes {
		if _, err := ParseScope(raw); err == nil {
			return pr.Scopes
		}
	}
	return p.sessionScopes
}

// ScopesAllow reports whether the principal's token scopes permit the
// action on the resource type, following the rules at the top of this file
// (the token's own scopes; Decide also applies the policy's session scopes).
func ScopesAllow(p *Principal, resourceType string, a Action) bool {
	return scopesAllow(p.Kind, p.Scopes, resourceType, a)
}

func scopesAllow(kind PrincipalKind, scopes []string, resourceType string, a Action) bool {
	need := permsFor(a)
	if need > PermAll {
		return false
	}
	want := ScopeUser
	if kind == KindClient {
		want = ScopeSystem
	} else if kind != KindUser {
		return false
	}
	var have Perms
	for _, raw := range scopes {
		s, err := ParseScope(raw)
		if err != nil || s.Context != want || s.Params != "" {
			continue
		}
		if s.ResourceType == "*" || s.ResourceType == resourceType {
			have |= s.Perms
		}
	}
	return have&need == need
}
