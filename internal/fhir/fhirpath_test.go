package fhir

import (
	"fmt"
	"testing"
)

func TestFHIRPathSubset(t *testing.T) {
	t.Parallel()
	resource := `{"resourceType":"Questionnaire","status":"draft","item":[
		{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"boolean","answerOption":[{"valueString":"a"}],"_text":{"id":"t"}}]},
		{"linkId":"2","type":"display","text":"hi"}],"url":"http://e.org/q","version":"2.10"}`
	v, err := parseJSON([]byte(resource))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ expr, want string }{
		{"item.count()", "2"},
		{"item.linkId", "1,2"},
		{"item.where(type = 'group').item.linkId", "1.1"},
		{"descendants().linkId.isDistinct()", "true"},
		{"item.all(linkId.exists())", "true"},
		{"item.select(type)", "group,display"},
		{"item.first().item.answerOption.value", "a"},
		{"item.first().item.answerOption.value is string", "true"},
		{"item.first().item.text.exists()", "true"},
		{"item.first().item.text.hasValue()", "false"},
		{"status = 'draft' and url.startsWith('http:')", "true"},
		{"status in ('active' | 'retired')", "false"},
		{"(item.count() + 1) > 2", "true"},
		{"version.matches('^[0-9.]+$')", "true"},
		{"missing.empty() implies missing.exists()", "false"},
		{"missing.exists() and true", "false"},
		{"missing = 1 and true", "[]"},
		{"missing.exists() implies false", "true"},
		{"true xor missing.exists()", "true"},
		{"Questionnaire.status", "draft"},
		{"iif(item.exists(), 'y', 'n')", "y"},
		{"item.linkId.combine(url).count()", "3"},
		{"item.linkId.intersect('2' | '3')", "2"},
		{"'a' & missing & 'b'", "ab"},
		{"item[1].linkId", "2"},
		{"%resource.status = %context.status", "true"},
	} {
		n, err := parseFHIRPath(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		focus := fpCollection{{v: &v}}
		got, err := n.eval(&fpContext{resource: &v, context: focus}, focus)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if s := renderCollection(got); s != tc.want {
			t.Errorf("%s = %s, want %s", tc.expr, s, tc.want)
		}
	}
	for _, bad := range []string{"item.resolve()", "where(", "'open"} {
		if _, err := parseFHIRPath(bad); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

func renderCollection(c fpCollection) string {
	if len(c) == 0 {
		return "[]"
	}
	s := ""
	for i, it := range c {
		if i > 0 {
			s += ","
		}
		switch it.v.kind {
		case jsonBool:
			s += fmt.Sprint(it.v.b)
		case jsonString, jsonNumber:
			s += it.v.text
		default:
			s += "{...}"
		}
	}
	return s
}

// Invariants evaluated through the FHIRPath subset, on resource types that
// have no hand-written checks.
func TestFHIRPathInvariants(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		{"que-1: a group item has items", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group"}]}`, []string{"invariant@Questionnaire.item[0]"}},
		{"que-1 holds in nested items", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"2","type":"group"}]}]}`, []string{"invariant@Questionnaire.item[0].item[0]"}},
		{"que-2: linkIds are unique across the questionnaire", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"string"},{"linkId":"1","type":"string"}]}`, []string{"invariant@Questionnaire"}},
		{"que-7: an exists condition answers with a boolean", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"string","enableWhen":[{"question":"0","operator":"exists","answerString":"x"}]}]}`, []string{"invariant@Questionnaire.item[0].enableWhen[0]"}},
		{"a valid questionnaire passes every rule", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"2","type":"boolean","enableWhen":[{"question":"0","operator":"exists","answerBoolean":true}]}]}]}`, nil},
		{"app-3: an appointment has start and end unless proposed", `{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Patient/1"},"status":"accepted"}]}`, []string{"invariant@Appointment"}},
		{"lst-1: an emptyReason only on an empty list", `{"resourceType":"List","status":"current","mode":"working","emptyReason":{"text":"x"},"entry":[{"item":{"reference":"Patient/1"}}]}`, []string{"invariant@List"}},
		{"vsd-2: concepts need a system", `{"resourceType":"ValueSet","status":"draft","compose":{"include":[{"concept":[{"code":"a"}],"valueSet":["http://e.org/vs"]}]}}`, []string{"invariant@ValueSet.compose.include[0]"}},
		{"sdf-3: snapshot elements carry cardinalities", `{"resourceType":"StructureDefinition","url":"http://e.org/sd","name":"n","status":"draft","kind":"resource","abstract":true,"type":"Patient","snapshot":{"element":[{"id":"Patient","path":"Patient","definition":"d","min":0}]}}`, []string{"invariant@StructureDefinition.snapshot", "invariant@StructureDefinition.snapshot"}}, // sdf-3 and sdf-8b
	})
}
