package record

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/fhir"
)

type capView struct {
	ResourceType string `json:"resourceType"`
	Rest         []struct {
		Security *struct {
			Service []struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"service"`
			Description string `json:"description"`
		} `json:"security"`
		Resource []struct {
			Type        string `json:"type"`
			Interaction []struct {
				Code string `json:"code"`
			} `json:"interaction"`
			UpdateCreate      bool   `json:"updateCreate"`
			ConditionalCreate bool   `json:"conditionalCreate"`
			ConditionalDelete string `json:"conditionalDelete"`
			SearchParam       []struct {
				Name, Type string
			} `json:"searchParam"`
		} `json:"resource"`
	} `json:"rest"`
}

func readCap(t *testing.T, raw []byte) capView {
	t.Helper()
	if is := fhir.ValidateType(raw, "CapabilityStatement"); is.HasErrors() {
		t.Fatalf("the CapabilityStatement is not valid R4: %+v", is)
	}
	var c capView
	if err := json.Unmarshal(raw, &c); err != nil || len(c.Rest) != 1 {
		t.Fatalf("decode: %v", err)
	}
	return c
}

// With a policy's grants the statement lists only the types and
// interactions some role can use, says how to authenticate, and gives a
// blind-indexed date parameter its spec type.
func TestCapabilityStatementFollowsTheGrants(t *testing.T) {
	raw := CapabilityStatementFor("test", time.Unix(0, 0), CapabilityOptions{
		Grants: map[string][]string{
			"Patient": {"read", "search"},
			"Claim":   {"read", "search", "create", "update", "delete"},
		},
		Security: "Bearer tokens from /api/v1/auth/token or the OIDC provider.",
	})
	c := readCap(t, raw)
	rest := c.Rest[0]
	if rest.Security == nil || rest.Security.Description == "" || len(rest.Security.Service) != 1 || rest.Security.Service[0].Coding[0].Code != "OAuth" {
		t.Fatalf("security %+v", rest.Security)
	}
	byType := map[string]int{}
	for i, r := range rest.Resource {
		byType[r.Type] = i
	}
	if len(rest.Resource) != 2 {
		t.Fatalf("listed %v, want Patient and Claim only", byType)
	}
	codes := func(typ string) []string {
		var out []string
		for _, in := range rest.Resource[byType[typ]].Interaction {
			out = append(out, in.Code)
		}
		slices.Sort(out)
		return out
	}
	if got := codes("Patient"); !slices.Equal(got, []string{"history-instance", "history-type", "read", "search-type", "vread"}) {
		t.Fatalf("Patient interactions %v", got)
	}
	p := rest.Resource[byType["Patient"]]
	if p.UpdateCreate || p.ConditionalCreate || p.ConditionalDelete != "not-supported" {
		t.Fatalf("Patient flags %+v", p)
	}
	cl := rest.Resource[byType["Claim"]]
	if !slices.Contains(codes("Claim"), "delete") || !cl.UpdateCreate || cl.ConditionalDelete != "single" {
		t.Fatalf("Claim %+v", cl)
	}
	for _, sp := range p.SearchParam {
		if sp.Name == "birthdate" && sp.Type != "date" {
			t.Fatalf("Patient birthdate is typed %s; the spec says date", sp.Type)
		}
	}

	// Without grants: every R4 type the record can store, all interactions.
	all := readCap(t, CapabilityStatement("test", time.Unix(0, 0)))
	if n := len(all.Rest[0].Resource); n < 140 {
		t.Fatalf("the unrestricted statement lists %d types", n)
	}
}

// The statement tells a client which token parameters hold blind clinical
// codes, and which stay plain, per parameter.
func TestCapabilityStatementNamesBlindCodes(t *testing.T) {
	var c struct {
		Rest []struct {
			Resource []struct {
				Type        string `json:"type"`
				SearchParam []struct {
					Name, Documentation string
				} `json:"searchParam"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(CapabilityStatement("test", time.Unix(0, 0)), &c); err != nil {
		t.Fatal(err)
	}
	doc := map[string]string{}
	for _, r := range c.Rest[0].Resource {
		for _, p := range r.SearchParam {
			doc[r.Type+"."+p.Name] = p.Documentation
		}
	}
	for _, blind := range []string{"Condition.code", "Observation.code", "Observation.value-concept", "Procedure.reason-code", "Encounter.type"} {
		if d := doc[blind]; !strings.Contains(d, "clinical code") || !strings.Contains(d, "exact code") || !strings.Contains(d, ":below") {
			t.Errorf("%s documentation %q does not say it is a blind clinical code, exact match only", blind, d)
		}
	}
	for _, plain := range []string{"Observation.category", "Condition.clinical-status", "Encounter.class"} {
		if d := doc[plain]; !strings.HasPrefix(d, "Plain index") {
			t.Errorf("%s documentation %q, want a plain index", plain, d)
		}
	}
}
