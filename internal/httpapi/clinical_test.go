package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// clinicalFixture is the authorization fixture (care team A holds
// ownPatient and every user it makes; team B holds otherPatient) serving
// the clinical workflows on a real engine, the FHIR record at /fhir/R4,
// and a practitioner (clinicalDoctor) and an encounter of each patient.
type clinicalFixture struct {
	*wfFixture
	svc *clinical.Service
	cfg clinical.Config
}

const (
	clinicalDoctor   = "dr-1"
	ownEncounter     = "enc-" + ownPatient
	otherEncounter   = "enc-" + otherPatient
	clinicalWorkflow = "/api/v1/clinical-workflows/workflows"
)

func newClinicalFixture(t *testing.T, db *store.DB) *clinicalFixture {
	t.Helper()
	f := newAuthzFixture(t, db, nil)
	clock := &offsetClock{}
	eng, deps := newTestEngineWith(t, db, clock.Now)
	cfg := clinical.Config{DB: db, Engine: eng,
		Records: careaccess.RunRecords{Record: deps.rec, Access: &careaccess.Services{Authorizer: f.access.Authorizer, Policy: f.access.Policy, Audit: f.log}},
		Record:  deps.rec, Ring: deps.ring, ExportKey: bytes.Repeat([]byte{0x42}, 32), Now: clock.Now}
	svc, err := clinical.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Every patient the matrices name, each with an encounter
	// ("enc-<patient>"), and one practitioner.
	seed := []struct{ typ, id, body string }{
		{"Practitioner", clinicalDoctor, `{"resourceType":"Practitioner","name":[{"family":"Doctor"}]}`},
	}
	for _, p := range []string{ownPatient, otherPatient, "pat-assigned", "pat-glass", "pat-expired"} {
		seed = append(seed, struct{ typ, id, body string }{"Patient", p, `{"resourceType":"Patient","name":[{"family":"Test"}]}`},
			struct{ typ, id, body string }{"Encounter", "enc-" + p, encounterOf(p)})
	}
	for _, r := range seed {
		body := strings.Replace(r.body, `{"resourceType":"`+r.typ+`"`, `{"resourceType":"`+r.typ+`","id":"`+r.id+`"`, 1)
		if _, _, err := deps.rec.Update(ctx, nil, r.typ, r.id, []byte(body), ""); err != nil {
			t.Fatalf("seed %s/%s: %v", r.typ, r.id, err)
		}
	}
	f.srv = New(Options{DB: db, Access: f.access, Audit: f.log, Engine: eng, Record: deps.rec, Clinical: svc,
		TestPrincipal: func(r *http.Request) *auth.Principal {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.principals[r.Header.Get(testPrincipalHeader)]
		}})
	f.ts = httptest.NewServer(f.srv.Handler())
	t.Cleanup(f.ts.Close)
	return &clinicalFixture{wfFixture: &wfFixture{authzFixture: f, eng: eng, deps: deps, clock: clock}, svc: svc, cfg: cfg}
}

