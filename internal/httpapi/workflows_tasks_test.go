package httpapi

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The task rules through the real server: who may be handed a task, claim
// it and complete it is the engine's rule (the task's role, held now), on
// top of the access policy; and a run's input may reference only records of
// the run's patient.

const testAccountPassword = "a long enough passphrase"

// account makes an enabled local account of a role, registers it with the
// test authenticator as a member of care team A, and returns its id: the id
// the engine's Staff looks up when a task is handed to it.
func (f *wfFixture) account(t *testing.T, username string, role auth.Role) string {
	t.Helper()
	u, err := f.deps.accounts.AddUser(context.Background(), username, testAccountPassword, role)
	if err != nil {
		t.Fatalf("add user %s: %v", username, err)
	}
	return f.principal(t, u.ID, role, "")
}

// setRole changes an account's role and the role its requests authenticate
// as: what the session check makes of a user whose role was changed (the
// old token is refused; the next one names the new role).
func (f *wfFixture) setRole(t *testing.T, username, id string, role auth.Role) {
	t.Helper()
	if err := f.deps.accounts.SetRole(context.Background(), username, role); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := *f.principals[id]
	p.Role = role
	f.principals[id] = &p
}

// encounter stores an Encounter of patient in the record and returns its
// reference.
func (f *wfFixture) encounter(t *testing.T, patient string) string {
	t.Helper()
	rec, _, err := f.deps.rec.Create(context.Background(), nil, "Encounter",
		[]byte(`{"resourceType":"Encounter","status":"in-progress","class":{"code":"IMP"},"subject":{"reference":"Patient/`+patient+`"}}`), "")
	if err != nil {
		t.Fatalf("create encounter: %v", err)
	}
	return "Encounter/" + rec.ID
}

// taskBody is the body of a claim or a completion (a sign-off) of a task
// at version.
func taskBody(op string, version int64) map[string]any {
	if op == "complete" {
		return map[string]any{"version": version, "decision": clinical.DischargeSignOff}
	}
	return map[string]any{"version": version}
}

// startSignOff starts a discharge sign-off of ownPatient through the API,
// as who, and returns its task.
func (f *wfFixture) startSignOff(t *testing.T, who string) *engine.Task {
	t.Helper()
	run := must[engine.Run](t, f.call(t, who, "POST", "/api/v1/workflow-runs", map[string]any{
		"definition": clinical.DischargeSignOffDefinition, "patient_id": ownPatient,
		"input": map[string]any{"encounter": f.encounter(t, ownPatient)}}), 201)
	return f.taskOf(t, run.ID)
}

