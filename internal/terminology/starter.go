package terminology

// starterVersion names the built-in sets in answers, so that nobody mistakes
// a starter-set answer for one from a loaded CMS release.
const starterVersion = "careflow-starter"

// starterCode is one entry of a built-in set.
type starterCode struct {
	code     string // storage form (undotted for ICD-10-CM)
	billable bool
	display  string
}

// icd10cmStarter is a small set of common ICD-10-CM codes across chapters,
// headers and billable codes both, with their official long descriptions
// (ICD-10-CM is a US-government work in the public domain). It exists so that
// a fresh installation and the tests can validate everyday diagnoses before
// anyone loads a CMS release; once any release is loaded it is never used.
// It deliberately has no validity window: it is a convenience, not a
// release, and answers from it say so. The codes are current as of the
// FY2026 release.
var icd10cmStarter = []starterCode{
	{"A09", true, "Infectious gastroenteritis and colitis, unspecified"},
	{"A41", false, "Other sepsis"},
	{"A419", true, "Sepsis, unspecified organism"},
	{"B18", false, "Chronic viral hepatitis"},
	{"B182", true, "Chronic viral hepatitis C"},
	{"B20", true, "Human immunodeficiency virus [HIV] disease"},
	{"B349", true, "Viral infection, unspecified"},
	{"B659", true, "Schistosomiasis, unspecified"},
	{"C3490", true, "Malignant neoplasm of unspecified part of unspecified bronchus or lung"},
	{"C50911", true, "Malignant neoplasm of unspecified site of right female breast"},
	{"D649", true, "Anemia, unspecified"},
	{"E039", true, "Hypothyroidism, unspecified"},
	{"E11", false, "Type 2 diabetes mellitus"},
	{"E116", false, "Type 2 diabetes mellitus with other specified complications"},
	{"E1165", true, "Type 2 diabetes mellitus with hyperglycemia"},
	{"E119", true, "Type 2 diabetes mellitus without complications"},
	{"E669", true, "Obesity, unspecified"},
	{"E785", true, "Hyperlipidemia, unspecified"},
	{"F32A", true, "Depression, unspecified"},
	{"F411", true, "Generalized anxiety disorder"},
	{"G4700", true, "Insomnia, unspecified"},
	{"H109", true, "Unspecified conjunctivitis"},
	{"I10", true, "Essential (primary) hypertension"},
	{"I219", true, "Acute myocardial infarction, unspecified"},
	{"I2510", true, "Atherosclerotic heart disease of native coronary artery without angina pectoris"},
	{"I4891", true, "Unspecified atrial fibrillation"},
	{"I509", true, "Heart failure, unspecified"},
	{"I639", true, "Cerebral infarction, unspecified"},
	{"J00", true, "Acute nasopharyngitis [common cold]"},
	{"J029", true, "Acute pharyngitis, unspecified"},
	{"J069", true, "Acute upper respiratory infection, unspecified"},
	{"J18", false, "Pneumonia, unspecified organism"},
	{"J189", true, "Pneumonia, unspecified organism"},
	{"J449", true, "Chronic obstructive pulmonary disease, unspecified"},
	{"J45", false, "Asthma"},
	{"J45909", true, "Unspecified asthma, uncomplicated"},
	{"K219", true, "Gastro-esophageal reflux disease without esophagitis"},
	{"K3580", true, "Unspecified acute appendicitis"},
	{"K7460", true, "Unspecified cirrhosis of liver"},
	{"L0390", true, "Cellulitis, unspecified"},
	{"M1711", true, "Unilateral primary osteoarthritis, right knee"},
	{"M545", false, "Low back pain"},
	{"M5450", true, "Low back pain, unspecified"},
	{"N186", true, "End stage renal disease"},
	{"N390", true, "Urinary tract infection, site not specified"},
	{"O80", true, "Encounter for full-term uncomplicated delivery"},
	{"R05", false, "Cough"},
	{"R059", true, "Cough, unspecified"},
	{"R109", true, "Unspecified abdominal pain"},
	{"R509", true, "Fever, unspecified"},
	{"R519", true, "Headache, unspecified"},
	{"S72001A", true, "Fracture of unspecified part of neck of right femur, initial encounter for closed fracture"},
	{"U071", true, "COVID-19"},
	{"W19XXXA", true, "Unspecified fall, initial encounter"},
	{"Z0000", true, "Encounter for general adult medical examination without abnormal findings"},
	{"Z23", true, "Encounter for immunization"},
	{"Z794", true, "Long term (current) use of insulin"},
}

// hcpcsStarter is a handful of common HCPCS Level II codes (CMS, public
// domain) whose displays careflow knows until a HCPCS code list is loaded.
// Unlike the ICD-10-CM set it does not limit which codes validate: other
// well-formed HCPCS codes pass on format, as CPT codes do.
var hcpcsStarter = []starterCode{
	{"A0428", true, "Ambulance service, basic life support, non-emergency transport, (BLS)"},
	{"A0429", true, "Ambulance service, basic life support, emergency transport (BLS-emergency)"},
	{"A4253", true, "Blood glucose test or reagent strips for home blood glucose monitor, per 50 strips"},
	{"E0114", true, "Crutches underarm, other than wood, adjustable or fixed, pair, with pad, tips and handgrips"},
	{"G0008", true, "Administration of influenza virus vaccine"},
	{"G0439", true, "Annual wellness visit, includes a personalized prevention plan of service (PPS), subsequent visit"},
	{"J0696", true, "Injection, ceftriaxone sodium, per 250 mg"},
	{"J1100", true, "Injection, dexamethasone sodium phosphate, 1 mg"},
	{"J1885", true, "Injection, ketorolac tromethamine, per 15 mg"},
	{"J3490", true, "Unclassified drugs"},
}

// starterSets maps a system to its built-in set.
var starterSets = map[string][]starterCode{
	SystemICD10CM: icd10cmStarter,
	SystemHCPCS:   hcpcsStarter,
}

// starterLookup finds a code in a system's built-in set.
func starterLookup(system, code string) (starterCode, bool) {
	for _, c := range starterSets[system] {
		if c.code == code {
			return c, true
		}
	}
	return starterCode{}, false
}
