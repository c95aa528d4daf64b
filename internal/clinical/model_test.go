package clinical

import (
	"slices"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/fhir"
)

// Every template's steps are codes (no free text reaches a task title, a
// plain column or an event), each done by a care role, with a due time.
func TestTemplatesAreCodesForCareRoles(t *testing.T) {
	for _, typ := range Types() {
		steps, ok := templates[typ]
		if typ == TypeCustom {
			if ok {
				t.Errorf("custom has a template")
			}
			continue
		}
		if !ok || len(steps) == 0 {
			t.Fatalf("%s has no template", typ)
		}
		roles := map[string]bool{}
		for _, s := range steps {
			if !codePattern.MatchString(s.Code) || s.Title == "" || s.Due <= 0 || !slices.Contains(stepRoles, s.Role) {
				t.Errorf("%s step %+v", typ, s)
			}
			roles[s.Role] = true
		}
		if !roles["nurse"] || !roles["physician"] {
			t.Errorf("%s is not shared by a nurse and a physician: %v", typ, roles)
		}
	}
	if got := dueIn(2*time.Hour, PriorityEmergency); got != 30*time.Minute {
		t.Errorf("an emergency's 2h step is due in %s", got)
	}
}

// Only the moves the state machine names are allowed.
func TestStepMoves(t *testing.T) {
	all := []StepStatus{StepPending, StepInProgress, StepCompleted, StepSkipped, StepFailed}
	allowed := map[[2]StepStatus]bool{
		{StepPending, StepInProgress}: true, {StepPending, StepSkipped}: true,
		{StepInProgress, StepCompleted}: true, {StepInProgress, StepSkipped}: true, {StepInProgress, StepFailed}: true,
	}
	for _, from := range all {
		for _, to := range all {
			if allowedMove(from, to) != allowed[[2]StepStatus{from, to}] {
				t.Errorf("%s -> %s: %v", from, to, allowedMove(from, to))
			}
		}
	}
}

// The FHIR Tasks of a workflow and its steps, in every state, are valid R4.
func TestFHIRTasksAreValidR4(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	due := now.Add(time.Hour)
	w := &workflowRow{ID: "wf-1", Type: TypeDischarge, Priority: PriorityEmergency, Status: StatusActive, PatientID: "pat-1",
		ProviderID: "dr-1", EncounterID: "enc-1", FHIRTaskID: "task-1", CreatedAt: now, UpdatedAt: now, DueAt: &due}
	for _, status := range []Status{StatusActive, StatusCompleted, StatusCancelled} {
		w.Status = status
		if status != StatusActive {
			w.CompletedAt = &due
		}
		doc, err := workflowTask(w, true)
		if err != nil {
			t.Fatal(err)
		}
		if is := fhir.Validate(doc); is.HasErrors() {
			t.Errorf("workflow Task (%s): %+v\n%s", status, is, doc)
		}
		for _, st := range []StepStatus{StepPending, StepInProgress, StepCompleted, StepSkipped, StepFailed} {
			s := &stepRow{ID: "st-1", Code: "discharge_teaching", Role: "nurse", Status: st, FHIRTaskID: "task-2", DueAt: &due,
				CreatedAt: now, UpdatedAt: now}
			if st != StepPending {
				s.StartedAt, s.StartedBy = &now, "user-1"
			}
			if st.Final() {
				s.FinishedAt, s.FinishedBy = &due, "user-1"
			}
			if st == StepSkipped {
				s.Reason = "patient_declined"
			}
			doc, err := stepTask(w, s)
			if err != nil {
				t.Fatal(err)
			}
			if is := fhir.Validate(doc); is.HasErrors() {
				t.Errorf("step Task (%s, %s): %+v\n%s", status, st, is, doc)
			}
		}
	}
}

func TestSummariseAndCursor(t *testing.T) {
	var h hist
	for _, m := range []float64{10, 1, 5, 3, 8, 2, 9, 4, 7, 6} {
		h.addOne(bucketOf(time.Duration(m*float64(time.Minute))), 1)
	}
	d := summarise(h)
	if d.Count != 10 || d.MedianMinutes != 5 || d.P90Minutes != 9 {
		t.Errorf("summary %+v", d)
	}
	if (summarise(nil) != Durations{}) {
		t.Errorf("summary of nothing")
	}
	w := &workflowRow{ID: "01900000-0000-7000-8000-000000000000", Priority: PriorityUrgent, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	rank, at, id, err := parseCursor(cursorOf(w))
	if err != nil || rank != 1 || !at.Equal(w.CreatedAt) || id != w.ID {
		t.Errorf("cursor round trip: %d %s %s %v", rank, at, id, err)
	}
	for _, bad := range []string{"", "1~x~y", "7~2026-01-01T00:00:00Z~a", "1~2026-01-01T00:00:00Z~a b"} {
		if _, _, _, err := parseCursor(bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}
