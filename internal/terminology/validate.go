package terminology

import "time"

// Reason says in one word why a code is not valid. It is stable: callers
// (the FHIR validator, the revenue cycle's code-validation step, denial
// analytics) branch on it, while Message is for people.
type Reason string

// The reasons. An empty Reason means the code is valid.
const (
	ReasonUnknownSystem   Reason = "unknown-system"      // careflow does not know the code system
	ReasonMalformed       Reason = "malformed"           // not shaped like a code of the system
	ReasonBadCheckDigit   Reason = "bad-check-digit"     // SNOMED CT Verhoeff or LOINC mod-10 digit is wrong
	ReasonWrongPartition  Reason = "wrong-partition"     // a SNOMED CT identifier that is not a concept
	ReasonUnknown         Reason = "unknown"             // well-formed but in no release of the system
	ReasonNotBillable     Reason = "header-not-billable" // an ICD-10-CM header (category) code
	ReasonNotValidOnDate  Reason = "not-valid-on-date"   // in some release, but not the one for the date of service
	ReasonNoRelease       Reason = "no-release-for-date" // releases are loaded, but none covers the date of service
	ReasonDisplayMismatch Reason = "display-mismatch"    // the code is right, the display given is not its display
)

// Basis says what an answer rests on, because a format check and a release
// look-up are not equally strong evidence.
type Basis string

// The bases.
const (
	// BasisRelease: the code was looked up in a loaded release.
	BasisRelease Basis = "release"
	// BasisStarterSet: no release is loaded; the built-in starter set answered.
	BasisStarterSet Basis = "starter-set"
	// BasisFormat: only the system's format rules (and check digit) were
	// applied; careflow holds no content for the system.
	BasisFormat Basis = "format"
)

// ValidateOptions are the optional inputs of ValidateCode.
type ValidateOptions struct {
	// Display, when set, must match the code's display (compared ignoring
	// case and runs of white space) or the code is reported invalid.
	Display string
	// Date is the date of service; its calendar date in its own location is
	// used. Zero means "the newest release", which suits look-ups but not
	// claims: billing callers must always give the date.
	Date time.Time
	// Version pins one release of the system; empty picks by Date.
	Version string
	// Abstract accepts header codes (FHIR's notSelectable concepts), as the
	// FHIR $validate-code "abstract" parameter asks. Billing leaves it false:
	// a header code is never billable.
	Abstract bool
}

// Validation is the answer of ValidateCode.
type Validation struct {
	Valid bool
	// Reason is empty when Valid.
	Reason Reason
	// Message explains the answer to a person, naming the reason and, where
	// it helps, the fix. It never contains PHI: for identifier systems
	// (the Egyptian national ID) it does not quote the value.
	Message string
	Basis   Basis
	System  string
	// Version is the release that answered ("2026"), the starter set's name,
	// or empty for a format-only answer.
	Version string
	// Code is the code in display form (ICD-10-CM dotted). Empty for
	// identifier systems, whose values are PHI.
	Code string
	// Display is the code's preferred display when careflow knows it, also
	// when the code is invalid for another reason (a header code still has
	// a name).
	Display string
	// Billable is true for ICD-10-CM codes marked valid for HIPAA-covered
	// transactions, and for every code of a list-loaded system.
	Billable bool
}

// problem is a format rule broken, before any look-up.
type problem struct {
	reason Reason
	msg    string
}
