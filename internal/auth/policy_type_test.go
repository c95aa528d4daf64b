package auth_test

import (
	"context"
	"testing"

	"github.com/careflow/careflow/internal/auth"
)

// DecideType answers from the role, the purpose and the token alone: its
// relationship and consent sources fail on every look-up, so an answer
// that consulted them would be a denial, and the patient named (which it
// ignores) cannot change it.
func TestDecideTypeNeverLooksAtThePatient(t *testing.T) {
	t.Parallel()
	rel := &memRelations{fail: map[string]bool{"own": true, "other": true}}
	cons := &memConsents{fail: map[string]bool{"own": true, "other": true}}
	az := auth.NewAuthorizer(auth.DefaultPolicy(), rel, cons, nil)
	for _, c := range []struct {
		name    string
		p       *auth.Principal
		action  auth.Action
		typ     string
		purpose auth.Purpose
		allowed bool
		reason  auth.Reason
	}{
		{"a physician reads observations of some patients", user(auth.Physician), auth.ActionRead, "Observation", "", true, auth.ReasonAllowed},
		{"a physician updates observations of some patients", user(auth.Physician), auth.ActionUpdate, "Observation", "", true, auth.ReasonAllowed},
		{"a physician deletes no observation", user(auth.Physician), auth.ActionDelete, "Observation", "", false, auth.ReasonNoRule},
		{"billing reads no observation", user(auth.Billing), auth.ActionRead, "Observation", "", false, auth.ReasonNoRule},
		{"billing reads coverage for payment", user(auth.Billing), auth.ActionRead, "Coverage", "", true, auth.ReasonAllowed},
		{"billing reads no coverage for treatment", user(auth.Billing), auth.ActionRead, "Coverage", auth.PurposeTreatment, false, auth.ReasonPurposeNotAllowed},
		{"a token scoped to observations reads no patient", user(auth.Physician, "user/Observation.rs"), auth.ActionRead, "Patient", "", false, auth.ReasonScope},
		{"clinical_admin deletes care teams", user(auth.ClinicalAdmin), auth.ActionDelete, "CareTeam", "", true, auth.ReasonAllowed},
		{"the auditor reads no patient", user(auth.Auditor), auth.ActionRead, "Patient", "", false, auth.ReasonNoRule},
		{"an unknown type", user(auth.Physician), auth.ActionRead, "Spaceship", "", false, auth.ReasonUnknownResource},
		{"nobody", &auth.Principal{}, auth.ActionRead, "Patient", "", false, auth.ReasonUnauthenticated},
	} {
		for _, patient := range []string{"", "own", "other"} {
			d := az.DecideType(context.Background(), c.p, auth.Request{Action: c.action, ResourceType: c.typ, PatientID: patient, Purpose: c.purpose})
			if d.Allowed != c.allowed || d.Reason != c.reason {
				t.Errorf("%s (patient %q): %+v", c.name, patient, d)
			}
			if d.Allowed && !d.RecheckRecords {
				t.Errorf("%s: an allowed type decision must ask for the record's own", c.name)
			}
		}
	}
	if rel.calls != 0 || cons.calls != 0 {
		t.Fatalf("DecideType looked up %d relationships and %d consents", rel.calls, cons.calls)
	}
}
