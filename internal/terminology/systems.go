package terminology

// Canonical URIs of the code systems careflow knows. The first five are the
// ones HL7's terminology registry assigns; clients must send exactly these.
const (
	SystemICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
	SystemCPT     = "http://www.ama-assn.org/go/cpt"
	SystemHCPCS   = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
	SystemSNOMED  = "http://snomed.info/sct"
	SystemLOINC   = "http://loinc.org"

	// SystemEgyptNationalID is the Identifier.system careflow uses for the
	// Egyptian national ID (الرقم القومي). HL7 assigns no URI for it and the
	// Egyptian Civil Status Organization publishes none, so careflow names it
	// under the project's own address, as FHIR asks of identifiers without an
	// official system. It is an identifier namespace, not a code system: the
	// values are PHI. Change it only together with the NamingSystem careflow
	// publishes, because stored Patient.identifier values carry it.
	SystemEgyptNationalID = "https://github.com/careflow/careflow/sid/eg-national-id"
)

// systemInfo describes one known system.
type systemInfo struct {
	uri  string
	name string // FHIR $lookup "name": the code system's human name
	// loadable systems accept a code list through LoadCodeList.
	loadable bool
	// phi systems hold personal identifiers: answers never echo the value.
	phi bool
	// checkFormat reports why code is malformed for this system, or nil.
	// It must not echo the code when the system holds PHI.
	checkFormat func(code string) *problem
}

// knownSystems is read-only after package initialisation.
var knownSystems = map[string]systemInfo{
	SystemICD10CM:         {uri: SystemICD10CM, name: "ICD-10-CM", checkFormat: icd10cmFormat},
	SystemCPT:             {uri: SystemCPT, name: "CPT", loadable: true, checkFormat: cptFormat},
	SystemHCPCS:           {uri: SystemHCPCS, name: "HCPCS Level II", loadable: true, checkFormat: hcpcsFormat},
	SystemSNOMED:          {uri: SystemSNOMED, name: "SNOMED CT", loadable: true, checkFormat: snomedFormat},
	SystemLOINC:           {uri: SystemLOINC, name: "LOINC", loadable: true, checkFormat: loincFormat},
	SystemEgyptNationalID: {uri: SystemEgyptNationalID, name: "Egyptian national ID", phi: true},
}

// SystemName returns the human name of a known system and whether it is known.
func SystemName(uri string) (string, bool) {
	s, ok := knownSystems[uri]
	return s.name, ok
}
