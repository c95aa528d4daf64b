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
	// URI values are indexed like a token without system and matched
	// exactly.
	URI Kind = "uri"
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
	// Spec is R4's type of the parameter when it is indexed as another
	// kind (a birth date is a PHI date, matched as one exact token).
	Spec Kind
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

func init() { buildParams() }

// paramDoc describes how a parameter searches, for the CapabilityStatement.
func paramDoc(typ string, p *Param) string {
	if !p.PHI {
		switch p.Kind {
		case String:
			return "Plain index of the normalised text: starts-with by default, :exact and :contains supported; sortable is not offered."
		case Date:
			return "Date of record, stored plain as a UTC range; prefixes eq ne gt lt ge le sa eb ap."
		case Reference:
			return "Literal references (Type/id) and canonicals; :Type and :missing supported; one-link chains (ref.param, ref:Type.param) and _has run as searches of the other type by the caller, refused when they match more than 500 of it."
		case Quantity, Number:
			return "Plain numeric index; prefixes eq ne gt lt ge le sa eb ap."
		case URI:
			return "Plain index of the whole URI: exact match only; :not and :missing supported; :below and :above are not."
		default:
			return "Plain index of system|code; system|, |code and code forms; :not and :missing supported; :text, :in, :below, :above, :of-type are not."
		}
	}
	switch {
	case p.Code:
		return "PHI (clinical code): blind index (HMAC) of the exact code, system plain: exact match only, by system|code, code (any system), system| (any code of the system) and |code (no system); :not and :missing supported; :text, :in, :not-in, :below, :above and :of-type are refused (400); no sorting."
	case p.Kind == String && p.Whole:
		return "PHI: blind index (HMAC) of each whole normalised value (an address: each line, city, postal code, country): exact match only; no prefixes, no :contains, no sorting."
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
