package httpapi

import (
	"time"

	"github.com/careflow/careflow/internal/record"
)

// capabilitySecurity is rest.security.description of the CapabilityStatement.
const capabilitySecurity = "Every interaction but this statement needs a bearer token: a careflow access token " +
	"(POST /api/v1/auth/login for people, POST /api/v1/auth/token with OAuth2 client credentials for machine clients) " +
	"or, when configured, a token of the site's OIDC provider. What a token may do is its role's access policy, " +
	"intersected with its SMART scopes and the patient's consent for the purpose of use; a patient out of reach looks absent (404). " +
	"A search (its matches, Bundle.total, _summary=count and paging), its _include and _revinclude and a type history see only the " +
	"records the caller may read, so counts say nothing of the others (a total that cannot be vouched for is left out), and the criteria " +
	"of conditional interactions match only records of patients the caller reaches. " +
	"Every read, write and denial is recorded in careflow's audit log (see AuditEvent), and every patient whose data a response carries."

// capabilityStatement builds the CapabilityStatement for this server: with
// the access services, only the types and interactions the policy grants
// some role are listed.
func (s *Server) capabilityStatement() []byte {
	opts := record.CapabilityOptions{Security: capabilitySecurity, Limits: s.opts.Record.Limits()}
	if s.opts.Access != nil && s.opts.Access.Policy != nil {
		opts.Grants = map[string][]string{}
		for typ, actions := range s.opts.Access.Policy.Grants() {
			for _, a := range actions {
				opts.Grants[typ] = append(opts.Grants[typ], string(a))
			}
		}
	}
	return record.CapabilityStatementFor(s.opts.Version, time.Now(), opts)
}
