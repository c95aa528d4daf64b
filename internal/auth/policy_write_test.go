package auth_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
)

// A create or update is allowed only when the allowing rule's fields cover
// every element the body sets; the denial names the element.
func TestDecideChecksTheElementsAWriteSets(t *testing.T) {
	t.Parallel()
	p := auth.DefaultPolicy()
	a := auth.NewAuthorizer(p, &memRelations{}, &memConsents{}, func() time.Time { return policyNow })
	ctx := context.Background()
	write := func(role auth.Role, action auth.Action, elements ...string) auth.Decision {
		return a.Decide(ctx, user(role), auth.Request{Action: action, ResourceType: "Patient", PatientID: "p1", Elements: elements})
	}
	cases := []struct {
		name     string
		role     auth.Role
		action   auth.Action
		elements []string
		field    string // "" when allowed
	}{
		{"clinical_admin updates demographics", auth.ClinicalAdmin, auth.ActionUpdate, []string{"meta", "name", "gender"}, ""},
		{"clinical_admin may not set the narrative", auth.ClinicalAdmin, auth.ActionUpdate, []string{"name", "text"}, "text"},
		{"clinical_admin may not set the deceased flag", auth.ClinicalAdmin, auth.ActionUpdate, []string{"deceasedBoolean", "name"}, "deceasedBoolean"},
		{"clinical_admin may not create with extensions", auth.ClinicalAdmin, auth.ActionCreate, []string{"extension", "name"}, "extension"},
		{"integration's every-field rule writes anything", auth.Integration, auth.ActionUpdate, []string{"text", "extension", "deceasedBoolean"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d auth.Decision
			if c.role == auth.Integration {
				d = a.Decide(ctx, client(), auth.Request{Action: c.action, ResourceType: "Patient", PatientID: "p1", Elements: c.elements})
			} else {
				d = write(c.role, c.action, c.elements...)
			}
			if c.field == "" {
				if !d.Allowed {
					t.Fatalf("denied (%s), want allowed", d.Reason)
				}
				return
			}
			if d.Allowed || d.Reason != auth.ReasonFieldNotWritable || d.Field != c.field {
				t.Fatalf("decision %+v, want field_not_writable on %s", d, c.field)
			}
		})
	}
	// A read names no elements and is decided as before.
	if d := a.Decide(ctx, user(auth.ClinicalAdmin), auth.Request{Action: auth.ActionRead, ResourceType: "Patient", PatientID: "p1", Elements: []string{"text"}}); !d.Allowed {
		t.Fatalf("read denied (%s)", d.Reason)
	}
}

// A rule whose fields do not cover the body does not end the decision:
// another rule of the role that covers it allows the write, with its fields.
func TestDecideTriesTheNextRuleForTheFields(t *testing.T) {
	t.Parallel()
	p, err := auth.ParsePolicy(mutate(t, func(d map[string]any) {
		role := d["roles"].(map[string]any)["clinical_admin"].(map[string]any)
		role["rules"] = append(role["rules"].([]any), map[string]any{
			"resources": []any{"Patient"}, "actions": []any{"update"}, "fields": []any{"name", "text"},
			"patients": "any", "purposes": []any{"operations"},
		})
	}))
	if err != nil {
		t.Fatal(err)
	}
	a := auth.NewAuthorizer(p, &memRelations{}, &memConsents{}, func() time.Time { return policyNow })
	d := a.Decide(context.Background(), user(auth.ClinicalAdmin), auth.Request{Action: auth.ActionUpdate, ResourceType: "Patient", PatientID: "p1", Elements: []string{"name", "text"}})
	if !d.Allowed || !slices.Equal(d.Fields, []string{"name", "text"}) {
		t.Fatalf("decision %+v, want allowed by the second rule", d)
	}
}

func TestWritableFieldsAddTheAlwaysVisibleOnes(t *testing.T) {
	t.Parallel()
	p := auth.DefaultPolicy()
	if got := p.WritableFields(nil); got != nil {
		t.Fatalf("every field: %v, want nil", got)
	}
	got := p.WritableFields([]string{"name", "gender"})
	if want := []string{"gender", "id", "meta", "name", "resourceType"}; !slices.Equal(got, want) {
		t.Fatalf("WritableFields = %v, want %v", got, want)
	}
}
