// Package auth decides who a request acts for and what it may do.
//
// Authentication: local accounts (argon2id password hashes) that receive
// short-lived EdDSA access JWTs and rotating, revocable refresh tokens, machine
// clients with scoped credentials, and tokens from external OIDC providers
// verified against their cached JWKS. Every token check pins algorithm,
// issuer, audience, expiry and not-before, and caps the lifetime a token
// may claim. Failed logins are throttled per account and client address,
// never per account alone, so that no stranger can lock a clinician out
// (login_throttle.go).
//
// Authorization: deny by default. Effective permission = the role's policy
// (resource type × action × visible fields) ∩ the token's scopes ∩ the
// patient's consent for the purpose, checked per record and again on
// responses. A decision made inside a transaction (DecideTx) reads
// relationships and consent through it, never through a second pooled
// connection (TxRelationshipSource, TxConsentSource). Each role is for people or for machine clients, as the policy
// says, and a principal of the other kind gets nothing from it
// (policy_principals.go). Clinicians reach only patients of their care teams or assigned
// work, or one patient for a limited time after break-the-glass. Reach
// answers the same question for a whole resource type before a search
// runs, so that searches are confined to what their records' decisions
// will allow (reach.go).
package auth
