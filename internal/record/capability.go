package record

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/fhir"
)

// r4Types lists every concrete R4 resource type; the store keeps any of
// them (a test checks the list against the R4 definitions).
var r4Types = []string{
	"Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse",
	"AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct", "BodyStructure", "Bundle", "CapabilityStatement",
	"CarePlan", "CareTeam", "CatalogEntry", "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse",
	"ClinicalImpression", "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition", "Composition",
	"ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
	"CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric", "DeviceRequest",
	"DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference", "EffectEvidenceSynthesis",
	"Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse", "EpisodeOfCare", "EventDefinition", "Evidence",
	"EvidenceVariable", "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
	"GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy", "Immunization",
	"ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide", "InsurancePlan", "Invoice", "Library",
	"Linkage", "List", "Location", "Measure", "MeasureReport", "Media", "Medication", "MedicationAdministration",
	"MedicationDispense", "MedicationKnowledge", "MedicationRequest", "MedicationStatement", "MedicinalProduct",
	"MedicinalProductAuthorization", "MedicinalProductContraindication", "MedicinalProductIndication",
	"MedicinalProductIngredient", "MedicinalProductInteraction", "MedicinalProductManufactured",
	"MedicinalProductPackaged", "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect",
	"MessageDefinition", "MessageHeader", "MolecularSequence", "NamingSystem", "NutritionOrder", "Observation",
	"ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization", "OrganizationAffiliation",
	"Parameters", "Patient", "PaymentNotice", "PaymentReconciliation", "Person", "PlanDefinition", "Practitioner",
	"PractitionerRole", "Procedure", "Provenance", "Questionnaire", "QuestionnaireResponse", "RelatedPerson",
	"RequestGroup", "ResearchDefinition", "ResearchElementDefinition", "ResearchStudy", "ResearchSubject",
	"RiskAssessment", "RiskEvidenceSynthesis", "Schedule", "SearchParameter", "ServiceRequest", "Slot", "Specimen",
	"SpecimenDefinition", "StructureDefinition", "StructureMap", "Subscription", "Substance",
	"SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
	"SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery", "SupplyRequest", "Task",
	"TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult", "VisionPrescription",
}

type capStatement struct {
	ResourceType   string        `json:"resourceType"`
	Status         string        `json:"status"`
	Date           string        `json:"date"`
	Publisher      string        `json:"publisher"`
	Kind           string        `json:"kind"`
	Software       capSoftware   `json:"software"`
	Implementation capImpl       `json:"implementation"`
	FHIRVersion    string        `json:"fhirVersion"`
	Format         []string      `json:"format"`
	Rest           []capRest     `json:"rest"`
	Description    string        `json:"description"`
	Extra          []interface{} `json:"-"`
}
type capSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}
type capImpl struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}
type capRest struct {
	Mode          string        `json:"mode"`
	Documentation string        `json:"documentation"`
	Security      *capSecurity  `json:"security,omitempty"`
	Resource      []capResource `json:"resource"`
	Interaction   []capCode     `json:"interaction"`
	SearchParam   []capParam    `json:"searchParam"`
}
type capSecurity struct {
	Service     []capConcept `json:"service,omitempty"`
	Description string       `json:"description,omitempty"`
}
type capConcept struct {
	Coding []capCoding `json:"coding"`
}
type capCoding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}
type capResource struct {
	Type              string     `json:"type"`
	Documentation     string     `json:"documentation,omitempty"`
	Interaction       []capCode  `json:"interaction"`
	Versioning        string     `json:"versioning"`
	ReadHistory       bool       `json:"readHistory"`
	UpdateCreate      bool       `json:"updateCreate"`
	ConditionalCreate bool       `json:"conditionalCreate"`
	ConditionalUpdate bool       `json:"conditionalUpdate"`
	ConditionalDelete string     `json:"conditionalDelete"`
	SearchInclude     []string   `json:"searchInclude,omitempty"`
	SearchRevInclude  []string   `json:"searchRevInclude,omitempty"`
	SearchParam       []capParam `json:"searchParam,omitempty"`
	Operation         []capOp    `json:"operation,omitempty"`
}
type capOp struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}
type capCode struct {
	Code string `json:"code"`
}
type capParam struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

var commonParams = []capParam{
	{Name: "_id", Type: "token", Documentation: "Logical id; exact match."},
	{Name: "_lastUpdated", Type: "date", Documentation: "meta.lastUpdated; prefixes eq ne gt lt ge le sa eb ap."},
}

