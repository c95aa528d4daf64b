package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The list puts emergency work first and pages by cursor; filters narrow
// it; search finds workflows with their encounters; analytics count,
// time and wait; the module's metrics count what happened.
func TestClinicalListSearchAnalyticsMetrics(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		doctor := f.principal(t, "doctor-1", auth.Physician, "")
		nurse := f.principal(t, "nurse-1", auth.Nurse, "")
		create := func(body map[string]any) workflowJSON {
			body["patient"], body["provider"] = "Patient/"+ownPatient, "Practitioner/"+clinicalDoctor
			return must[workflowJSON](t, f.call(t, doctor, "POST", clinicalWorkflow, body), http.StatusCreated)
		}
		// The days the four are created on: one, or two when the test
		// runs across midnight UTC.
		firstDay := f.clock.Now().UTC().Format(time.DateOnly)
		routine := create(map[string]any{"type": "discharge", "encounter": "Encounter/" + ownEncounter})
		f.clock.Advance(time.Minute)
		emergency := create(map[string]any{"type": "admission", "priority": "emergency"})
		f.clock.Advance(time.Minute)
		urgent := create(map[string]any{"type": "procedure", "priority": "urgent"})
		f.clock.Advance(time.Minute)
		custom := create(map[string]any{"type": "custom", "steps": []map[string]any{{"code": "wound_check", "role": "nurse", "due_minutes": 30}}})
		lastDay := f.clock.Now().UTC().Format(time.DateOnly)

		// The custom workflow's one step done: the workflow completes.
		f.clock.Advance(10 * time.Minute)
		custom = f.move(t, nurse, custom, "wound_check", "in_progress", http.StatusOK)
		f.clock.Advance(5 * time.Minute)
		custom = f.move(t, nurse, custom, "wound_check", "completed", http.StatusOK)
		if custom.Status != "completed" {
			t.Fatalf("custom workflow %s", custom.Status)
		}
		// The procedure is cancelled: its run and open tasks end with it.
		urgent = must[workflowJSON](t, f.call(t, doctor, "PUT", clinicalWorkflow+"/"+urgent.ID,
			map[string]any{"version": urgent.Version, "status": "cancelled", "reason": "patient_declined"}), http.StatusOK)
		if urgent.Status != "cancelled" {
			t.Fatalf("cancelled workflow %s", urgent.Status)
		}
		run, err := f.eng.GetRun(context.Background(), urgent.ID)
		if err != nil || run.Status != engine.StatusCancelled {
			t.Fatalf("cancelled workflow's run %+v, %v", run, err)
		}
		id, v := urgent.step(t, "procedure")
		problemOf(t, f.call(t, doctor, "PUT", clinicalWorkflow+"/"+urgent.ID+"/steps/"+id, map[string]any{"status": "in_progress", "version": v}), http.StatusConflict)
		task := must[map[string]any](t, f.call(t, doctor, "GET", "/fhir/R4/"+urgent.Steps[0].FHIRTask, nil), http.StatusOK)
		if task["status"] != "cancelled" {
			t.Errorf("a cancelled workflow's open step Task is %v", task["status"])
		}

		// Emergency first, then newest first; two per page.
		var ids []string
		cursor := ""
		for range 3 {
			path := clinicalWorkflow + "?limit=2"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			page := must[clinical.Page](t, f.call(t, nurse, "GET", path, nil), http.StatusOK)
			for _, w := range page.Workflows {
				var v workflowJSON
				if err := json.Unmarshal(w, &v); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, v.ID)
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		want := []string{emergency.ID, urgent.ID, custom.ID, routine.ID}
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Errorf("listed %v, want %v", ids, want)
		}
		for q, n := range map[string]int{"type=procedure": 1, "priority=routine": 2, "status=active": 2, "status=completed": 1,
			"patient=Patient/" + ownPatient: 4, "provider=" + clinicalDoctor: 4} {
			page := must[clinical.Page](t, f.call(t, nurse, "GET", clinicalWorkflow+"?"+q, nil), http.StatusOK)
			if len(page.Workflows) != n {
				t.Errorf("?%s listed %d, want %d", q, len(page.Workflows), n)
			}
		}
		// Another team's patient: the listing answers as for a missing one.
		problemOf(t, f.call(t, nurse, "GET", clinicalWorkflow+"?patient=Patient/"+otherPatient, nil), http.StatusNotFound)
		problemOf(t, f.call(t, nurse, "GET", clinicalWorkflow+"?colour=red", nil), http.StatusBadRequest)
		problemOf(t, f.call(t, nurse, "GET", clinicalWorkflow+"?cursor=nonsense", nil), http.StatusBadRequest)

		// Search: a type finds its workflows and the encounters they name.
		res := must[clinical.SearchResult](t, f.call(t, nurse, "GET", "/api/v1/clinical-workflows/search?type=discharge", nil), http.StatusOK)
		if len(res.Workflows) != 1 || len(res.Encounters) != 1 || !strings.Contains(string(res.Encounters[0]), ownEncounter) {
			t.Errorf("search by type: %d workflows, encounters %s", len(res.Workflows), res.Encounters)
		}
		res = must[clinical.SearchResult](t, f.call(t, nurse, "GET", "/api/v1/clinical-workflows/search?patient=Patient/"+ownPatient+"&encounter_status=in-progress", nil), http.StatusOK)
		if len(res.Workflows) != 4 || len(res.Encounters) != 1 {
			t.Errorf("search by patient: %d workflows, %d encounters", len(res.Workflows), len(res.Encounters))
		}

		// Overdue: an hour later the admission's triage (due in 30 min
		// routine, 7.5 min as an emergency) is overdue.
		f.clock.Advance(time.Hour)
		a := must[clinical.Analytics](t, f.call(t, nurse, "GET", "/api/v1/clinical-workflows/analytics", nil), http.StatusOK)
		if a.Total != 4 || a.ByStatus[clinical.StatusActive] != 2 || a.ByStatus[clinical.StatusCompleted] != 1 || a.ByStatus[clinical.StatusCancelled] != 1 {
			t.Errorf("analytics counts %+v", a)
		}
		if a.TimeToComplete.Count != 1 || a.TimeToComplete.MedianMinutes != 15 {
			t.Errorf("time to complete %+v, want one of 15 minutes", a.TimeToComplete)
		}
		if len(a.ByType) != 4 || len(a.ByPriority) != 3 || len(a.ByProvider) != 1 || createdPerDay(a) != 4 {
			t.Errorf("breakdowns %+v %+v %+v per day %+v", a.ByType, a.ByPriority, a.ByProvider, a.PerDay)
		}
		if len(a.LongestWaits) == 0 || a.LongestWaits[0].Wait.MedianMinutes < 60 {
			t.Errorf("longest waits %+v", a.LongestWaits)
		}
		overdue := map[string]int{}
		for _, o := range a.Overdue {
			overdue[o.Code] = o.Count
		}
		if overdue["triage"] != 1 || overdue["wound_check"] != 0 || overdue["procedure"] != 0 {
			t.Errorf("overdue %+v", a.Overdue)
		}
		problemOf(t, f.call(t, nurse, "GET", "/api/v1/clinical-workflows/analytics?from=2026-01-02&to=2026-01-01", nil), http.StatusBadRequest)
		problemOf(t, f.call(t, nurse, "GET", "/api/v1/clinical-workflows/analytics?from=2025-01-01&to=2026-01-02", nil), http.StatusBadRequest)
		problemOf(t, f.call(t, nurse, "GET", "/api/v1/clinical-workflows/analytics?from=yesterday", nil), http.StatusBadRequest)

		// The rollup two ways: clinical_admin, who reaches every patient,
		// reads the days' cells; the nurse, confined to her team, reads
		// her patients' days. Every workflow here is her patient's, so
		// they agree; a day before the first holds nothing.
		admin := f.principal(t, "ca-1", auth.ClinicalAdmin, "")
		mine := f.call(t, nurse, "GET", "/api/v1/clinical-workflows/analytics", nil)
		if all := f.call(t, admin, "GET", "/api/v1/clinical-workflows/analytics", nil); string(all.body) != string(mine.body) {
			t.Errorf("analytics of every patient:\n%s\nof the nurse's team:\n%s", all.body, mine.body)
		}
		a = must[clinical.Analytics](t, f.call(t, admin, "GET", "/api/v1/clinical-workflows/analytics?from="+firstDay+"&to="+lastDay, nil), http.StatusOK)
		if a.Total != 4 || a.From != firstDay || a.To != lastDay {
			t.Errorf("analytics of the creation days: %d workflows, %s to %s", a.Total, a.From, a.To)
		}
		first, _ := time.Parse(time.DateOnly, firstDay)
		before := first.AddDate(0, 0, -1).Format(time.RFC3339)
		a = must[clinical.Analytics](t, f.call(t, admin, "GET", "/api/v1/clinical-workflows/analytics?from="+before+"&to="+before, nil), http.StatusOK)
		if a.Total != 0 || len(a.Overdue) != 0 || len(a.LongestWaits) != 0 {
			t.Errorf("analytics of yesterday: %+v", a)
		}
		a = must[clinical.Analytics](t, f.call(t, admin, "GET", "/api/v1/clinical-workflows/analytics?type=custom&provider=Practitioner/"+clinicalDoctor, nil), http.StatusOK)
		if a.Total != 1 || a.ByStatus[clinical.StatusCompleted] != 1 || len(a.ByType) != 1 {
			t.Errorf("analytics of one type and provider: %+v", a)
		}
		f.checkRollup(t)

		// A database whose workflows predate the rollup: its rows cleared
		// and marked unbuilt, the next start rebuilds it the same.
		for _, q := range []string{`DELETE FROM clinical_rollup`, `DELETE FROM clinical_rollup_patients`, `DELETE FROM clinical_rollup_state`} {
			if err := db.Tx(context.Background(), func(tx store.Tx) error { _, err := tx.Exec(context.Background(), q); return err }); err != nil {
				t.Fatal(err)
			}
		}
		restarted := f.restartedService(t)
		if err := restarted.EnsureRollup(context.Background()); err != nil {
			t.Fatal(err)
		}
		if again := f.call(t, nurse, "GET", "/api/v1/clinical-workflows/analytics", nil); string(again.body) != string(mine.body) {
			t.Errorf("analytics after the rebuild:\n%s\nbefore:\n%s", again.body, mine.body)
		}
		f.checkRollup(t)

		// The standing work's gauges are read in the background after a
		// scrape asks; a later scrape has them.
		var m authzResponse
		pollUntil(t, 10*time.Second, "the standing work's gauges", func() bool {
			m = f.call(t, nurse, "GET", "/api/v1/clinical-workflows/metrics", nil)
			if m.status != http.StatusOK {
				t.Fatalf("metrics %d: %s", m.status, m.body)
			}
			return strings.Contains(string(m.body), "careflow_clinical_steps_overdue{")
		})
		for _, want := range []string{`careflow_clinical_workflows_created_total{priority="emergency",type="admission"} 1`,
			`careflow_clinical_workflows_finished_total{status="cancelled",type="procedure"} 1`,
			`careflow_clinical_workflows_active{priority="routine"} 1`, `careflow_clinical_steps_overdue{role="nurse"}`} {
			if !strings.Contains(string(m.body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		h := f.call(t, "", "GET", "/api/v1/clinical-workflows/health", nil)
		if h.status != http.StatusOK {
			t.Errorf("health %d: %s", h.status, h.body)
		}
	})
}

// A step's due time and escalation are the engine's: an overdue step's task
// is escalated by the engine's housekeeping (released, flagged on its
// role's list), which the workflow shows; a step added to a running
// workflow gets a task of its own; a create with an Idempotency-Key is
// made once.
func TestClinicalStepsAreEngineTasks(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		doctor := f.principal(t, "doctor-1", auth.Physician, "")
		nurse := f.principal(t, "nurse-1", auth.Nurse, "")
		body := map[string]any{"type": "admission", "priority": "emergency", "patient": "Patient/" + ownPatient, "provider": "Practitioner/" + clinicalDoctor}
		w := must[workflowJSON](t, f.call(t, doctor, "POST", clinicalWorkflow, body), http.StatusCreated)
		// The same key again: the same workflow, 200.
		// again creates with an Idempotency-Key, decoding the answer into w.
		again := func(key string) int {
			req, err := http.NewRequest("POST", f.ts.URL+clinicalWorkflow, strings.NewReader(mustString(t, body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(testPrincipalHeader, doctor)
			req.Header.Set("Idempotency-Key", key)
			resp, err := f.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode
		}
		if s := again("admit-1"); s != http.StatusCreated {
			t.Fatalf("first keyed create %d", s)
		}
		keyed := w.ID
		if s := again("admit-1"); s != http.StatusOK || w.ID != keyed {
			t.Fatalf("repeated keyed create %d, %s (first %s)", s, w.ID, keyed)
		}

		// The triage step's task is on the nurses' list, due in 7.5 minutes.
		tasks := must[struct {
			Tasks []engine.Task `json:"tasks"`
		}](t, f.call(t, nurse, "GET", "/api/v1/tasks?role=nurse", nil), http.StatusOK)
		found := false
		for _, task := range tasks.Tasks {
			if task.ID == w.Steps[0].Task {
				found = task.Title == "Triage" && task.DueAt != nil
			}
		}
		if !found {
			t.Fatalf("the triage step's task is not on the nurses' list: %+v", tasks.Tasks)
		}
		w = f.move(t, nurse, w, "triage", "in_progress", http.StatusOK)
		f.clock.Advance(10 * time.Minute)
		pollUntil(t, 10*time.Second, "the overdue triage escalated", func() bool {
			var got struct {
				Steps []struct {
					EscalatedAt *time.Time `json:"escalated_at"`
					Overdue     bool       `json:"overdue"`
				} `json:"steps"`
			}
			b := f.call(t, nurse, "GET", clinicalWorkflow+"/"+w.ID, nil)
			if err := json.Unmarshal(b.body, &got); err != nil {
				t.Fatal(err)
			}
			return got.Steps[0].EscalatedAt != nil && got.Steps[0].Overdue
		})
		// Escalation released the claim: another nurse of the team finishes it.
		other := f.principal(t, "nurse-2", auth.Nurse, "")
		w = must[workflowJSON](t, f.call(t, other, "GET", clinicalWorkflow+"/"+w.ID, nil), http.StatusOK)
		w = f.move(t, other, w, "triage", "completed", http.StatusOK)

		// A step added while it runs is a task of its own, worked like the rest.
		w = must[workflowJSON](t, f.call(t, doctor, "POST", clinicalWorkflow+"/"+w.ID+"/steps",
			map[string]any{"code": "chest_xray_review", "role": "physician", "due_minutes": 90}), http.StatusCreated)
		last := w.Steps[len(w.Steps)-1]
		if last.Code != "chest_xray_review" || last.Status != "pending" || last.Task == "" || last.FHIRTask == "" {
			t.Fatalf("added step %+v", last)
		}
		w = f.move(t, doctor, w, "chest_xray_review", "in_progress", http.StatusOK)
		w = f.move(t, doctor, w, "chest_xray_review", "skipped", http.StatusOK)
		task, err := f.eng.GetTask(context.Background(), last.Task)
		if err != nil || task.Status != engine.TaskCompleted || task.Decision != "skipped" {
			t.Fatalf("the added step's task %+v, %v", task, err)
		}
		f.checkRollup(t)
	})
}

// A workflow's changes reach the event sinks in order, each once: created,
// its steps added, each step started and ended, completed; ids, codes and
// states only, never the clinical text.
func TestClinicalEventsReachSinksInOrder(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		doctor := f.principal(t, "doctor-1", auth.Physician, "")
		nurse := f.principal(t, "nurse-1", auth.Nurse, "")
		pub := events.NewPublisher(db, events.Options{})
		sink := &events.MemorySink{}
		pub.Register("test", sink)
		w := must[workflowJSON](t, f.call(t, doctor, "POST", clinicalWorkflow, map[string]any{"type": "custom",
			"patient": "Patient/" + ownPatient, "provider": "Practitioner/" + clinicalDoctor, "clinical_notes": "Quietly improving",
			"steps": []map[string]any{{"code": "wound_check", "role": "nurse"}, {"code": "review", "role": "physician"}}}), http.StatusCreated)
		w = f.move(t, nurse, w, "wound_check", "in_progress", http.StatusOK)
		w = f.move(t, nurse, w, "wound_check", "completed", http.StatusOK)
		w = f.move(t, doctor, w, "review", "skipped", http.StatusOK)
		if w.Status != "completed" {
			t.Fatalf("workflow %s", w.Status)
		}
		if _, err := pub.PublishOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		var kinds []string
		seen := map[int64]bool{}
		for _, ev := range sink.Events() {
			if ev.AggregateType != clinical.AggregateType {
				continue
			}
			if ev.AggregateID != w.ID || seen[ev.ID] || strings.Contains(string(ev.Payload), "Quietly") {
				t.Fatalf("event %+v", ev)
			}
			seen[ev.ID] = true
			kinds = append(kinds, ev.Kind)
		}
		want := []string{clinical.EventCreated, clinical.EventStepAdded, clinical.EventStepAdded, clinical.EventStepStarted,
			clinical.EventStepCompleted, clinical.EventStepSkipped, clinical.EventCompleted}
		if strings.Join(kinds, " ") != strings.Join(want, " ") {
			t.Errorf("events %v, want %v", kinds, want)
		}
	})
}