// restartedService is the module as a restarted server builds it on the
// same database.
func (f *clinicalFixture) restartedService(t *testing.T) *clinical.Service {
	t.Helper()
	svc, err := clinical.New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// checkRollup holds the analytics rollup to the workflows stored.
func (f *clinicalFixture) checkRollup(t *testing.T) {
	t.Helper()
	if err := f.svc.CheckRollup(context.Background()); err != nil {
		t.Error(err)
	}
}

// encounterOf is an inpatient Encounter of patient, in progress.
func encounterOf(patient string) string {
	return `{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},` +
		`"subject":{"reference":"Patient/` + patient + `"},"period":{"start":"2026-11-30T08:00:00Z"}}`
}

// workflowJSON is what the tests read of a workflow.
type workflowJSON struct {
	ID             string `json:"id"`
	Type           string `json:"type"`
	Priority       string `json:"priority"`
	Status         string `json:"status"`
	Patient        string `json:"patient"`
	Encounter      string `json:"encounter"`
	FHIRTask       string `json:"fhir_task"`
	ChiefComplaint string `json:"chief_complaint"`
	ClinicalNotes  string `json:"clinical_notes"`
	Version        int    `json:"version"`
	Steps          []struct {
		ID         string `json:"id"`
		Code       string `json:"code"`
		Role       string `json:"role"`
		Status     string `json:"status"`
		Task       string `json:"task"`
		FHIRTask   string `json:"fhir_task"`
		StartedBy  string `json:"started_by"`
		FinishedBy string `json:"finished_by"`
		Version    int    `json:"version"`
	} `json:"steps"`
}

func (w workflowJSON) step(t *testing.T, code string) (id string, version int) {
	t.Helper()
	for _, s := range w.Steps {
		if s.Code == code {
			return s.ID, s.Version
		}
	}
	t.Fatalf("workflow has no step %s: %+v", code, w.Steps)
	return "", 0
}

// createDischarge starts a discharge of ownPatient as who.
func (f *clinicalFixture) createDischarge(t *testing.T, who string) workflowJSON {
	t.Helper()
	return must[workflowJSON](t, f.call(t, who, "POST", clinicalWorkflow, map[string]any{
		"type": "discharge", "priority": "urgent", "patient": "Patient/" + ownPatient, "provider": "Practitioner/" + clinicalDoctor,
		"encounter": "Encounter/" + ownEncounter, "chief_complaint": "Shortness of breath",
		"clinical_notes": "Improving on oral antibiotics; ready for discharge planning.",
	}), http.StatusCreated)
}

// move moves a step of w as who and returns the workflow after it.
func (f *clinicalFixture) move(t *testing.T, who string, w workflowJSON, code, status string, want int) workflowJSON {
	t.Helper()
	id, version := w.step(t, code)
	resp := f.call(t, who, "PUT", clinicalWorkflow+"/"+w.ID+"/steps/"+id, map[string]any{"status": status, "version": version})
	if want != http.StatusOK {
		problemOf(t, resp, want)
		return w
	}
	return must[workflowJSON](t, resp, http.StatusOK)
}

// A discharge is driven start to finish through the HTTP API by a nurse and
// a physician of the patient's care team; a nurse cannot do a physician's
// step; the FHIR view (a Task per workflow, a Task per step partOf it) is
// read back through /fhir/R4 and passes the R4 validator.
func TestClinicalDischargeDrivenByNurseAndPhysician(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		nurse := f.principal(t, "nurse-1", auth.Nurse, "")
		doctor := f.principal(t, "doctor-1", auth.Physician, "")

		w := f.createDischarge(t, doctor)
		if w.Status != "active" || w.Type != "discharge" || len(w.Steps) != 4 || w.ChiefComplaint == "" {
			t.Fatalf("created %+v", w)
		}
		// The nurse may not sign off (a physician's step), nor start it.
		w = f.move(t, nurse, w, "discharge_signoff", "in_progress", http.StatusForbidden)
		// Out of order: a pending step cannot complete.
		w = f.move(t, nurse, w, "discharge_readiness", "completed", http.StatusConflict)

		w = f.move(t, nurse, w, "discharge_readiness", "in_progress", http.StatusOK)
		w = f.move(t, nurse, w, "discharge_readiness", "completed", http.StatusOK)
		w = f.move(t, doctor, w, "discharge_summary", "in_progress", http.StatusOK)
		w = f.move(t, doctor, w, "discharge_summary", "completed", http.StatusOK)
		w = f.move(t, doctor, w, "discharge_signoff", "in_progress", http.StatusOK)
		w = f.move(t, doctor, w, "discharge_signoff", "completed", http.StatusOK)
		if w.Status != "active" {
			t.Fatalf("workflow %s before its last step", w.Status)
		}
		w = f.move(t, nurse, w, "discharge_teaching", "in_progress", http.StatusOK)
		w = f.move(t, nurse, w, "discharge_teaching", "completed", http.StatusOK)
		if w.Status != "completed" {
			t.Fatalf("workflow %s after its last step", w.Status)
		}
		for _, s := range w.Steps {
			if s.Status != "completed" || s.FinishedBy == "" || s.StartedBy != s.FinishedBy {
				t.Errorf("step %s: %s by %q/%q", s.Code, s.Status, s.StartedBy, s.FinishedBy)
			}
			if (s.Role == "nurse") != (s.FinishedBy == nurse) {
				t.Errorf("step %s of a %s done by %s", s.Code, s.Role, s.FinishedBy)
			}
		}
		// The run that held the steps' tasks has ended with the workflow.
		run, err := f.eng.GetRun(context.Background(), w.ID)
		if err != nil || run.Status != "completed" {
			t.Fatalf("run %+v, %v", run, err)
		}

		// The FHIR view, as the nurse reads it.
		wt := must[map[string]any](t, f.call(t, nurse, "GET", "/fhir/R4/"+w.FHIRTask, nil), http.StatusOK)
		if wt["status"] != "completed" || wt["priority"] != "urgent" {
			t.Errorf("workflow Task %v", wt)
		}
		bundle := must[struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}](t, f.call(t, nurse, "GET", "/fhir/R4/Task?part-of="+w.FHIRTask+"&_count=50", nil), http.StatusOK)
		if len(bundle.Entry) != 4 {
			t.Fatalf("%d step Tasks partOf the workflow's, want 4", len(bundle.Entry))
		}
		docs := []json.RawMessage{mustJSON(t, wt)}
		for _, e := range bundle.Entry {
			var st struct {
				Status        string `json:"status"`
				PerformerType []struct {
					Coding []struct{ Code string } `json:"coding"`
				} `json:"performerType"`
				Owner struct {
					Identifier struct{ Value string } `json:"identifier"`
				} `json:"owner"`
			}
			if err := json.Unmarshal(e.Resource, &st); err != nil {
				t.Fatal(err)
			}
			if st.Status != "completed" || len(st.PerformerType) != 1 || st.Owner.Identifier.Value == "" {
				t.Errorf("step Task %s", e.Resource)
			}
			docs = append(docs, e.Resource)
		}
		for _, d := range docs {
			if is := fhir.Validate(d); is.HasErrors() {
				t.Errorf("Task is not valid R4: %+v\n%s", is, d)
			}
		}
		f.checkRollup(t)
	})
}

