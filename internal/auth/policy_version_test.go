package auth_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
)

// dropResources removes the named types from every rule of a policy
// document, and the rules left with none.
func dropResources(doc map[string]any, types ...string) {
	for _, rp := range doc["roles"].(map[string]any) {
		role := rp.(map[string]any)
		var kept []any
		for _, r := range role["rules"].([]any) {
			rule := r.(map[string]any)
			var res []any
			for _, t := range rule["resources"].([]any) {
				if !slices.Contains(types, t.(string)) {
					res = append(res, t)
				}
			}
			if len(res) > 0 {
				rule["resources"] = res
				kept = append(kept, rule)
			}
		}
		role["rules"] = kept
	}
}

// A version 1 policy named the FHIR Task record and the engine's human
// tasks both "Task": such a file is refused, naming the rule and saying
// what to write instead; one that names neither means what it meant and
// loads; WorkflowTask is a version 2 name.
func TestPolicyVersionOneTaskIsRefused(t *testing.T) {
	t.Parallel()
	_, err := auth.ParsePolicy(mutate(t, func(d map[string]any) { d["version"] = 1 }))
	if err == nil || !strings.Contains(err.Error(), "grant `WorkflowTask` for the engine's tasks and `Task` for FHIR Task records only") || !strings.Contains(err.Error(), ".rules[") {
		t.Fatalf("a version 1 policy naming Task: %v", err)
	}
	_, err = auth.ParsePolicy(mutate(t, func(d map[string]any) {
		d["version"] = 1
		dropResources(d, "Task")
	}))
	if err == nil || !strings.Contains(err.Error(), "WorkflowTask needs `version` 2") {
		t.Fatalf("a version 1 policy naming WorkflowTask: %v", err)
	}
	if _, err := auth.ParsePolicy(mutate(t, func(d map[string]any) {
		d["version"] = 1
		dropResources(d, "Task", auth.WorkflowTask)
	})); err != nil {
		t.Fatalf("a version 1 policy naming neither: %v", err)
	}
}

// A grant on FHIR Task is no grant on the engine's tasks, and the other way
// round: in the default policy billing works workflow tasks and reads no
// FHIR Task; a policy that takes the WorkflowTask rules away leaves every
// role its FHIR Task rights and no workflow task.
func TestTaskAndWorkflowTaskAreApart(t *testing.T) {
	t.Parallel()
	rel := &memRelations{}
	cons := &memConsents{}
	def := auth.NewAuthorizer(auth.DefaultPolicy(), rel, cons, nil)
	pol, err := auth.ParsePolicy(mutate(t, func(d map[string]any) { dropResources(d, auth.WorkflowTask) }))
	if err != nil {
		t.Fatal(err)
	}
	noWT := auth.NewAuthorizer(pol, rel, cons, nil)
	type want struct{ task, workflowTask bool }
	for _, c := range []struct {
		name string
		az   *auth.Authorizer
		p    *auth.Principal
		want want
	}{
		{"default: physician", def, user(auth.Physician), want{true, true}},
		{"default: nurse", def, user(auth.Nurse), want{true, true}},
		{"default: clinical_admin", def, user(auth.ClinicalAdmin), want{true, true}},
		{"default: billing", def, user(auth.Billing), want{false, true}},
		{"default: integration", def, client(), want{true, true}},
		{"default: admin", def, user(auth.Admin), want{false, false}},
		{"default: auditor", def, user(auth.Auditor), want{false, false}},
		{"without WorkflowTask: physician", noWT, user(auth.Physician), want{true, false}},
		{"without WorkflowTask: clinical_admin", noWT, user(auth.ClinicalAdmin), want{true, false}},
		{"without WorkflowTask: billing", noWT, user(auth.Billing), want{false, false}},
	} {
		for _, action := range []auth.Action{auth.ActionRead, auth.ActionSearch, auth.ActionUpdate} {
			got := want{
				task:         c.az.DecideType(context.Background(), c.p, auth.Request{Action: action, ResourceType: "Task"}).Allowed,
				workflowTask: c.az.DecideType(context.Background(), c.p, auth.Request{Action: action, ResourceType: auth.WorkflowTask}).Allowed,
			}
			if got != c.want {
				t.Errorf("%s %s: Task %v WorkflowTask %v, want %+v", c.name, action, got.task, got.workflowTask, c.want)
			}
		}
	}
}
