package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// staffMap is a Staff of enabled accounts: user id → role. An id it does
// not hold is no account, or a disabled one.
type staffMap map[string]string

func (s staffMap) ActiveRole(_ context.Context, user string) (string, bool, error) {
	role, ok := s[user]
	return role, ok, nil
}

// recordMap is a Records: "Type/id" → patient id of the record.
type recordMap map[string]string

func (m recordMap) PatientOf(_ context.Context, _ store.Querier, typ, id string) (string, bool, error) {
	p, ok := m[typ+"/"+id]
	return p, ok, nil
}

// signOffDef is a physician's decision that escalates to a senior role.
func signOffDef() *Definition {
	return &Definition{Name: "test-signoff", Version: 1, Steps: []Step{
		{Name: "decide", Wait: func(*Input) (Wait, error) {
			return Wait{Task: &TaskSpec{Title: "Decide", Role: "physician", Decisions: []string{"yes", "no"},
				EscalateAfter: time.Hour, EscalateTo: "senior_physician"}}, nil
		}},
	}}
}

func wantKind(t *testing.T, what string, err error, kind errs.Kind, field string) {
	t.Helper()
	e, ok := errs.As(err)
	if !ok || e.Kind != kind || e.Field != field {
		t.Fatalf("%s: %v, want %s in field %q", what, err, kind, field)
	}
}

// Claiming and completing take the task's role, held now: not the
// assignment, not a claim made under another role. Reassignment hands the
// task only to an enabled account that holds its role (one answer for
// every other account), and moves its role only to the escalation role.
func TestTaskRoleIsRequiredToTakeAndDecide(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		staff := staffMap{"doc1": "physician", "doc2": "physician", "admin1": "clinical_admin", "nurse1": "nurse", "senior1": "senior_physician"}
		n := newNode(t, db, nodeOpts{defs: []*Definition{signOffDef()}, staff: staff})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-signoff"})
		if err != nil {
			t.Fatal(err)
		}
		id := waitStatus(t, n.Engine, r.ID, StatusWaiting, 30*time.Second).Wait.TaskID
		admin := Actor{User: "admin1", Roles: []string{"clinical_admin"}}

		_, err = n.ClaimTask(ctx, id, admin, 0)
		wantKind(t, "claim by a clinical admin", err, errs.Forbidden, "")
		_, err = n.CompleteTask(ctx, id, admin, "yes", nil, 0)
		wantKind(t, "completion by a clinical admin", err, errs.Forbidden, "")

		// No account that lacks the role may be handed the task, and the
		// refusals cannot be told apart.
		var first string
		for _, user := range []string{"admin1", "nurse1", "nobody", "senior1"} {
			_, err := n.ReassignTask(ctx, id, "", user, 0)
			wantKind(t, "reassign to "+user, err, errs.Unprocessable, "user")
			if first == "" {
				first = err.Error()
			} else if err.Error() != first {
				t.Fatalf("refusals differ: %q vs %q", err, first)
			}
		}
		_, err = n.ReassignTask(ctx, id, "clinical_admin", "admin1", 0)
		wantKind(t, "move to the admin's role", err, errs.Unprocessable, "role")
		if tk, _ := n.GetTask(ctx, id); tk.Role != "physician" || tk.Assignee != "" || tk.RowVersion != 1 {
			t.Fatalf("refused reassignments changed the task: %+v", tk)
		}

		// Handed to a physician, the task is theirs alone, and still needs
		// the role: an assignee whose role changed is refused.
		tk, err := n.ReassignTask(ctx, id, "", "doc2", 0)
		if err != nil || tk.Assignee != "doc2" || tk.Role != "physician" {
			t.Fatalf("reassign to a physician: %+v %v", tk, err)
		}
		_, err = n.CompleteTask(ctx, id, Actor{User: "doc1", Roles: []string{"physician"}}, "yes", nil, 0)
		wantKind(t, "completion by another physician", err, errs.Forbidden, "")
		_, err = n.ClaimTask(ctx, id, Actor{User: "doc2"}, 0)
		wantKind(t, "claim by the assignee without the role", err, errs.Forbidden, "")
		if tk, err = n.ClaimTask(ctx, id, Actor{User: "doc2", Roles: []string{"physician"}}, 0); err != nil || tk.Status != TaskClaimed {
			t.Fatalf("claim by the assignee: %+v %v", tk, err)
		}
		_, err = n.ClaimTask(ctx, id, Actor{User: "doc2", Roles: []string{"nurse"}}, 0)
		wantKind(t, "claim again after the role changed", err, errs.Forbidden, "")
		_, err = n.CompleteTask(ctx, id, Actor{User: "doc2", Roles: []string{"nurse"}}, "yes", nil, 0)
		wantKind(t, "completion after the role changed", err, errs.Forbidden, "")

		// Moving the task to its escalation role by hand is allowed; then
		// only that role decides.
		if tk, err = n.ReassignTask(ctx, id, "senior_physician", "senior1", 0); err != nil || tk.Role != "senior_physician" || tk.Assignee != "senior1" {
			t.Fatalf("escalate by hand: %+v %v", tk, err)
		}
		_, err = n.CompleteTask(ctx, id, Actor{User: "senior1", Roles: []string{"physician"}}, "yes", nil, 0)
		wantKind(t, "completion without the escalated role", err, errs.Forbidden, "")
		if tk, err = n.CompleteTask(ctx, id, Actor{User: "senior1", Roles: []string{"senior_physician"}}, "yes", nil, 0); err != nil || tk.CompletedBy != "senior1" {
			t.Fatalf("completion by the senior: %+v %v", tk, err)
		}
		waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
	})
}