// A clinician outside the patient's care team sees the workflow as missing
// (404, as for a record); clinical_admin sees it without its clinical text
// and cannot write that text; billing may not list workflows at all.
func TestClinicalWorkflowReachAndFields(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		doctor := f.principal(t, "doctor-1", auth.Physician, "")
		admin := f.principal(t, "ca-1", auth.ClinicalAdmin, "")
		billing := f.principal(t, "bill-1", auth.Billing, "")
		w := f.createDischarge(t, doctor)

		// A physician of another team: the same answer as a missing id.
		outsider := "doctor-b"
		f.mu.Lock()
		f.principals[outsider] = &auth.Principal{Subject: outsider, Kind: auth.KindUser, Role: auth.Physician, Scopes: []string{"openid", "user/*.cruds"}}
		f.mu.Unlock()
		missing := problemOf(t, f.call(t, outsider, "GET", clinicalWorkflow+"/01900000-0000-7000-8000-000000000000", nil), http.StatusNotFound)
		hidden := problemOf(t, f.call(t, outsider, "GET", clinicalWorkflow+"/"+w.ID, nil), http.StatusNotFound)
		if hidden.Detail != missing.Detail {
			t.Errorf("out of reach %q, missing %q", hidden.Detail, missing.Detail)
		}
		id, v := w.step(t, "discharge_summary")
		problemOf(t, f.call(t, outsider, "PUT", clinicalWorkflow+"/"+w.ID+"/steps/"+id, map[string]any{"status": "in_progress", "version": v}), http.StatusNotFound)
		page := must[clinical.Page](t, f.call(t, outsider, "GET", clinicalWorkflow, nil), http.StatusOK)
		if len(page.Workflows) != 0 {
			t.Errorf("the outsider lists %d workflows", len(page.Workflows))
		}

		// clinical_admin: every patient's workflow, no clinical text.
		seen := must[workflowJSON](t, f.call(t, admin, "GET", clinicalWorkflow+"/"+w.ID, nil), http.StatusOK)
		if seen.ID != w.ID || seen.ChiefComplaint != "" || seen.ClinicalNotes != "" || len(seen.Steps) != 4 {
			t.Errorf("clinical_admin sees %+v", seen)
		}
		problemOf(t, f.call(t, admin, "PUT", clinicalWorkflow+"/"+w.ID, map[string]any{"version": w.Version, "clinical_notes": "x"}), http.StatusForbidden)
		upd := must[workflowJSON](t, f.call(t, admin, "PUT", clinicalWorkflow+"/"+w.ID, map[string]any{"version": w.Version, "priority": "emergency"}), http.StatusOK)
		if upd.Priority != "emergency" || upd.Version != w.Version+1 {
			t.Errorf("after the priority change %+v", upd)
		}
		// A stale version is a conflict naming the field; nothing changes.
		p := problemOf(t, f.call(t, doctor, "PUT", clinicalWorkflow+"/"+w.ID, map[string]any{"version": w.Version, "priority": "routine"}), http.StatusConflict)
		if p.Field != "version" {
			t.Errorf("stale version problem %+v", p)
		}
		// Clinical admin works no step, even though it may update the workflow.
		problemOf(t, f.call(t, admin, "PUT", clinicalWorkflow+"/"+w.ID+"/steps/"+id, map[string]any{"status": "in_progress", "version": v}), http.StatusForbidden)

		problemOf(t, f.call(t, billing, "GET", clinicalWorkflow, nil), http.StatusForbidden)
		problemOf(t, f.call(t, billing, "GET", clinicalWorkflow+"/"+w.ID, nil), http.StatusForbidden)
	})
}