// The reproduction of finding 4: a clinical admin may manage a discharge
// sign-off (reassign its task) but never decide it. Handing the task to
// itself, to a nurse, to a billing clerk, to a disabled or unknown account,
// or moving it to another role is refused; claiming or completing it is
// refused; handing it to another physician works, and that physician signs
// off. A physician whose role is changed to nurse loses the task they held.
func TestDischargeSignOffIsAPhysiciansDecision(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		ctx := context.Background()
		doc := f.account(t, "dr.amal", auth.Physician)
		colleague := f.account(t, "dr.omar", auth.Physician)
		ops := f.account(t, "ops.sara", auth.ClinicalAdmin)
		nurse := f.account(t, "rn.lina", auth.Nurse)
		clerk := f.account(t, "bill.noor", auth.Billing)
		gone := f.account(t, "dr.gone", auth.Physician)
		if err := f.deps.accounts.DisableUser(ctx, "dr.gone"); err != nil {
			t.Fatal(err)
		}

		task := f.startSignOff(t, doc)
		path := "/api/v1/tasks/" + task.ID
		reassign := func(version int64, body map[string]any) authzResponse {
			body["version"] = version
			return f.call(t, ops, "POST", path+"/reassign", body)
		}

		// Every account that may not take the task gets the same answer,
		// naming the field and no more: no account-existence oracle.
		var details []string
		for name, user := range map[string]string{"itself": ops, "a nurse": nurse, "a billing clerk": clerk,
			"a disabled physician": gone, "no account": uuid.NewString()} {
			p := problemOf(t, reassign(task.RowVersion, map[string]any{"user": user}), 422)
			if p.Field != "user" {
				t.Errorf("reassign to %s: %+v", name, p)
			}
			details = append(details, p.Detail)
		}
		for _, d := range details[1:] {
			if d != details[0] {
				t.Errorf("reassignment refusals differ: %q vs %q", d, details[0])
			}
		}
		if p := problemOf(t, reassign(task.RowVersion, map[string]any{"role": "clinical_admin", "user": ops}), 422); p.Field != "role" {
			t.Errorf("moving the task to the admin's role: %+v", p)
		}
		if p := problemOf(t, reassign(task.RowVersion, map[string]any{"role": "nurse"}), 422); p.Field != "role" {
			t.Errorf("moving the task to nurses: %+v", p)
		}
		cur, err := f.eng.GetTask(ctx, task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cur.RowVersion != task.RowVersion || cur.Role != "physician" || cur.Assignee != "" {
			t.Fatalf("a refused reassignment changed the task: %+v", cur)
		}

		// Neither claiming nor completing is the admin's.
		for _, op := range []string{"claim", "complete"} {
			p := problemOf(t, f.call(t, ops, "POST", path+"/"+op, taskBody(op, task.RowVersion)), 403)
			if !strings.Contains(p.Detail, "another role") {
				t.Errorf("%s by the admin: %+v", op, p)
			}
		}

		// Handed to another physician, who signs off.
		moved := must[engine.Task](t, reassign(task.RowVersion, map[string]any{"user": colleague}), 200)
		if moved.Assignee != colleague || moved.Role != "physician" || moved.Status != engine.TaskOpen {
			t.Fatalf("reassigned %+v", moved)
		}
		problemOf(t, f.call(t, doc, "POST", path+"/complete", map[string]any{"version": moved.RowVersion, "decision": clinical.DischargeSignOff}), 403)
		done := must[engine.Task](t, f.call(t, colleague, "POST", path+"/complete",
			map[string]any{"version": moved.RowVersion, "decision": clinical.DischargeSignOff}), 200)
		if done.CompletedBy != colleague || done.Status != engine.TaskCompleted {
			t.Fatalf("completed %+v", done)
		}
		run := f.waitRun(t, done.RunID, "to complete", func(r *engine.Run) bool { return r.Status == engine.StatusCompleted })
		if out := string(run.Outputs["record"]); !strings.Contains(out, `"signed_off"`) || !strings.Contains(out, colleague) {
			t.Fatalf("recorded outcome %s", out)
		}

		// A physician claims a second sign-off, then becomes a nurse: the
		// claim does not stand in for the role.
		second := f.startSignOff(t, doc)
		path = "/api/v1/tasks/" + second.ID
		claimed := must[engine.Task](t, f.call(t, doc, "POST", path+"/claim", map[string]any{"version": second.RowVersion}), 200)
		f.setRole(t, "dr.amal", doc, auth.Nurse)
		for _, op := range []string{"claim", "complete"} {
			p := problemOf(t, f.call(t, doc, "POST", path+"/"+op, taskBody(op, claimed.RowVersion)), 403)
			if !strings.Contains(p.Detail, "another role") {
				t.Errorf("%s by the former physician: %+v", op, p)
			}
		}
		if cur, err := f.eng.GetTask(ctx, second.ID); err != nil || cur.Status != engine.TaskClaimed {
			t.Fatalf("task after the refused completion: %+v %v", cur, err)
		}
	})
}

// A discharge sign-off's encounter must be the run's patient's: another
// patient's encounter and one that does not exist get the same 422 naming
// input.encounter (never the value), and no run is made; the patient's own
// encounter starts the run.
func TestDischargeSignOffEncounterIsThePatients(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		doc := f.account(t, "dr.amal", auth.Physician)
		start := func(encounter string) authzResponse {
			return f.call(t, doc, "POST", "/api/v1/workflow-runs", map[string]any{
				"definition": clinical.DischargeSignOffDefinition, "patient_id": ownPatient,
				"input": map[string]any{"encounter": encounter}})
		}
		theirs := f.encounter(t, otherPatient)
		missing := "Encounter/" + uuid.NewString()
		deleted := f.encounter(t, ownPatient)
		if err := f.deps.rec.Delete(context.Background(), nil, "Encounter", strings.TrimPrefix(deleted, "Encounter/")); err != nil {
			t.Fatal(err)
		}
		var answers []Problem
		for _, ref := range []string{theirs, missing, deleted} {
			resp := start(ref)
			p := problemOf(t, resp, 422)
			if p.Field != "input.encounter" || strings.Contains(string(resp.body), strings.TrimPrefix(ref, "Encounter/")) {
				t.Errorf("start with %s: %s", ref, resp.body)
			}
			answers = append(answers, p)
		}
		for _, p := range answers[1:] {
			if p.Detail != answers[0].Detail || p.Type != answers[0].Type {
				t.Errorf("another patient's encounter and a missing one are told apart: %+v vs %+v", p, answers[0])
			}
		}
		runs, err := f.eng.ListRuns(context.Background(), engine.RunFilter{Definition: clinical.DischargeSignOffDefinition})
		if err != nil || len(runs) != 0 {
			t.Fatalf("refused starts left runs: %d %v", len(runs), err)
		}
		run := must[engine.Run](t, start(f.encounter(t, ownPatient)), 201)
		if run.PatientID != ownPatient {
			t.Fatalf("run %+v", run)
		}
	})
}
