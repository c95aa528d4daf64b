package clinical

import (
	"strings"
	"time"
)

// templateStep is one step of a built-in template: its code, its title in
// work lists (never PHI: titles are the template's, not the user's), the
// role that performs it, and how long after the workflow starts it is due
// for routine work (urgent halves it, emergency quarters it).
type templateStep struct {
	Code  string
	Title string
	Role  string
	Due   time.Duration
}

// templates are the steps each workflow type starts with. A step a
// physician must decide (orders, sign-off) is a physician's; the care a
// nurse gives and records (triage, vital signs, teaching) is a nurse's.
var templates = map[WorkflowType][]templateStep{
	TypeAdmission: {
		{"triage", "Triage", "nurse", 30 * time.Minute},
		{"admission_assessment", "Admission assessment", "physician", 2 * time.Hour},
		{"admission_orders", "Admission orders", "physician", 3 * time.Hour},
		{"nursing_admission", "Nursing admission and care plan", "nurse", 4 * time.Hour},
		{"admission_signoff", "Admission sign-off", "physician", 24 * time.Hour},
	},
	TypeConsultation: {
		{"vital_signs", "Vital signs", "nurse", 30 * time.Minute},
		{"consultation", "Consultation", "physician", 2 * time.Hour},
		{"plan_and_orders", "Plan and orders", "physician", 3 * time.Hour},
		{"patient_education", "Patient education", "nurse", 4 * time.Hour},
	},
	TypeProcedure: {
		{"pre_procedure_checklist", "Pre-procedure checklist", "nurse", 2 * time.Hour},
		{"procedure_consent", "Confirm procedure consent", "physician", 3 * time.Hour},
		{"procedure", "Procedure", "physician", 8 * time.Hour},
		{"post_procedure_observation", "Post-procedure observation", "nurse", 12 * time.Hour},
		{"procedure_signoff", "Procedure sign-off", "physician", 24 * time.Hour},
	},
	TypeDischarge: {
		{"discharge_readiness", "Discharge readiness check", "nurse", 2 * time.Hour},
		{"discharge_summary", "Discharge summary", "physician", 4 * time.Hour},
		{"discharge_signoff", "Discharge sign-off", "physician", 6 * time.Hour},
		{"discharge_teaching", "Discharge teaching", "nurse", 8 * time.Hour},
	},
	TypeMedRec: {
		{"medication_history", "Medication history", "nurse", 2 * time.Hour},
		{"reconciliation_review", "Reconciliation review", "physician", 4 * time.Hour},
		{"patient_counselling", "Patient counselling", "nurse", 8 * time.Hour},
	},
}

// titles maps every template step's code to its title, for steps added
// later with a template's code.
var titles = func() map[string]string {
	m := map[string]string{}
	for _, steps := range templates {
		for _, s := range steps {
			m[s.Code] = s.Title
		}
	}
	return m
}()

// titleOf is a step's title: the template's for a template code, else the
// code made readable ("wound_check" -> "Wound check").
func titleOf(code string) string {
	if t, ok := titles[code]; ok {
		return t
	}
	t := strings.ReplaceAll(code, "_", " ")
	return strings.ToUpper(t[:1]) + t[1:]
}

// dueIn scales a routine due time to the priority.
func dueIn(d time.Duration, p Priority) time.Duration {
	return time.Duration(float64(d) * p.dueFactor()).Round(time.Minute)
}

// defaultStepDue is when an added step with no due time is due.
const defaultStepDue = time.Hour