// Bad input gets a 4xx problem naming the field, and nothing changes.
func TestClinicalBadInputNamesTheField(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		doctor := f.principal(t, "doctor-1", auth.Physician, "")
		base := map[string]any{"type": "discharge", "priority": "routine", "patient": "Patient/" + ownPatient, "provider": "Practitioner/" + clinicalDoctor}
		with := func(k string, v any) map[string]any {
			m := map[string]any{}
			for a, b := range base {
				m[a] = b
			}
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
			return m
		}
		for _, tc := range []struct {
			name   string
			body   any
			status int
			field  string
		}{
			{"unknown type", with("type", "surgery"), 400, "type"},
			{"no type", with("type", nil), 400, "type"},
			{"unknown priority", with("priority", "asap"), 400, "priority"},
			{"patient not a reference", with("patient", ownPatient), 400, "patient"},
			{"unknown patient", with("patient", "Patient/nobody"), 422, "patient"},
			{"another team's patient", with("patient", "Patient/"+otherPatient), 422, "patient"},
			{"unknown provider", with("provider", "Practitioner/nobody"), 422, "provider"},
			{"another patient's encounter", with("encounter", "Encounter/"+otherEncounter), 422, "encounter"},
			{"unknown role", map[string]any{"type": "custom", "patient": "Patient/" + ownPatient, "provider": "Practitioner/" + clinicalDoctor,
				"steps": []map[string]any{{"code": "wound_check", "role": "surgeon"}}}, 400, "steps[0].role"},
			{"custom without steps", with("type", "custom"), 400, "steps"},
			{"unknown member", with("colour", "red"), 400, "colour"},
		} {
			p := problemOf(t, f.call(t, doctor, "POST", clinicalWorkflow, tc.body), tc.status)
			if p.Field != tc.field {
				t.Errorf("%s: field %q, want %q (%s)", tc.name, p.Field, tc.field, p.Detail)
			}
		}
		page := must[clinical.Page](t, f.call(t, doctor, "GET", clinicalWorkflow, nil), http.StatusOK)
		if len(page.Workflows) != 0 {
			t.Fatalf("refused creates left %d workflows", len(page.Workflows))
		}

		w := f.createDischarge(t, doctor)
		id, v := w.step(t, "discharge_summary")
		for _, tc := range []struct {
			name   string
			path   string
			body   any
			status int
			field  string
		}{
			{"unknown status", "/steps/" + id, map[string]any{"status": "done", "version": v}, 400, "status"},
			{"no version", "/steps/" + id, map[string]any{"status": "in_progress"}, 400, "version"},
			{"stale version", "/steps/" + id, map[string]any{"status": "in_progress", "version": v + 1}, 409, "version"},
			{"out of order", "/steps/" + id, map[string]any{"status": "completed", "version": v}, 409, "status"},
			{"a reason that is text", "/steps/" + id, map[string]any{"status": "skipped", "version": v, "reason": "Patient refused!"}, 400, "reason"},
			{"unknown step", "/steps/01900000-0000-7000-8000-000000000000", map[string]any{"status": "in_progress", "version": 1}, 404, ""},
			{"unknown workflow role", "/steps", map[string]any{"code": "wound_check", "role": "surgeon"}, 400, "role"},
			{"complete a workflow by hand", "", map[string]any{"status": "completed", "version": w.Version}, 400, "status"},
		} {
			method := "PUT"
			if tc.path == "/steps" {
				method = "POST"
			}
			p := problemOf(t, f.call(t, doctor, method, clinicalWorkflow+"/"+w.ID+tc.path, tc.body), tc.status)
			if p.Field != tc.field {
				t.Errorf("%s: field %q, want %q (%s)", tc.name, p.Field, tc.field, p.Detail)
			}
		}
		problemOf(t, f.call(t, doctor, "GET", clinicalWorkflow+"/01900000-0000-7000-8000-000000000000", nil), http.StatusNotFound)
		after := must[workflowJSON](t, f.call(t, doctor, "GET", clinicalWorkflow+"/"+w.ID, nil), http.StatusOK)
		if after.Version != w.Version {
			t.Errorf("refused updates moved the workflow from version %d to %d", w.Version, after.Version)
		}
		for _, s := range after.Steps {
			if s.Status != "pending" || s.Version != 1 {
				t.Errorf("refused updates moved step %s to %s v%d", s.Code, s.Status, s.Version)
			}
		}
		f.checkRollup(t)
	})
}

