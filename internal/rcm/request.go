package rcm

// JourneyRequest is what starts a journey: the body of POST
// /api/v1/rcm/journeys and one entry of a batch (POST /api/v1/rcm/batches,
// a JSON array or NDJSON of these). It carries PHI (demographics,
// identifiers, codes): it is decoded strictly, stored only sealed (as the
// run's input), and errors about it name the field, never the value.
type JourneyRequest struct {
	// Kind is standard, emergency or scheduled.
	Kind      string         `json:"kind"`
	Patient   PatientInput   `json:"patient"`
	Encounter EncounterInput `json:"encounter"`
	// DiagnosisCodes are ICD-10-CM codes (dotted or not), the first the
	// principal diagnosis; each must be billable on the date of service.
	DiagnosisCodes []string `json:"diagnosis_codes"`
	// ProcedureCodes are CPT or HCPCS codes; a code listed twice is billed
	// as two units.
	ProcedureCodes []string       `json:"procedure_codes"`
	Insurance      InsuranceInput `json:"insurance"`
	// PreauthRequired asks for pre-authorization even where the payer's
	// rules do not require it (nil: as the payer's rules say). An emergency
	// journey never waits for one before care.
	PreauthRequired *bool `json:"preauth_required,omitempty"`
}

// The journey kinds.
const (
	KindStandard  = "standard"
	KindEmergency = "emergency"
	KindScheduled = "scheduled"
)

// PatientInput is the patient as the front desk registers them. A patient
// already in the record with the same national ID (or, without one, the
// same identifier of the same system) is reused, not duplicated.
type PatientInput struct {
	// NationalID is the 14-digit Egyptian national ID; it is checked
	// (century, birth date, governorate, check digit) and must agree with
	// BirthDate and Gender when they are given.
	NationalID  string       `json:"national_id,omitempty"`
	Identifiers []Identifier `json:"identifiers,omitempty"`
	// Family and Given are the name as the patient gives it, Arabic or
	// Latin script (UTF-8, kept as typed).
	Family    string   `json:"family"`
	Given     []string `json:"given,omitempty"`
	BirthDate string   `json:"birth_date,omitempty"` // YYYY-MM-DD
	Gender    string   `json:"gender,omitempty"`     // male | female | other | unknown
	Phone     string   `json:"phone,omitempty"`
}

// Identifier is a patient identifier other than the national ID (a
// medical record number, a passport).
type Identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// EncounterInput is the visit the claim is for.
type EncounterInput struct {
	// Class is the encounter class: AMB (outpatient), EMER, IMP
	// (inpatient), SS (day surgery); the kind implies one when empty.
	Class string `json:"class,omitempty"`
	// Start is the date of service (RFC 3339 or YYYY-MM-DD); codes are
	// checked as of this date. End is optional.
	Start string `json:"start"`
	End   string `json:"end,omitempty"`
}

// InsuranceInput is the patient's cover with one payer.
type InsuranceInput struct {
	// Payer is the payer's HCX participant code.
	Payer        string `json:"payer"`
	MemberID     string `json:"member_id"`
	PolicyNumber string `json:"policy_number,omitempty"`
	// Relationship of the patient to the subscriber: self (default),
	// spouse, child, other.
	Relationship string `json:"relationship,omitempty"`
}
