package auth_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
)

// A policy under which some role can write records that no role can read
// back is refused at load, naming the role, the type and the scope
// (issue #9: no write-only records).
func TestPolicyRefusesWriteOnlyTypes(t *testing.T) {
	t.Parallel()
	roles := func(d map[string]any) map[string]any { return d["roles"].(map[string]any) }
	rule := func(resources []any, actions []any, patients string, purposes ...any) map[string]any {
		return map[string]any{"resources": resources, "actions": actions, "fields": []any{"*"}, "patients": patients, "purposes": purposes}
	}
	cases := []struct {
		name   string
		change func(doc map[string]any)
		want   string
	}{
		{"billing and integration no longer read PaymentNotices of no patient", func(d map[string]any) {
			for _, role := range []string{"billing", "integration"} {
				rp := roles(d)[role].(map[string]any)
				var kept []any
				for _, r := range rp["rules"].([]any) {
					r := r.(map[string]any)
					if r["patients"] == "none" && slices.Contains(r["resources"].([]any), any("PaymentNotice")) {
						continue
					}
					kept = append(kept, r)
				}
				rp["rules"] = kept
			}
			// A none rule that writes them without reading.
			rp := roles(d)["billing"].(map[string]any)
			rp["rules"] = append(rp["rules"].([]any), rule([]any{"PaymentNotice"}, []any{"create"}, "none", "payment"))
		}, "roles.billing: PaymentNotice records that name no patient can be written (patients none) but no role's rule reads them"},
		{"a role creates SupplyRequests of patients nobody reads", func(d map[string]any) {
			rp := roles(d)["auditor"].(map[string]any)
			rp["rules"] = append(rp["rules"].([]any), rule([]any{"SupplyRequest"}, []any{"create", "search"}, "any", "operations"))
		}, "roles.auditor: SupplyRequest records of patients can be written (patients any) but no role's rule reads them"},
		{"an update alone writes too", func(d map[string]any) {
			rp := roles(d)["admin"].(map[string]any)
			rp["rules"] = append(rp["rules"].([]any), rule([]any{"Schedule"}, []any{"update"}, "none", "operations"))
		}, "roles.admin: Schedule records that name no patient can be written"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := auth.ParsePolicy(mutate(t, c.change))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
	// A reader in the same scope, of any role, makes the policy whole again.
	ok := mutate(t, func(d map[string]any) {
		rp := roles(d)["admin"].(map[string]any)
		rp["rules"] = append(rp["rules"].([]any), rule([]any{"Schedule"}, []any{"update"}, "none", "operations"))
		rp = roles(d)["clinical_admin"].(map[string]any)
		rp["rules"] = append(rp["rules"].([]any), rule([]any{"Schedule"}, []any{"read"}, "none", "operations"))
	})
	if _, err := auth.ParsePolicy(ok); err != nil {
		t.Fatalf("a written type with a reader: %v", err)
	}
}

// The served FHIR types are those some rule grants an interaction on; an
// R4 type no rule names, a careflow API record and a non-resource are not
// served. Every type of the default policy's rules that FHIR knows is.
func TestPolicyServes(t *testing.T) {
	t.Parallel()
	p := auth.DefaultPolicy()
	for _, typ := range []string{"Patient", "Observation", "Bundle", "MessageHeader", "Binary", "Composition", "PaymentNotice",
		"ExplanationOfBenefit", "HealthcareService", "Group", "Flag", "RiskAssessment", "VisionPrescription", "AuditEvent", "CareTeam"} {
		if !p.Serves(typ) {
			t.Errorf("%s is not served", typ)
		}
	}
	for _, typ := range []string{"SubstanceSpecification", "TestReport", "Parameters", "Money", "WorkflowRun", "User", "Spaceship", ""} {
		if p.Serves(typ) {
			t.Errorf("%s is served", typ)
		}
	}
	served := p.ServedTypes()
	if !slices.IsSorted(served) || !slices.Contains(served, "Bundle") || slices.Contains(served, "WorkflowRun") {
		t.Fatalf("ServedTypes %v", served)
	}
	for _, typ := range served {
		if !p.Serves(typ) {
			t.Fatalf("ServedTypes lists %s, which is not served", typ)
		}
	}
	// Without any rule on a type, it is no longer served.
	less, err := auth.ParsePolicy(mutate(t, func(d map[string]any) {
		rp := d["roles"].(map[string]any)["integration"].(map[string]any)
		for _, r := range rp["rules"].([]any) {
			r := r.(map[string]any)
			r["resources"] = slices.DeleteFunc(r["resources"].([]any), func(x any) bool { return x == "Binary" })
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if less.Serves("Binary") {
		t.Fatal("Binary is served with no rule naming it")
	}
}