// CapabilityOptions tailor the CapabilityStatement to a configured server.
type CapabilityOptions struct {
	// Grants, when not nil, lists per resource type the actions (read,
	// search, create, update, delete) the access policy grants to some
	// role. Types it leaves out are not listed, and each type lists only
	// the interactions its actions allow: the statement then promises
	// nothing every caller would be refused. Nil lists every R4 type with
	// every interaction (what the record itself implements).
	Grants map[string][]string
	// Security describes how callers authenticate (rest.security).
	Security string
	// Limits are the server's limits on one resource, stated in
	// rest.documentation; zero fields are the defaults.
	Limits Limits
}

// CapabilityStatement describes the record without an access policy: every
// R4 type with every interaction it implements.
func CapabilityStatement(version string, now time.Time) []byte {
	return CapabilityStatementFor(version, now, CapabilityOptions{})
}

// interactionsFor returns the interactions a type's granted actions allow.
func interactionsFor(actions []string) (out []capCode, can map[string]bool) {
	can = map[string]bool{}
	for _, a := range actions {
		can[a] = true
	}
	add := func(ok bool, codes ...string) {
		if ok {
			for _, c := range codes {
				out = append(out, capCode{c})
			}
		}
	}
	add(can["read"], "read", "vread")
	add(can["update"], "update")
	add(can["delete"], "delete")
	add(can["read"], "history-instance")
	add(can["search"], "history-type")
	add(can["create"], "create")
	add(can["search"], "search-type")
	return out, can
}