// A clinical workflow's run and its steps' tasks move only through the
// clinical API: the generic run and task routes refuse them (409), so the
// workflow's own state never falls out of step with its run.
func TestClinicalRunsAreDrivenOnlyByTheModule(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		doctor := f.principal(t, "doctor-1", auth.Physician, "")
		nurse := f.principal(t, "nurse-1", auth.Nurse, "")
		admin := f.principal(t, "ca-1", auth.ClinicalAdmin, "")
		w := f.createDischarge(t, doctor)
		run, err := f.eng.GetRun(context.Background(), w.ID)
		if err != nil {
			t.Fatal(err)
		}
		task, err := f.eng.GetTask(context.Background(), w.Steps[0].Task)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			who, path string
			body      any
		}{
			{admin, "/api/v1/workflow-runs/" + w.ID + "/cancel", map[string]any{"version": run.RowVersion}},
			{admin, "/api/v1/workflow-runs/" + w.ID + "/pause", map[string]any{"version": run.RowVersion}},
			{doctor, "/api/v1/workflow-runs/" + w.ID + "/signals", map[string]any{"id": "s-1", "name": "closed"}},
			{nurse, "/api/v1/tasks/" + task.ID + "/claim", map[string]any{"version": task.RowVersion}},
			{nurse, "/api/v1/tasks/" + task.ID + "/complete", map[string]any{"version": task.RowVersion, "decision": "completed"}},
		} {
			p := problemOf(t, f.call(t, c.who, "POST", c.path, c.body), http.StatusConflict)
			if !strings.Contains(p.Detail, "/api/v1/clinical-workflows") {
				t.Errorf("%s: %s", c.path, p.Detail)
			}
		}
		after := must[workflowJSON](t, f.call(t, doctor, "GET", clinicalWorkflow+"/"+w.ID, nil), http.StatusOK)
		if after.Version != w.Version || after.Steps[0].Status != "pending" || after.Status != "active" {
			t.Errorf("refused generic calls changed the workflow: %+v", after)
		}
		f.checkRollup(t)
	})
}

