package fhir

// OperationOutcome is the FHIR R4 resource that carries errors, warnings and
// information about an interaction. careflow returns one for every error on
// /fhir/..., with one issue per problem and the element path in Expression.
type OperationOutcome struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id,omitempty"`
	Issue        []OutcomeIssue `json:"issue"`
}

// OutcomeIssue is one entry of OperationOutcome.issue.
type OutcomeIssue struct {
	// Severity is fatal | error | warning | information.
	Severity string `json:"severity"`
	// Code is from the IssueType value set (invalid, structure, required,
	// value, processing, not-found, conflict, security, login, forbidden,
	// throttled, exception, too-costly, not-supported, ...).
	Code        string           `json:"code"`
	Details     *CodeableConcept `json:"details,omitempty"`
	Diagnostics string           `json:"diagnostics,omitempty"`
	Expression  []string         `json:"expression,omitempty"`
}

// CodeableConcept is the FHIR datatype, reduced to what careflow writes.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Coding is the FHIR datatype.
type Coding struct {
	System  string `json:"system,omitempty"`
	Version string `json:"version,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// NewOutcome returns an OperationOutcome with one issue.
func NewOutcome(severity, code, diagnostics string, expression ...string) *OperationOutcome {
	return &OperationOutcome{
		ResourceType: "OperationOutcome",
		Issue: []OutcomeIssue{{
			Severity:    severity,
			Code:        code,
			Diagnostics: diagnostics,
			Expression:  expression,
		}},
	}
}