// Without a Staff the engine cannot tell who holds a role, so it hands a
// task to no user.
func TestReassignToAUserNeedsStaff(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	n := newNode(t, db, nodeOpts{defs: []*Definition{signOffDef()}})
	r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-signoff"})
	if err != nil {
		t.Fatal(err)
	}
	id := waitStatus(t, n.Engine, r.ID, StatusWaiting, 30*time.Second).Wait.TaskID
	_, err = n.ReassignTask(ctx, id, "", "doc1", 0)
	wantKind(t, "reassign without staff", err, errs.Unavailable, "")
}

// referralDef's input names an encounter and, optionally, a condition.
func referralDef() *Definition {
	return &Definition{Name: "test-referral", Version: 1,
		RecordInputs: []RecordInput{{Member: "encounter", Types: []string{"Encounter"}}, {Member: "reason", Types: []string{"Condition", "Observation"}}},
		Steps:        []Step{{Name: "noop", Do: func(context.Context, *StepContext) (Result, error) { return Result{}, nil }}}}
}

// A run's record inputs must be records of the run's patient: another
// patient's, a missing one, one in no compartment and one the starter may
// not read are one 422 naming the member; a malformed reference is a 400.
func TestRecordInputsMustBeTheRunsPatients(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		records := recordMap{"Encounter/e1": "pat-1", "Encounter/e2": "pat-2", "Condition/c1": "pat-1", "Encounter/e0": ""}
		n := newNode(t, db, nodeOpts{defs: []*Definition{referralDef()}, records: records, noStart: true})
		start := func(patient, input string, mayRead func(string) bool) error {
			_, _, err := n.StartRun(ctx, StartOptions{Definition: "test-referral", PatientID: patient, Input: json.RawMessage(input), MayRead: mayRead})
			return err
		}
		var first string
		for _, tc := range []struct {
			name, patient, input string
			mayRead              func(string) bool
			field                string
		}{
			{"another patient's encounter", "pat-1", `{"encounter":"Encounter/e2"}`, nil, "input.encounter"},
			{"a missing encounter", "pat-1", `{"encounter":"Encounter/nope"}`, nil, "input.encounter"},
			{"an encounter of no patient", "pat-1", `{"encounter":"Encounter/e0"}`, nil, "input.encounter"},
			{"an encounter the starter may not read", "pat-1", `{"encounter":"Encounter/e1"}`, func(typ string) bool { return typ != "Encounter" }, "input.encounter"},
			{"a run about no patient", "", `{"encounter":"Encounter/e1"}`, nil, "input.encounter"},
			{"the second member", "pat-1", `{"encounter":"Encounter/e1","reason":"Condition/c2"}`, nil, "input.reason"},
		} {
			err := start(tc.patient, tc.input, tc.mayRead)
			wantKind(t, tc.name, err, errs.Unprocessable, tc.field)
			if tc.field == "input.encounter" {
				if first == "" {
					first = err.Error()
				} else if err.Error() != first {
					t.Fatalf("%s is told apart: %q vs %q", tc.name, err, first)
				}
			}
		}
		wantKind(t, "not a reference", start("pat-1", `{"encounter":"e1"}`, nil), errs.Invalid, "input.encounter")
		wantKind(t, "a reference of another type", start("pat-1", `{"encounter":"Condition/c1"}`, nil), errs.Invalid, "input.encounter")
		wantKind(t, "not a string", start("pat-1", `{"encounter":{"reference":"Encounter/e1"}}`, nil), errs.Invalid, "input.encounter")

		if err := start("pat-1", `{"encounter":"Encounter/e1","reason":"Condition/c1"}`, func(string) bool { return true }); err != nil {
			t.Fatalf("the patient's own records: %v", err)
		}
		if err := start("pat-1", `{"encounter":"Encounter/e1","reason":null}`, nil); err != nil {
			t.Fatalf("an absent optional member: %v", err)
		}
		runs, err := n.ListRuns(ctx, RunFilter{Definition: "test-referral"})
		if err != nil || len(runs) != 2 {
			t.Fatalf("runs %d (%v), want the 2 accepted starts", len(runs), err)
		}
	})
}

// Without Records the engine cannot check a reference, so a definition
// that declares record inputs does not start; a declaration without a
// member or type does not register.
func TestRecordInputsNeedRecords(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	n := newNode(t, db, nodeOpts{defs: []*Definition{referralDef()}, noStart: true})
	_, _, err := n.StartRun(context.Background(), StartOptions{Definition: "test-referral", PatientID: "pat-1", Input: json.RawMessage(`{"encounter":"Encounter/e1"}`)})
	wantKind(t, "start without records", err, errs.Unavailable, "")

	for _, bad := range [][]RecordInput{{{Member: "", Types: []string{"Encounter"}}}, {{Member: "x"}}, {{Member: "x", Types: []string{"A"}}, {Member: "x", Types: []string{"B"}}}} {
		d := referralDef()
		d.RecordInputs = bad
		if err := NewRegistry().Register(d); err == nil {
			t.Errorf("registered record inputs %+v", bad)
		}
	}
}
