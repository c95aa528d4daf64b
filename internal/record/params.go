package record

import "sort"

// Kind is a search parameter type (R4 search-param-type) as far as this
// server indexes it.
type Kind string

// The parameter kinds the record indexes.
const (
	Token     Kind = "token"
	String    Kind = "string"
	Date      Kind = "date"
	Reference Kind = "reference"
	Number    Kind = "number"
	Quantity  Kind = "quantity"
)

// Param is one search parameter of one resource type: where its values are
// in the JSON and whether they are PHI.
type Param struct {
	Name string
	Kind Kind
	// Paths are element paths from the resource root, dot-separated; every
	// step descends into arrays. A step may carry a filter "telecom[system=phone]"
	// that keeps only objects whose member has that value. Choice elements
	// are listed by their concrete names (effectiveDateTime, effectivePeriod).
	Paths []string
	// PHI values are stored and searched only as blind indexes: exact match
	// (strings also by prefixes of 3 letters and more); no :contains, no
	// sorting, no ranges.
	PHI bool
	// Whole PHI strings are indexed by their whole normalised value only
	// (no prefixes): addresses, where a prefix would match half the city.
	Whole bool
	// Code marks a PHI token whose values are clinical codes (what is
	// wrong with the patient, what was found, done or given, which kind of
	// care): the row holds the blind index of the exact code (case and
	// punctuation kept, as codes are matched), the system stays plain. See
	// blindcodes.go.
	Code bool
	// Also names parameters of the same type whose rows a search on this
	// one matches too: name searches family and given, which are indexed
	// once under their own names instead of again under name.
	Also []string
	// Targets are the resource types a reference parameter may point to;
	// empty means any.
	Targets []string
	// Doc is the searchParam documentation in the CapabilityStatement.
	Doc string
}

// typeParams maps a resource type to its parameters by name.
var typeParams = map[string]map[string]*Param{}

// patientPaths are the references that put a resource into a patient's
// compartment, by resource type; the first literal Patient reference found
// wins. Patient itself is its own compartment.
var patientPaths = map[string][]string{
	"CareTeam":                    {"subject"},
	"Coverage":                    {"beneficiary", "subscriber", "policyHolder"},
	"Encounter":                   {"subject"},
	"Condition":                   {"subject"},
	"Procedure":                   {"subject"},
	"Observation":                 {"subject"},
	"Claim":                       {"patient"},
	"ClaimResponse":               {"patient"},
	"CoverageEligibilityRequest":  {"patient"},
	"CoverageEligibilityResponse": {"patient"},
	"Communication":               {"subject"},
	"CommunicationRequest":        {"subject"},
	"Task":                        {"for"},
	"Consent":                     {"patient"},
	// An Appointment names its patient among its participants (R4's
	// patient compartment: actor); without this every Appointment was a
	// record of no patient, out of reach of the clinicians' compartment.
	"Appointment": {"participant.actor"},
}

// genericPatientPaths are tried on resource types this server stores but
// does not model, so that their records still land in a compartment.
var genericPatientPaths = []string{"patient", "subject", "beneficiary", "for"}

func define(typ string, ps ...Param) {
	m := map[string]*Param{}
	for i := range ps {
		p := ps[i]
		m[p.Name] = &p
	}
	typeParams[typ] = m
}

// Shorthands for the tables below.
func tok(name string, paths ...string) Param { return Param{Name: name, Kind: Token, Paths: paths} }
func str(name string, paths ...string) Param { return Param{Name: name, Kind: String, Paths: paths} }
func date(name string, paths ...string) Param {
	return Param{Name: name, Kind: Date, Paths: paths}
}
func ref(name string, targets []string, paths ...string) Param {
	return Param{Name: name, Kind: Reference, Paths: paths, Targets: targets}
}
func blind(p Param) Param { p.PHI = true; return p }
func whole(p Param) Param { p.PHI, p.Whole = true, true; return p }

// clinical marks a token parameter whose codes say something about the
// patient's health or care; doc.go states the rule.
func clinical(p Param) Param { p.PHI, p.Code = true, true; return p }

// nameParam is HumanName search: the parts outside family and given (text,
// prefix, suffix) are indexed under name; a name search also matches the
// family and given rows.
func nameParam() Param {
	p := blind(str("name", "name.text", "name.prefix", "name.suffix"))
	p.Also = []string{"family", "given"}
	return p
}
func qty(name string, paths ...string) Param { return Param{Name: name, Kind: Quantity, Paths: paths} }