// CapabilityStatementFor describes what this server does, truthfully: the
// interactions and search parameters implemented (and, with a policy's
// grants, reachable by some role), which parameters are PHI (blind-indexed,
// exact or prefix match only, never sortable), and what is not offered.
func CapabilityStatementFor(version string, now time.Time, opts CapabilityOptions) []byte {
	rest := capRest{
		Mode: "server",
		Documentation: "JSON only (application/fhir+json); other formats get 415. " +
			"PHI search values (patient names, identifiers, birth date, telecom, address) are matched through blind indexes (HMAC of the normalised value): " +
			"exact match, and for names a match of each typed word against name-part prefixes of 3 letters or more; no :contains, no ranges and no sorting on PHI. " +
			"Clinical codes (diagnoses, procedures, observations, their reasons and values, kinds of encounter, care team, coverage and consent) are PHI too: blind indexes of the exact code with the system plain, matched by system|code, code, system| and |code, never by :text, :in, :not-in, :below or :above; each parameter's documentation says which it is. " +
			"Unknown search parameters are rejected with 400, never ignored. Paging links carry an opaque sealed token (_page), never the search values. " +
			"_sort: _id, _lastUpdated, and non-PHI date and string parameters. _total: none (default), estimate, accurate; totals and _summary=count count only the records the caller may read (the search is confined to them). _summary: count, false. " +
			"_count: 0 to " + strconv.Itoa(MaxCount) + "; _offset: 0 to " + strconv.Itoa(MaxOffset) + "; beyond is a 400. A parameter, _sort, _include or _revinclude over an element the caller's role may not see (the access policy's field rules) is refused with 400 not-supported, in searches and conditional criteria alike. " +
			"Not supported: chained and reverse-chained parameters, composite parameters, :text, :above, :below, :in, :not-in, :of-type, :identifier, _elements, PATCH, XML.",
		Interaction: []capCode{{"transaction"}, {"batch"}},
		SearchParam: commonParams,
	}
	rest.Documentation += " " + opts.Limits.describe()
	if opts.Security != "" {
		rest.Security = &capSecurity{
			Service: []capConcept{{Coding: []capCoding{{
				System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "OAuth", Display: "OAuth",
			}}}},
			Description: opts.Security,
		}
	}
	all := []string{"read", "search", "create", "update", "delete"}
	for _, t := range r4Types {
		actions := all
		if opts.Grants != nil {
			actions = opts.Grants[t]
		}
		interactions, can := interactionsFor(actions)
		if len(interactions) == 0 {
			continue
		}
		r := capResource{
			Type: t, Interaction: interactions, Versioning: "versioned", ReadHistory: can["read"],
			UpdateCreate:      can["update"] && can["create"],
			ConditionalCreate: can["create"] && can["search"],
			ConditionalUpdate: can["update"] && can["search"],
			ConditionalDelete: "not-supported",
		}
		if can["delete"] && can["search"] {
			r.ConditionalDelete = "single"
		}
		if t == "CodeSystem" {
			// Answered by internal/terminology: codes valid on a date of
			// service, billable versus header ICD-10-CM codes, check digits.
			r.Operation = []capOp{
				{Name: "validate-code", Definition: "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code"},
				{Name: "lookup", Definition: "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"},
			}
		}
		switch t {
		case "Claim":
			r.Documentation = "On create and update, diagnosis codes must be billable ICD-10-CM codes valid on the date of service (billablePeriod.start, else the earliest item date, else created); procedure and item codes of ICD-10-CM, CPT, HCPCS, SNOMED CT and LOINC must be valid (format and check digit; existence once a release is loaded). Other code systems are not checked. A failure is a 422 OperationOutcome naming the element."
		case "Consent":
			r.Documentation = "An active Consent of scope patient-privacy is enforced: its provision (type, and purposes TREAT, HPAYMT, HOPERAT, HRESCH of v3-ActReason; one level of nested provisions overrides the base per purpose) is recorded in the consent registry every access decision reads, in the same transaction; another status or a delete withdraws it. Without purposes a deny covers every purpose and a permit every purpose but research."
		case "Condition":
			r.Documentation = "On create and update, Condition.code codings of ICD-10-CM (header codes allowed), SNOMED CT and LOINC must be valid on the onset or recorded date. Other code systems are not checked. A failure is a 422 OperationOutcome naming the element."
		}
		if t == "AuditEvent" {
			var view []capCode
			if can["read"] {
				view = append(view, capCode{"read"})
			}
			if can["search"] {
				view = append(view, capCode{"search-type"})
			}
			if len(view) == 0 {
				continue
			}
			r = capResource{Type: t, Interaction: view, Versioning: "no-version", ConditionalDelete: "not-supported",
				Documentation: "A read-only view of careflow's audit log (ids and codes only); the id is the entry's sequence number, newest first; next links carry the _after cursor.",
				SearchParam: []capParam{
					{Name: "date", Type: "date", Documentation: "Prefixes ge, gt (from) and le, lt (until)."},
					{Name: "patient", Type: "reference", Documentation: "Patient id."},
					{Name: "agent", Type: "token", Documentation: "Principal (user or client) id."},
					{Name: "entity-type", Type: "token", Documentation: "Resource type."},
					{Name: "outcome", Type: "token", Documentation: "0 success, 4 denied, 8 error."},
				}}
			rest.Resource = append(rest.Resource, r)
			continue
		}
		ps := ParamsOf(t)
		if len(ps) == 0 {
			r.Documentation = "Stored and returned as sent; searchable by _id and _lastUpdated only."
		}
		for _, p := range ps {
			cp := capParam{Name: p.Name, Type: string(p.Kind), Documentation: p.Doc}
			if spec := p.Spec; spec != "" && spec != p.Kind {
				// The spec's type, and how this server matches it.
				cp.Type = string(spec)
				cp.Documentation = strings.TrimSpace(cp.Documentation + " Matched as one exact value through a blind index: no prefixes, no ranges, no partial dates.")
			}
			r.SearchParam = append(r.SearchParam, cp)
			if p.Kind == Reference {
				r.SearchInclude = append(r.SearchInclude, t+":"+p.Name)
			}
		}
		for _, other := range ModelledTypes() {
			for _, p := range ParamsOf(other) {
				if p.Kind == Reference && (len(p.Targets) == 0 || contains(p.Targets, t)) && len(ps) > 0 {
					r.SearchRevInclude = append(r.SearchRevInclude, other+":"+p.Name)
				}
			}
		}
		rest.Resource = append(rest.Resource, r)
	}
	cs := capStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           fhir.FormatInstant(now),
		Publisher:      "careflow",
		Kind:           "instance",
		Software:       capSoftware{Name: "careflow", Version: version},
		Implementation: capImpl{Description: "careflow FHIR R4 record"},
		FHIRVersion:    "4.0.1",
		Format:         []string{"application/fhir+json", "json"},
		Rest:           []capRest{rest},
		Description:    "careflow stores every resource encrypted; search indexes on PHI hold blind indexes only.",
	}
	b, _ := json.Marshal(cs)
	return b
}
