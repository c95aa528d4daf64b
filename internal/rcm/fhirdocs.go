package rcm

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/terminology"
)

// The systems the journeys' FHIR resources use.
const (
	// SystemParticipant names an HCX participant by its code (a payer, the
	// provider) in Reference.identifier.
	SystemParticipant = "https://hcxprotocol.io/codes/participant-code"
	// SystemNationalID is the Patient.identifier system of the Egyptian
	// national ID: terminology's, the one careflow publishes.
	SystemNationalID = terminology.SystemEgyptNationalID

	systemActCode      = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	systemClaimType    = "http://terminology.hl7.org/CodeSystem/claim-type"
	systemPriority     = "http://terminology.hl7.org/CodeSystem/processpriority"
	systemRelationship = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
	systemRelatedClaim = "http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship"
	systemCoverageCls  = "http://terminology.hl7.org/CodeSystem/coverage-class"
)

type obj = map[string]any

func ref(typ, id string) obj { return obj{"reference": typ + "/" + id} }

func participant(code, name string) obj {
	o := obj{"identifier": obj{"system": SystemParticipant, "value": code}}
	if name != "" {
		o["display"] = name
	}
	return o
}

func coding(system, code string) obj {
	return obj{"coding": []any{obj{"system": system, "code": code}}}
}

// patientResource is the Patient as registration writes it: demographics
// only (billing's policy lets it write no more).
func patientResource(p PatientInput) obj {
	r := obj{"resourceType": "Patient", "active": true}
	var ids []any
	if p.NationalID != "" {
		ids = append(ids, obj{"system": SystemNationalID, "value": p.NationalID})
	}
	for _, id := range p.Identifiers {
		ids = append(ids, obj{"system": id.System, "value": id.Value})
	}
	if len(ids) > 0 {
		r["identifier"] = ids
	}
	name := obj{"family": p.Family}
	if len(p.Given) > 0 {
		name["given"] = p.Given
	}
	r["name"] = []any{name}
	if p.BirthDate != "" {
		r["birthDate"] = p.BirthDate
	}
	if p.Gender != "" {
		r["gender"] = p.Gender
	}
	if p.Phone != "" {
		r["telecom"] = []any{obj{"system": "phone", "value": p.Phone}}
	}
	return r
}

func coverageResource(patient string, in InsuranceInput, payerName string) obj {
	rel := in.Relationship
	if rel == "" {
		rel = "self"
	}
	r := obj{"resourceType": "Coverage", "status": "active", "subscriberId": in.MemberID,
		"beneficiary": ref("Patient", patient), "relationship": coding(systemRelationship, rel),
		"payor": []any{participant(in.Payer, payerName)}}
	if rel == "self" {
		r["subscriber"] = ref("Patient", patient)
	}
	if in.PolicyNumber != "" {
		r["class"] = []any{obj{"type": coding(systemCoverageCls, "plan"), "value": in.PolicyNumber}}
	}
	return r
}

func eligibilityRequest(patient, coverage string, in InsuranceInput, prov Provider, service, now time.Time) obj {
	return obj{"resourceType": "CoverageEligibilityRequest", "status": "active", "purpose": []any{"validation", "benefits"},
		"patient": ref("Patient", patient), "created": now.Format(time.RFC3339), "servicedDate": service.Format("2006-01-02"),
		"provider": participant(prov.Code, prov.Name), "insurer": participant(in.Payer, ""),
		"insurance": []any{obj{"focal": true, "coverage": ref("Coverage", coverage)}}}
}

// encounterClass is the v3 ActCode class of a journey's encounter.
func encounterClass(kind, class string) string {
	if class != "" {
		return class
	}
	switch kind {
	case KindEmergency:
		return "EMER"
	case KindScheduled:
		return "SS"
	}
	return "AMB"
}