var (
	patientT = []string{"Patient"}
	anyT     []string
)

// The tables follow the R4 search parameters of each resource that clinical
// and billing work needs. Which values are PHI is decided here, once; see
// doc.go for the reasons.
func init() {
	// People. Every HumanName, ContactPoint and Address is blind-indexed
	// wherever it appears (a practitioner's name is personal data too, and
	// a shared family name must not leak the patient's through the index).
	define("Patient",
		blind(tok("identifier", "identifier")),
		nameParam(),
		blind(str("family", "name.family")),
		blind(str("given", "name.given")),
		blind(tok("birthdate", "birthDate")),
		tok("gender", "gender"),
		blind(tok("phone", "telecom[system=phone]")),
		blind(tok("email", "telecom[system=email]")),
		blind(tok("telecom", "telecom")),
		whole(str("address", "address")),
		whole(str("address-city", "address.city")),
		whole(str("address-postalcode", "address.postalCode")),
		tok("active", "active"),
		ref("general-practitioner", []string{"Practitioner", "PractitionerRole", "Organization"}, "generalPractitioner"),
		ref("organization", []string{"Organization"}, "managingOrganization"),
		ref("link", anyT, "link.other"),
	)
	define("Practitioner",
		tok("identifier", "identifier"),
		nameParam(),
		blind(str("family", "name.family")),
		blind(str("given", "name.given")),
		blind(tok("telecom", "telecom")),
		blind(tok("phone", "telecom[system=phone]")),
		blind(tok("email", "telecom[system=email]")),
		tok("active", "active"),
		tok("gender", "gender"),
	)
	define("PractitionerRole",
		tok("identifier", "identifier"),
		ref("practitioner", []string{"Practitioner"}, "practitioner"),
		ref("organization", []string{"Organization"}, "organization"),
		ref("location", []string{"Location"}, "location"),
		tok("role", "code"),
		tok("specialty", "specialty"),
		tok("active", "active"),
		date("date", "period"),
	)
	define("Organization",
		tok("identifier", "identifier"),
		str("name", "name", "alias"),
		tok("type", "type"),
		tok("active", "active"),
		ref("partof", []string{"Organization"}, "partOf"),
	)
	define("Location",
		tok("identifier", "identifier"),
		str("name", "name", "alias"),
		tok("status", "status"),
		tok("type", "type"),
		ref("organization", []string{"Organization"}, "managingOrganization"),
		ref("partof", []string{"Location"}, "partOf"),
	)
	define("CareTeam",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "subject"),
		ref("subject", []string{"Patient", "Group"}, "subject"),
		ref("encounter", []string{"Encounter"}, "encounter"),
		ref("participant", anyT, "participant.member"),
		tok("status", "status"),
		clinical(tok("category", "category")),
		date("date", "period"),
	)
	define("Coverage",
		blind(tok("identifier", "identifier")),
		ref("beneficiary", patientT, "beneficiary"),
		ref("patient", patientT, "beneficiary"),
		ref("payor", []string{"Organization", "Patient", "RelatedPerson"}, "payor"),
		ref("subscriber", []string{"Patient", "RelatedPerson"}, "subscriber"),
		ref("policy-holder", []string{"Patient", "RelatedPerson", "Organization"}, "policyHolder"),
		tok("status", "status"),
		clinical(tok("type", "type")),
		blind(tok("subscriber-id", "subscriberId")),
		tok("class-type", "class.type"),
	)
	define("InsurancePlan",
		tok("identifier", "identifier"),
		str("name", "name", "alias"),
		tok("status", "status"),
		tok("type", "type"),
		ref("owned-by", []string{"Organization"}, "ownedBy"),
		ref("administered-by", []string{"Organization"}, "administeredBy"),
	)
	define("Encounter",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "subject"),
		ref("subject", []string{"Patient", "Group"}, "subject"),
		tok("status", "status"),
		tok("class", "class"),
		clinical(tok("type", "type")),
		date("date", "period"),
		ref("participant", []string{"Practitioner", "PractitionerRole", "RelatedPerson"}, "participant.individual"),
		ref("practitioner", []string{"Practitioner"}, "participant.individual"),
		ref("service-provider", []string{"Organization"}, "serviceProvider"),
		ref("location", []string{"Location"}, "location.location"),
		ref("diagnosis", []string{"Condition", "Procedure"}, "diagnosis.condition"),
		ref("part-of", []string{"Encounter"}, "partOf"),
		clinical(tok("reason-code", "reasonCode")),
	)
	define("Condition",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "subject"),
		ref("subject", []string{"Patient", "Group"}, "subject"),
		ref("encounter", []string{"Encounter"}, "encounter"),
		clinical(tok("code", "code")),
		tok("clinical-status", "clinicalStatus"),
		tok("verification-status", "verificationStatus"),
		tok("category", "category"),
		tok("severity", "severity"),
		date("onset-date", "onsetDateTime", "onsetPeriod"),
		date("recorded-date", "recordedDate"),
		ref("asserter", anyT, "asserter"),
	)
	define("Procedure",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "subject"),
		ref("subject", []string{"Patient", "Group"}, "subject"),
		ref("encounter", []string{"Encounter"}, "encounter"),
		clinical(tok("code", "code")),
		tok("status", "status"),
		clinical(tok("category", "category")),
		date("date", "performedDateTime", "performedPeriod"),
		ref("performer", anyT, "performer.actor"),
		clinical(tok("reason-code", "reasonCode")),
	)
	define("Observation",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "subject"),
		ref("subject", anyT, "subject"),
		ref("encounter", []string{"Encounter"}, "encounter"),
		clinical(tok("code", "code")),
		tok("status", "status"),
		tok("category", "category"),
		date("date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
		ref("performer", anyT, "performer"),
		qty("value-quantity", "valueQuantity"),
		clinical(tok("value-concept", "valueCodeableConcept")),
		clinical(tok("component-code", "component.code")),
		ref("has-member", anyT, "hasMember"),
		ref("derived-from", anyT, "derivedFrom"),
	)
	define("Claim",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "patient"),
		tok("status", "status"),
		tok("use", "use"),
		date("created", "created"),
		ref("insurer", []string{"Organization"}, "insurer"),
		ref("provider", []string{"Practitioner", "PractitionerRole", "Organization"}, "provider"),
		ref("encounter", []string{"Encounter"}, "item.encounter"),
		ref("enterer", []string{"Practitioner", "PractitionerRole"}, "enterer"),
		ref("facility", []string{"Location"}, "facility"),
		ref("care-team", anyT, "careTeam.provider"),
		ref("payee", anyT, "payee.party"),
		tok("priority", "priority"),
	)
	define("ClaimResponse",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "patient"),
		tok("status", "status"),
		tok("use", "use"),
		tok("outcome", "outcome"),
		date("created", "created"),
		date("payment-date", "payment.date"),
		ref("insurer", []string{"Organization"}, "insurer"),
		ref("requestor", []string{"Practitioner", "PractitionerRole", "Organization"}, "requestor"),
		ref("request", []string{"Claim"}, "request"),
	)
	define("CoverageEligibilityRequest",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "patient"),
		tok("status", "status"),
		date("created", "created"),
		ref("provider", []string{"Practitioner", "PractitionerRole", "Organization"}, "provider"),
		ref("enterer", []string{"Practitioner", "PractitionerRole"}, "enterer"),
		ref("facility", []string{"Location"}, "facility"),
		ref("insurer", []string{"Organization"}, "insurer"),
	)
	define("CoverageEligibilityResponse",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "patient"),
		tok("status", "status"),
		tok("outcome", "outcome"),
		date("created", "created"),
		ref("insurer", []string{"Organization"}, "insurer"),
		ref("request", []string{"CoverageEligibilityRequest"}, "request"),
		ref("requestor", []string{"Practitioner", "PractitionerRole", "Organization"}, "requestor"),
	)
	define("PaymentNotice",
		tok("identifier", "identifier"),
		tok("status", "status"),
		date("created", "created"),
		ref("request", anyT, "request"),
		ref("response", anyT, "response"),
		ref("provider", []string{"Practitioner", "PractitionerRole", "Organization"}, "provider"),
		tok("payment-status", "paymentStatus"),
	)
	define("PaymentReconciliation",
		tok("identifier", "identifier"),
		tok("status", "status"),
		tok("outcome", "outcome"),
		date("created", "created"),
		ref("request", []string{"Task"}, "request"),
		ref("requestor", []string{"Practitioner", "PractitionerRole", "Organization"}, "requestor"),
		ref("payment-issuer", []string{"Organization"}, "paymentIssuer"),
	)
	define("Communication",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "subject"),
		ref("subject", []string{"Patient", "Group"}, "subject"),
		ref("encounter", []string{"Encounter"}, "encounter"),
		tok("status", "status"),
		tok("category", "category"),
		date("sent", "sent"),
		date("received", "received"),
		ref("recipient", anyT, "recipient"),
		ref("sender", anyT, "sender"),
		ref("based-on", anyT, "basedOn"),
		ref("part-of", anyT, "partOf"),
		ref("about", anyT, "about"),
	)
	define("CommunicationRequest",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "subject"),
		ref("subject", []string{"Patient", "Group"}, "subject"),
		ref("encounter", []string{"Encounter"}, "encounter"),
		tok("status", "status"),
		tok("category", "category"),
		tok("priority", "priority"),
		date("authored", "authoredOn"),
		date("occurrence", "occurrenceDateTime", "occurrencePeriod"),
		ref("requester", anyT, "requester"),
		ref("recipient", anyT, "recipient"),
		ref("sender", anyT, "sender"),
		ref("based-on", anyT, "basedOn"),
		ref("about", anyT, "about"),
	)
	define("Task",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "for"),
		ref("subject", anyT, "for"),
		ref("focus", anyT, "focus"),
		ref("encounter", []string{"Encounter"}, "encounter"),
		ref("owner", anyT, "owner"),
		ref("requester", anyT, "requester"),
		ref("based-on", anyT, "basedOn"),
		ref("part-of", []string{"Task"}, "partOf"),
		tok("status", "status"),
		tok("business-status", "businessStatus"),
		tok("intent", "intent"),
		tok("priority", "priority"),
		tok("code", "code"),
		date("authored-on", "authoredOn"),
		date("modified", "lastModified"),
		date("period", "executionPeriod"),
	)
	define("Consent",
		blind(tok("identifier", "identifier")),
		ref("patient", patientT, "patient"),
		tok("status", "status"),
		clinical(tok("category", "category")),
		tok("scope", "scope"),
		tok("action", "provision.action"),
		date("date", "dateTime"),
		date("period", "provision.period"),
		ref("actor", anyT, "provision.actor.reference"),
		ref("organization", []string{"Organization"}, "organization"),
		ref("consentor", anyT, "performer"),
	)
	for typ, ps := range typeParams {
		for _, p := range ps {
			if p.Doc == "" {
				p.Doc = paramDoc(typ, p)
			}
		}
	}
}

