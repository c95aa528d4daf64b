package httpapi

import (
	"net/http"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/fhir"
)

// Which resource types the FHIR surface serves is the access policy's to
// say (auth.Policy.Serves: an R4 type some rule grants an interaction on).
// Any other type in a URL, R4 or not ("Money", a typo), is answered as FHIR
// says for an unsupported type, 404 with an OperationOutcome of code
// not-supported, the same for every caller: it is decided from the path
// alone, before the principal's role, scopes or relationships are looked
// at, so the answer tells a caller nothing about its own access. A
// Bundle entry of an unsupported type gets the same outcome (access.Guard).
// The CapabilityStatement lists exactly the served types, and careflow
// import refuses the others with the same policy.

// servesType reports whether the FHIR surface serves t. Without the access
// services (tests of the record alone) every R4 resource type is served.
func (s *Server) servesType(t string) bool {
	if s.opts.Access == nil || s.opts.Access.Policy == nil {
		return fhir.IsResourceType(t)
	}
	return s.opts.Access.Policy.Serves(t)
}

// errUnsupportedType is the answer for a type the server does not serve.
func errUnsupportedType(t string) error { return careaccess.UnsupportedType(t) }

// checkServedType answers an unsupported type in the request's path; it
// reports whether the request may go on.
func (s *Server) checkServedType(w http.ResponseWriter, r *http.Request) bool {
	t := r.PathValue("type")
	if t == "" || s.servesType(t) {
		return true
	}
	s.writeError(w, r, errUnsupportedType(t))
	return false
}
