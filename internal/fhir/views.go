package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The typed views below hold the elements careflow's domain logic reads.
// They are read-only projections of the stored JSON: decoding ignores
// elements a view does not name, and nothing writes a view back over the
// record. Decimals stay json.Number so amounts keep their exact value.

// Identifier is the R4 Identifier datatype.
type Identifier struct {
	Use      string           `json:"use,omitempty"`
	Type     *CodeableConcept `json:"type,omitempty"`
	System   string           `json:"system,omitempty"`
	Value    string           `json:"value,omitempty"`
	Period   *Period          `json:"period,omitempty"`
	Assigner *Reference       `json:"assigner,omitempty"`
}

// Reference is the R4 Reference datatype.
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Period is the R4 Period datatype; Start and End are dateTimes as sent.
type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// HumanName is the R4 HumanName datatype.
type HumanName struct {
	Use    string   `json:"use,omitempty"`
	Text   string   `json:"text,omitempty"`
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
	Prefix []string `json:"prefix,omitempty"`
	Suffix []string `json:"suffix,omitempty"`
	Period *Period  `json:"period,omitempty"`
}

// ContactPoint is the R4 ContactPoint datatype (phone, email, ...).
type ContactPoint struct {
	System string  `json:"system,omitempty"`
	Value  string  `json:"value,omitempty"`
	Use    string  `json:"use,omitempty"`
	Rank   *int    `json:"rank,omitempty"`
	Period *Period `json:"period,omitempty"`
}