// The research export of a workflow whose text names the patient, their
// phone, record number and address holds none of them; without the
// patient's research consent it is refused (403, audited).
func TestClinicalExportIsDeidentifiedAndNeedsConsent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		doctor := f.principal(t, "doctor-1", auth.Physician, "")
		research := f.principal(t, "research-1", auth.Integration, "")
		ctx := context.Background()
		patient := `{"resourceType":"Patient","id":"` + ownPatient + `",
			"identifier":[{"system":"urn:mrn","value":"MRN-00482913"},{"system":"https://github.com/careflow/careflow/sid/eg-national-id","value":"29501011234567"}],
			"name":[{"family":"Hassan","given":["Ahmed","Mahmoud"]},{"text":"أحمد حسن"}],
			"telecom":[{"system":"phone","value":"+20 100 123 4567"},{"system":"email","value":"ahmed.hassan@example.com"}],
			"gender":"male","birthDate":"1931-03-05",
			"address":[{"line":["15 Tahrir Street"],"city":"Dokki","district":"Giza","postalCode":"12611"}],
			"contact":[{"name":{"given":["Omar"],"family":"Hassan"},"telecom":[{"system":"phone","value":"01001112233"}]}]}`
		if _, _, err := f.deps.rec.Update(ctx, nil, "Patient", ownPatient, []byte(patient), ""); err != nil {
			t.Fatal(err)
		}
		notes := "Ahmed Hassan (MRN-00482913, national ID 29501011234567) was seen on 30 November 2026. " +
			"He lives at 15 Tahrir Street, Dokki, Giza 12611; call 0100 123 4567 or his son Omar on +20 100 111 2233, " +
			"or write to ahmed.hassan@example.com. Mr. Hassan is a 95-year-old man; BP 120/80, SpO2 94%, " +
			"started amoxicillin 500 mg three times daily for E11.9 follow-up. أحمد حسن يشكو من ضيق في التنفس."
		w := must[workflowJSON](t, f.call(t, doctor, "POST", clinicalWorkflow, map[string]any{
			"type": "admission", "patient": "Patient/" + ownPatient, "provider": "Practitioner/" + clinicalDoctor,
			"encounter": "Encounter/" + ownEncounter, "chief_complaint": "Ahmed Hassan reports shortness of breath since 2026-11-28",
			"clinical_notes": notes, "working_diagnosis": "Community-acquired pneumonia"}), http.StatusCreated)

		// No research consent: refused, and the refusal is in the audit log.
		p := problemOf(t, f.call(t, research, "POST", "/api/v1/clinical-workflows/ai-training-data/"+w.ID, nil), http.StatusForbidden)
		if !strings.Contains(p.Detail, "consent") {
			t.Errorf("refusal %+v", p)
		}
		f.setConsent(t, ownPatient, "research=permit")
		first := f.call(t, research, "POST", "/api/v1/clinical-workflows/ai-training-data/"+w.ID, nil)
		rec := must[map[string]any](t, first, http.StatusOK)
		out := string(first.body)
		for _, leak := range []string{"Ahmed", "Hassan", "Mahmoud", "Omar", "أحمد", "حسن", "482913", "00482913", "29501011234567",
			"1234567", "123 4567", "1112233", "111 2233", "Tahrir", "Dokki", "Giza", "12611", "ahmed.hassan", "example.com",
			"1931", "30 November", "2026-11-28", ownPatient, "95-year"} {
			if strings.Contains(out, leak) {
				t.Errorf("the export holds %q: %s", leak, out)
			}
		}
		text, _ := rec["text"].(map[string]any)
		if notesOut, _ := text["clinical_notes"].(string); !strings.Contains(notesOut, "BP 120/80") || !strings.Contains(notesOut, "500 mg") ||
			!strings.Contains(notesOut, "E11.9") || !strings.Contains(notesOut, "90+") {
			t.Errorf("the scrubbed notes lost clinical content: %q", notesOut)
		}
		if rec["format"] != "careflow.deid.v1" || rec["age_group"] != "90+" || rec["birth_year"] != nil || rec["sex"] != "male" {
			t.Errorf("export %s", out)
		}
		second := must[map[string]any](t, f.call(t, research, "POST", "/api/v1/clinical-workflows/ai-training-data/"+w.ID, nil), http.StatusOK)
		if rec["patient_key"] == "" || second["patient_key"] != rec["patient_key"] {
			t.Errorf("patient keys %v and %v", rec["patient_key"], second["patient_key"])
		}
		// Both the refusal and the grants are audited as exports.
		var refused, granted int
		if err := db.Reader().QueryRow(ctx, `SELECT
			(SELECT count(*) FROM audit_entries WHERE action = 'export' AND resource_id = $1 AND outcome <> 'success'),
			(SELECT count(*) FROM audit_entries WHERE action = 'export' AND resource_id = $1 AND outcome = 'success')`, w.ID).Scan(&refused, &granted); err != nil {
			t.Fatal(err)
		}
		if refused != 1 || granted != 2 {
			t.Errorf("audit: %d refused and %d granted exports, want 1 and 2", refused, granted)
		}
		// A clinician may not export (the policy grants it to research clients).
		problemOf(t, f.call(t, doctor, "POST", "/api/v1/clinical-workflows/ai-training-data/"+w.ID, nil), http.StatusForbidden)
	})
}

