package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestClinicalAuthorizationMatrix drives testdata/authz_matrix_clinical.csv
// through the real server: the status, the reason of a refusal, a workflow
// out of reach answered as a missing one, and the audit entries each
// request left. Every clinical route has a row.
func TestClinicalAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	rows := readRecordMatrix(t, "authz_matrix_clinical.csv", "{workflow}", "{encounter}", "{create:{patient}}", "{encounter:{patient}}")
	covered := map[string]bool{}
	generic := strings.NewReplacer("{workflow}", "{workflow_id}", "{step_rn}", "{step_id}", "{step_md}", "{step_id}", "{encounter}", "{encounter_id}")
	for _, r := range rows {
		covered[r.method+" "+generic.Replace(r.path)] = true
	}
	for _, p := range New(Options{}).Patterns() {
		if strings.Contains(p, " /api/v1/clinical-workflows/") && !covered[p] {
			t.Errorf("route %s has no row in the clinical matrix", p)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		setup := f.principal(t, "matrix-setup", auth.ClinicalAdmin, "")
		for i, row := range rows {
			t.Run(fmt.Sprintf("line%03d_%s_%s", row.line, row.role, row.method), func(t *testing.T) {
				who := ""
				if row.role != "anonymous" {
					who = f.principal(t, fmt.Sprintf("crow%03d-%s", i, row.role), auth.Role(row.role), row.scopes)
				}
				patient := map[string]string{"own": ownPatient, "other": otherPatient, "assigned": "pat-assigned",
					"glass": "pat-glass", "expired": "pat-expired"}[row.patient]
				f.relate(t, who, row.role, row.patient, patient)
				path, body := row.path, row.body
				body = strings.ReplaceAll(body, "{create:{patient}}", mustString(t, map[string]any{"type": "discharge",
					"patient": "Patient/" + patient, "provider": "Practitioner/" + clinicalDoctor}))
				body = strings.ReplaceAll(body, "{encounter:{patient}}", encounterOf(patient))
				path = strings.ReplaceAll(path, "{encounter}", "enc-"+patient)
				if strings.Contains(path, "{workflow}") {
					// Made before the row's consent is set: set-up is not
					// the row's access.
					f.setConsent(t, patient, "none")
					w := must[workflowJSON](t, f.call(t, setup, "POST", clinicalWorkflow, map[string]any{"type": "discharge",
						"patient": "Patient/" + patient, "provider": "Practitioner/" + clinicalDoctor}), http.StatusCreated)
					rn, _ := w.step(t, "discharge_readiness")
					md, _ := w.step(t, "discharge_summary")
					path = strings.NewReplacer("{workflow}", w.ID, "{step_rn}", rn, "{step_md}", md).Replace(path)
				}
				if patient != "" {
					f.setConsent(t, patient, row.consent)
				}
				resp := f.do(t, who, row.method, path, body)
				if resp.status != row.expect {
					t.Fatalf("%s\nstatus %d, want %d: %s", row, resp.status, row.expect, resp.body)
				}
				var p Problem
				if row.expect >= 400 && row.expect != http.StatusUnauthorized {
					if err := json.Unmarshal(resp.body, &p); err != nil {
						t.Fatalf("%s\nnot a problem: %s", row, resp.body)
					}
				}
				switch {
				case row.expect == http.StatusForbidden && row.reason == "step_role":
					if !strings.HasPrefix(p.Detail, "this step is done by a ") {
						t.Fatalf("%s\nrefusal %s is not the step's role rule", row, resp.body)
					}
				case row.expect == http.StatusForbidden:
					if !strings.Contains(p.Detail, "("+row.reason+")") {
						t.Fatalf("%s\nproblem %s does not name the reason %s", row, resp.body, row.reason)
					}
				case row.expect == http.StatusNotFound:
					want := "no such workflow"
					if strings.Contains(row.path, "/encounters/") {
						want = "no such encounter"
					}
					if p.Detail != want {
						t.Fatalf("%s\nout of reach must look missing (%q): %s", row, want, resp.body)
					}
				case row.expect == http.StatusUnprocessableEntity:
					if p.Field != "patient" || p.Detail != "no such Patient" {
						t.Fatalf("%s\na patient out of reach must look missing: %s", row, resp.body)
					}
				}
				entries := f.auditOf(t, resp.requestID)
				if row.expect == http.StatusUnauthorized || strings.HasSuffix(row.path, "/health") {
					if len(entries) != 0 {
						t.Fatalf("%s\nwrote %d audit entries, want none", row, len(entries))
					}
					return
				}
				if len(entries) == 0 {
					t.Fatalf("%s\nno audit entry for request %s", row, resp.requestID)
				}
				denied := row.expect == http.StatusForbidden || row.expect == http.StatusNotFound || row.expect == http.StatusUnprocessableEntity
				typ := clinical.ResourceType
				if strings.Contains(row.path, "/encounters") {
					typ = "Encounter"
				}
				found := false
				for _, e := range entries {
					if e.Actor != who || e.Role != row.role {
						t.Fatalf("%s\naudit entry %+v is not the caller's", row, e)
					}
					if e.ResourceType == typ && (e.Outcome == audit.OutcomeDenied) == denied {
						found = true
					}
				}
				if !found {
					t.Fatalf("%s\nno %v %s entry among %+v", row, map[bool]string{true: "denied", false: "allowed"}[denied], typ, entries)
				}
			})
		}
		f.checkRollup(t)
	})
}

func mustString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