// Address is the R4 Address datatype.
type Address struct {
	Use        string   `json:"use,omitempty"`
	Type       string   `json:"type,omitempty"`
	Text       string   `json:"text,omitempty"`
	Line       []string `json:"line,omitempty"`
	City       string   `json:"city,omitempty"`
	District   string   `json:"district,omitempty"`
	State      string   `json:"state,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
	Country    string   `json:"country,omitempty"`
	Period     *Period  `json:"period,omitempty"`
}

// Money is the R4 Money datatype.
type Money struct {
	Value    json.Number `json:"value,omitempty"`
	Currency string      `json:"currency,omitempty"`
}

// Quantity is the R4 Quantity datatype (SimpleQuantity included).
type Quantity struct {
	Value      json.Number `json:"value,omitempty"`
	Comparator string      `json:"comparator,omitempty"`
	Unit       string      `json:"unit,omitempty"`
	System     string      `json:"system,omitempty"`
	Code       string      `json:"code,omitempty"`
}

// Patient is a read-only view of an R4 Patient.
type Patient struct {
	ID                   string           `json:"id,omitempty"`
	Meta                 *Meta            `json:"meta,omitempty"`
	Identifier           []Identifier     `json:"identifier,omitempty"`
	Active               *bool            `json:"active,omitempty"`
	Name                 []HumanName      `json:"name,omitempty"`
	Telecom              []ContactPoint   `json:"telecom,omitempty"`
	Gender               string           `json:"gender,omitempty"`
	BirthDate            string           `json:"birthDate,omitempty"`
	DeceasedBoolean      *bool            `json:"deceasedBoolean,omitempty"`
	DeceasedDateTime     string           `json:"deceasedDateTime,omitempty"`
	Address              []Address        `json:"address,omitempty"`
	MaritalStatus        *CodeableConcept `json:"maritalStatus,omitempty"`
	GeneralPractitioner  []Reference      `json:"generalPractitioner,omitempty"`
	ManagingOrganization *Reference       `json:"managingOrganization,omitempty"`
}

// Encounter is a read-only view of an R4 Encounter.
type Encounter struct {
	ID              string                 `json:"id,omitempty"`
	Meta            *Meta                  `json:"meta,omitempty"`
	Identifier      []Identifier           `json:"identifier,omitempty"`
	Status          string                 `json:"status,omitempty"`
	Class           *Coding                `json:"class,omitempty"`
	Type            []CodeableConcept      `json:"type,omitempty"`
	ServiceType     *CodeableConcept       `json:"serviceType,omitempty"`
	Priority        *CodeableConcept       `json:"priority,omitempty"`
	Subject         *Reference             `json:"subject,omitempty"`
	Participant     []EncounterParticipant `json:"participant,omitempty"`
	Period          *Period                `json:"period,omitempty"`
	ReasonCode      []CodeableConcept      `json:"reasonCode,omitempty"`
	Diagnosis       []EncounterDiagnosis   `json:"diagnosis,omitempty"`
	Account         []Reference            `json:"account,omitempty"`
	ServiceProvider *Reference             `json:"serviceProvider,omitempty"`
}

// EncounterParticipant is Encounter.participant.
type EncounterParticipant struct {
	Type       []CodeableConcept `json:"type,omitempty"`
	Period     *Period           `json:"period,omitempty"`
	Individual *Reference        `json:"individual,omitempty"`
}

// EncounterDiagnosis is Encounter.diagnosis.
type EncounterDiagnosis struct {
	Condition Reference        `json:"condition"`
	Use       *CodeableConcept `json:"use,omitempty"`
	Rank      *int             `json:"rank,omitempty"`
}

// Coverage is a read-only view of an R4 Coverage.
type Coverage struct {
	ID           string           `json:"id,omitempty"`
	Meta         *Meta            `json:"meta,omitempty"`
	Identifier   []Identifier     `json:"identifier,omitempty"`
	Status       string           `json:"status,omitempty"`
	Type         *CodeableConcept `json:"type,omitempty"`
	PolicyHolder *Reference       `json:"policyHolder,omitempty"`
	Subscriber   *Reference       `json:"subscriber,omitempty"`
	SubscriberID string           `json:"subscriberId,omitempty"`
	Beneficiary  Reference        `json:"beneficiary"`
	Dependent    string           `json:"dependent,omitempty"`
	Relationship *CodeableConcept `json:"relationship,omitempty"`
	Period       *Period          `json:"period,omitempty"`
	Payor        []Reference      `json:"payor,omitempty"`
	Class        []CoverageClass  `json:"class,omitempty"`
	Order        *int             `json:"order,omitempty"`
	Network      string           `json:"network,omitempty"`
	Subrogation  *bool            `json:"subrogation,omitempty"`
	Contract     []Reference      `json:"contract,omitempty"`
}

// CoverageClass is Coverage.class (group, plan, ...).
type CoverageClass struct {
	Type  CodeableConcept `json:"type"`
	Value string          `json:"value"`
	Name  string          `json:"name,omitempty"`
}

// Claim is a read-only view of an R4 Claim (a claim, pre-authorization or
// predetermination, per Use).
type Claim struct {
	ID             string           `json:"id,omitempty"`
	Meta           *Meta            `json:"meta,omitempty"`
	Identifier     []Identifier     `json:"identifier,omitempty"`
	Status         string           `json:"status,omitempty"`
	Type           *CodeableConcept `json:"type,omitempty"`
	SubType        *CodeableConcept `json:"subType,omitempty"`
	Use            string           `json:"use,omitempty"`
	Patient        Reference        `json:"patient"`
	BillablePeriod *Period          `json:"billablePeriod,omitempty"`
	Created        string           `json:"created,omitempty"`
	Enterer        *Reference       `json:"enterer,omitempty"`
	Insurer        *Reference       `json:"insurer,omitempty"`
	Provider       Reference        `json:"provider"`
	Priority       *CodeableConcept `json:"priority,omitempty"`
	Related        []ClaimRelated   `json:"related,omitempty"`
	Referral       *Reference       `json:"referral,omitempty"`
	Facility       *Reference       `json:"facility,omitempty"`
	CareTeam       []ClaimCareTeam  `json:"careTeam,omitempty"`
	Diagnosis      []ClaimDiagnosis `json:"diagnosis,omitempty"`
	Procedure      []ClaimProcedure `json:"procedure,omitempty"`
	Insurance      []ClaimInsurance `json:"insurance,omitempty"`
	Item           []ClaimItem      `json:"item,omitempty"`
	Total          *Money           `json:"total,omitempty"`
}

// ClaimRelated is Claim.related: a prior or sibling claim (appeals and
// resubmissions point at the original here).
type ClaimRelated struct {
	Claim        *Reference       `json:"claim,omitempty"`
	Relationship *CodeableConcept `json:"relationship,omitempty"`
	Reference    *Identifier      `json:"reference,omitempty"`
}

// ClaimCareTeam is Claim.careTeam.
type ClaimCareTeam struct {
	Sequence      int              `json:"sequence"`
	Provider      Reference        `json:"provider"`
	Responsible   *bool            `json:"responsible,omitempty"`
	Role          *CodeableConcept `json:"role,omitempty"`
	Qualification *CodeableConcept `json:"qualification,omitempty"`
}

// ClaimDiagnosis is Claim.diagnosis; exactly one of the diagnosis[x]
// fields is set.
type ClaimDiagnosis struct {
	Sequence                 int               `json:"sequence"`
	DiagnosisCodeableConcept *CodeableConcept  `json:"diagnosisCodeableConcept,omitempty"`
	DiagnosisReference       *Reference        `json:"diagnosisReference,omitempty"`
	Type                     []CodeableConcept `json:"type,omitempty"`
	OnAdmission              *CodeableConcept  `json:"onAdmission,omitempty"`
	PackageCode              *CodeableConcept  `json:"packageCode,omitempty"`
}

// ClaimProcedure is Claim.procedure.
type ClaimProcedure struct {
	Sequence                 int               `json:"sequence"`
	Type                     []CodeableConcept `json:"type,omitempty"`
	Date                     string            `json:"date,omitempty"`
	ProcedureCodeableConcept *CodeableConcept  `json:"procedureCodeableConcept,omitempty"`
	ProcedureReference       *Reference        `json:"procedureReference,omitempty"`
}

// ClaimInsurance is Claim.insurance.
type ClaimInsurance struct {
	Sequence      int         `json:"sequence"`
	Focal         bool        `json:"focal"`
	Identifier    *Identifier `json:"identifier,omitempty"`
	Coverage      Reference   `json:"coverage"`
	PreAuthRef    []string    `json:"preAuthRef,omitempty"`
	ClaimResponse *Reference  `json:"claimResponse,omitempty"`
}

// ClaimItem is Claim.item: one billed product or service.
type ClaimItem struct {
	Sequence                int               `json:"sequence"`
	CareTeamSequence        []int             `json:"careTeamSequence,omitempty"`
	DiagnosisSequence       []int             `json:"diagnosisSequence,omitempty"`
	ProcedureSequence       []int             `json:"procedureSequence,omitempty"`
	InformationSequence     []int             `json:"informationSequence,omitempty"`
	Revenue                 *CodeableConcept  `json:"revenue,omitempty"`
	Category                *CodeableConcept  `json:"category,omitempty"`
	ProductOrService        CodeableConcept   `json:"productOrService"`
	Modifier                []CodeableConcept `json:"modifier,omitempty"`
	ServicedDate            string            `json:"servicedDate,omitempty"`
	ServicedPeriod          *Period           `json:"servicedPeriod,omitempty"`
	LocationCodeableConcept *CodeableConcept  `json:"locationCodeableConcept,omitempty"`
	LocationReference       *Reference        `json:"locationReference,omitempty"`
	Quantity                *Quantity         `json:"quantity,omitempty"`
	UnitPrice               *Money            `json:"unitPrice,omitempty"`
	Factor                  json.Number       `json:"factor,omitempty"`
	Net                     *Money            `json:"net,omitempty"`
	Encounter               []Reference       `json:"encounter,omitempty"`
}

// ClaimResponse is a read-only view of an R4 ClaimResponse: the payer's
// adjudication of a claim or pre-authorization.
type ClaimResponse struct {
	ID            string                   `json:"id,omitempty"`
	Meta          *Meta                    `json:"meta,omitempty"`
	Identifier    []Identifier             `json:"identifier,omitempty"`
	Status        string                   `json:"status,omitempty"`
	Type          *CodeableConcept         `json:"type,omitempty"`
	Use           string                   `json:"use,omitempty"`
	Patient       Reference                `json:"patient"`
	Created       string                   `json:"created,omitempty"`
	Insurer       Reference                `json:"insurer"`
	Requestor     *Reference               `json:"requestor,omitempty"`
	Request       *Reference               `json:"request,omitempty"`
	Outcome       string                   `json:"outcome,omitempty"` // queued | complete | error | partial
	Disposition   string                   `json:"disposition,omitempty"`
	PreAuthRef    string                   `json:"preAuthRef,omitempty"`
	PreAuthPeriod *Period                  `json:"preAuthPeriod,omitempty"`
	Item          []ClaimResponseItem      `json:"item,omitempty"`
	Adjudication  []Adjudication           `json:"adjudication,omitempty"`
	Total         []ClaimResponseTotal     `json:"total,omitempty"`
	Payment       *ClaimResponsePayment    `json:"payment,omitempty"`
	Insurance     []ClaimResponseInsurance `json:"insurance,omitempty"`
	Error         []ClaimResponseError     `json:"error,omitempty"`
}

// ClaimResponseItem is ClaimResponse.item: the adjudication of one claim
// item, by its sequence.
type ClaimResponseItem struct {
	ItemSequence int            `json:"itemSequence"`
	NoteNumber   []int          `json:"noteNumber,omitempty"`
	Adjudication []Adjudication `json:"adjudication,omitempty"`
}

// Adjudication is ClaimResponse.item.adjudication (and the same shape at
// the claim level): submitted, eligible, benefit, copay, ... amounts.
type Adjudication struct {
	Category CodeableConcept  `json:"category"`
	Reason   *CodeableConcept `json:"reason,omitempty"`
	Amount   *Money           `json:"amount,omitempty"`
	Value    json.Number      `json:"value,omitempty"`
}

// ClaimResponseTotal is ClaimResponse.total.
type ClaimResponseTotal struct {
	Category CodeableConcept `json:"category"`
	Amount   Money           `json:"amount"`
}

// ClaimResponsePayment is ClaimResponse.payment.
type ClaimResponsePayment struct {
	Type       CodeableConcept `json:"type"`
	Adjustment *Money          `json:"adjustment,omitempty"`
	Date       string          `json:"date,omitempty"`
	Amount     Money           `json:"amount"`
	Identifier *Identifier     `json:"identifier,omitempty"`
}

// ClaimResponseInsurance is ClaimResponse.insurance.
type ClaimResponseInsurance struct {
	Sequence      int        `json:"sequence"`
	Focal         bool       `json:"focal"`
	Coverage      Reference  `json:"coverage"`
	ClaimResponse *Reference `json:"claimResponse,omitempty"`
}

// ClaimResponseError is ClaimResponse.error: a processing error, optionally
// tied to an item.
type ClaimResponseError struct {
	ItemSequence *int            `json:"itemSequence,omitempty"`
	Code         CodeableConcept `json:"code"`
}

// ParsePatient reads the Patient view from a stored Patient.
func ParsePatient(raw []byte) (*Patient, error) {
	var v Patient
	return &v, decodeView(raw, "Patient", &v)
}

// ParseEncounter reads the Encounter view.
func ParseEncounter(raw []byte) (*Encounter, error) {
	var v Encounter
	return &v, decodeView(raw, "Encounter", &v)
}

// ParseCoverage reads the Coverage view.
func ParseCoverage(raw []byte) (*Coverage, error) {
	var v Coverage
	return &v, decodeView(raw, "Coverage", &v)
}

// ParseClaim reads the Claim view.
func ParseClaim(raw []byte) (*Claim, error) {
	var v Claim
	return &v, decodeView(raw, "Claim", &v)
}

// ParseClaimResponse reads the ClaimResponse view.
func ParseClaimResponse(raw []byte) (*ClaimResponse, error) {
	var v ClaimResponse
	return &v, decodeView(raw, "ClaimResponse", &v)
}

// decodeView checks the resourceType and decodes raw into view, keeping
// numbers exact.
func decodeView(raw []byte, want string, view any) error {
	raw = stripBOM(raw)
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return fmt.Errorf("read %s: %w", want, err)
	}
	if head.ResourceType != want {
		return fmt.Errorf("read %s: resourceType is %q", want, head.ResourceType)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(view); err != nil {
		return fmt.Errorf("read %s: %w", want, err)
	}
	return nil
}

// Target splits a literal reference into the resource type and id it names
// ("Patient/123", "Patient/123/_history/2" or an absolute URL ending so).
// ok is false for references that name no type and id: urn:uuid:,
// urn:oid:, #contained, conditional, or identifier/display only.
func (r Reference) Target() (resourceType, id string, ok bool) {
	s := r.Reference
	typ := referencedType(s)
	if typ == "" {
		return "", "", false
	}
	parts := strings.Split(s, "/")
	if n := len(parts); n >= 4 && parts[n-2] == "_history" {
		parts = parts[:n-2]
	}
	id = parts[len(parts)-1]
	if id == "" {
		return "", "", false
	}
	return typ, id, true
}

// IdentifierValue returns the value of the first identifier with the given
// system, or "".
func IdentifierValue(ids []Identifier, system string) string {
	for _, id := range ids {
		if id.System == system {
			return id.Value
		}
	}
	return ""
}

// Code returns the code of the concept's first coding in system, or "".
func (c CodeableConcept) Code(system string) string {
	for _, cd := range c.Coding {
		if cd.System == system {
			return cd.Code
		}
	}
	return ""
}