// A dump of the database after a workflow ran holds none of its clinical
// text: the chief complaint, notes and working diagnosis are sealed, and the
// plain rows, engine tasks, FHIR Tasks' indexes and events hold codes.
func TestClinicalDumpHoldsNoClinicalText(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		doctor := f.principal(t, "doctor-1", auth.Physician, "")
		nurse := f.principal(t, "nurse-1", auth.Nurse, "")
		w := must[workflowJSON](t, f.call(t, doctor, "POST", clinicalWorkflow, map[string]any{
			"type": "discharge", "patient": "Patient/" + ownPatient, "provider": "Practitioner/" + clinicalDoctor,
			"chief_complaint": "Quixotic palpitations", "clinical_notes": "Zephyrine tablets stopped",
			"working_diagnosis": "Xanthous syndrome"}), http.StatusCreated)
		w = f.move(t, nurse, w, "discharge_readiness", "in_progress", http.StatusOK)
		must[workflowJSON](t, f.call(t, doctor, "PUT", clinicalWorkflow+"/"+w.ID,
			map[string]any{"version": w.Version, "clinical_notes": "Zephyrine restarted at night"}), http.StatusOK)
		dump := string(storetest.Dump(t, db))
		for _, v := range []string{"Quixotic", "palpitations", "Zephyrine", "Xanthous"} {
			if strings.Contains(dump, v) {
				t.Errorf("the dump holds %q in readable form", v)
			}
		}
	})
}