func encounterResource(patient, kind string, in EncounterInput) obj {
	period := obj{"start": in.Start}
	if in.End != "" {
		period["end"] = in.End
	}
	status := "finished"
	if kind == KindScheduled {
		status = "planned"
	}
	return obj{"resourceType": "Encounter", "status": status,
		"class":   obj{"system": systemActCode, "code": encounterClass(kind, in.Class)},
		"subject": ref("Patient", patient), "period": period}
}

// claimLine is one priced item of a claim.
type claimLine struct {
	System, Code string
	Quantity     int
	Unit         int64
}

type claimSpec struct {
	Use                    string // claim | preauthorization
	Kind                   string
	Patient, Coverage, Enc string
	Payer, Currency        string
	Provider               Provider
	Diagnoses              []string // dotted ICD-10-CM
	Lines                  []claimLine
	PreAuthRef, Related    string
	Service, Created       time.Time
}

// claimResource is a Claim (or a pre-authorization) strictly as R4 wants
// it: provider, priority and insurance present, items with unit price,
// quantity and net, and the total.
func claimResource(c claimSpec) (obj, int64) {
	claimType := "professional"
	if c.Kind == KindScheduled {
		claimType = "institutional"
	}
	priority := "normal"
	if c.Kind == KindEmergency {
		priority = "stat"
	}
	ins := obj{"sequence": 1, "focal": true, "coverage": ref("Coverage", c.Coverage)}
	if c.PreAuthRef != "" {
		ins["preAuthRef"] = []any{c.PreAuthRef}
	}
	var diags, items []any
	var seqs []any
	for i, d := range c.Diagnoses {
		diags = append(diags, obj{"sequence": i + 1,
			"diagnosisCodeableConcept": coding(terminology.SystemICD10CM, d)})
		seqs = append(seqs, i+1)
	}
	var total int64
	for i, l := range c.Lines {
		net := l.Unit * int64(l.Quantity)
		total += net
		item := obj{"sequence": i + 1, "productOrService": coding(l.System, l.Code),
			"servicedDate": c.Service.Format("2006-01-02"), "quantity": obj{"value": l.Quantity},
			"unitPrice": obj{"value": minorJSON(l.Unit, c.Currency), "currency": c.Currency},
			"net":       obj{"value": minorJSON(net, c.Currency), "currency": c.Currency}}
		if len(seqs) > 0 {
			item["diagnosisSequence"] = seqs
		}
		if c.Enc != "" {
			item["encounter"] = []any{ref("Encounter", c.Enc)}
		}
		items = append(items, item)
	}
	r := obj{"resourceType": "Claim", "status": "active", "use": c.Use,
		"type": coding(systemClaimType, claimType), "patient": ref("Patient", c.Patient),
		"created": c.Created.Format(time.RFC3339), "provider": participant(c.Provider.Code, c.Provider.Name),
		"insurer": participant(c.Payer, ""), "priority": coding(systemPriority, priority),
		"insurance": []any{ins}, "total": obj{"value": minorJSON(total, c.Currency), "currency": c.Currency}}
	if len(diags) > 0 {
		r["diagnosis"] = diags
	}
	if len(items) > 0 {
		r["item"] = items
	}
	if c.Related != "" {
		r["related"] = []any{obj{"claim": ref("Claim", c.Related), "relationship": coding(systemRelatedClaim, "prior")}}
	}
	return r, total
}

// bundle is the collection Bundle careflow sends: the focal resource first,
// then what it references.
func bundle(resources ...json.RawMessage) ([]byte, error) {
	var entries []any
	for _, r := range resources {
		if len(r) > 0 {
			entries = append(entries, obj{"resource": r})
		}
	}
	return json.Marshal(obj{"resourceType": "Bundle", "type": "collection", "entry": entries})
}

// withID sets the id the record gave a resource, for the Bundle.
func withID(r obj, id string) json.RawMessage {
	r["id"] = id
	b, _ := json.Marshal(r)
	return b
}

// idOf is the id of a "Type/id" reference (the last segment).
func idOf(reference string) string {
	if i := strings.LastIndexByte(reference, '/'); i >= 0 {
		return reference[i+1:]
	}
	return reference
}