// Analytics count only what the caller reaches: a clinical_admin reaches
// every patient but one whose consent denies the purpose, and that
// patient's workflows are taken away from the day's sum (the rollup's
// patient cells), leaving the rest as they were.
func TestClinicalAnalyticsLeaveOutPatientsOutOfReach(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newClinicalFixture(t, db)
		admin := f.principal(t, "ca-1", auth.ClinicalAdmin, "")
		for i, p := range []string{ownPatient, otherPatient, otherPatient} {
			body := map[string]any{"type": []string{"admission", "discharge", "procedure"}[i], "patient": "Patient/" + p, "provider": "Practitioner/" + clinicalDoctor}
			must[workflowJSON](t, f.call(t, admin, "POST", clinicalWorkflow, body), http.StatusCreated)
		}
		a := must[clinical.Analytics](t, f.call(t, admin, "GET", "/api/v1/clinical-workflows/analytics", nil), http.StatusOK)
		if a.Total != 3 || len(a.ByType) != 3 || !slices.ContainsFunc(a.LongestWaits, func(w clinical.StepWait) bool { return w.Code == "discharge_teaching" }) {
			t.Fatalf("analytics of every patient: %+v", a)
		}
		f.setConsent(t, otherPatient, "operations=deny")
		a = must[clinical.Analytics](t, f.call(t, admin, "GET", "/api/v1/clinical-workflows/analytics", nil), http.StatusOK)
		if a.Total != 1 || len(a.ByType) != 1 || a.ByType[0].Key != "admission" || len(a.PerDay) != 1 || a.PerDay[0].Created != 1 {
			t.Errorf("analytics without the patient who denies operations: %+v", a)
		}
		for _, w := range a.LongestWaits {
			if strings.HasPrefix(w.Code, "discharge_") || strings.Contains(w.Code, "procedure") {
				t.Errorf("a step of the excepted patient's workflows is counted: %+v", w)
			}
		}
		f.checkRollup(t)
	})
}

// createdPerDay is the number of workflows an analytics answer counts as
// created, summed over its days.
func createdPerDay(a clinical.Analytics) int {
	n := 0
	for _, d := range a.PerDay {
		n += d.Created
	}
	return n
}