// paramDoc describes how a parameter searches, for the CapabilityStatement.
func paramDoc(typ string, p *Param) string {
	if !p.PHI {
		switch p.Kind {
		case String:
			return "Plain index of the normalised text: starts-with by default, :exact and :contains supported; sortable is not offered."
		case Date:
			return "Date of record, stored plain as a UTC range; prefixes eq ne gt lt ge le sa eb ap."
		case Reference:
			return "Literal references (Type/id); :Type and :missing supported; chains are not."
		case Quantity, Number:
			return "Plain numeric index; prefixes eq ne gt lt ge le sa eb ap."
		default:
			return "Plain index of system|code; system|, |code and code forms; :not and :missing supported; :text, :in, :below, :above, :of-type are not."
		}
	}
	switch {
	case p.Code:
		return "PHI (clinical code): blind index (HMAC) of the exact code, system plain: exact match only, by system|code, code (any system), system| (any code of the system) and |code (no system); :not and :missing supported; :text, :in, :not-in, :below, :above and :of-type are refused (400); no sorting."
	case p.Kind == String && p.Whole:
		return "PHI: blind index (HMAC) of each whole normalised value (line, city, postal code, country): exact match only; no prefixes, no :contains, no sorting."
	case p.Kind == String:
		return "PHI: blind index (HMAC) only. Matches each typed word against the normalised name parts by prefix of 3 letters or more, or whole; :exact matches a whole normalised family or given value; no :contains, no sorting."
	default:
		return "PHI: blind index (HMAC) of the normalised value: exact match only (system|value honoured for the system, which is plain); no prefixes, no ranges, no :text, no sorting."
	}
}

// ParamsOf returns a resource type's search parameters sorted by name.
func ParamsOf(typ string) []*Param {
	m := typeParams[typ]
	out := make([]*Param, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ModelledTypes lists the resource types with search parameters beyond
// _id and _lastUpdated, sorted.
func ModelledTypes() []string {
	out := make([]string, 0, len(typeParams))
	for t := range typeParams {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
