package auth_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/careflow/careflow/internal/auth"
)

// FuzzParsePolicy: a policy document either fails to load or loads into a
// policy that decides without panicking and never lets an unknown role
// through.
func FuzzParsePolicy(f *testing.F) {
	f.Add(auth.DefaultPolicyJSON())
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"roles":{"nurse":{"principals":["people"],"default_purpose":"treatment","rules":[{"resources":["Patient"],"actions":["read"],"fields":["*"],"patients":"any","purposes":["treatment"]}]}}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := auth.ParsePolicy(doc)
		if err != nil {
			return
		}
		if p.DefaultConsent(auth.PurposeResearch) != auth.ConsentDeny {
			t.Fatal("a loaded policy presumes research consent")
		}
		az := auth.NewAuthorizer(p, &memRelations{}, &memConsents{}, nil)
		for _, role := range append(auth.Roles(), "surgeon") {
			d := az.Decide(context.Background(), user(role), auth.Request{Action: auth.ActionRead, ResourceType: "Patient", PatientID: "p"})
			if role == "surgeon" && d.Allowed {
				t.Fatal("an unknown role was allowed")
			}
		}
	})
}

// FuzzRedact: redaction of any input either fails or yields a JSON object
// holding only visible elements.
func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","id":"p","text":{"div":"x"},"name":[{"family":"A"}],"_name":{}}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"\u0074ext":"escaped key"}`))
	p := auth.DefaultPolicy()
	fields := []string{"name", "gender"}
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, err := p.RedactFields(fields, doc)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("redacted %q to invalid JSON %q: %v", doc, out, err)
		}
		for k := range m {
			switch k {
			case "resourceType", "id", "meta", "name", "_name", "gender", "_gender":
			default:
				t.Fatalf("redacted %q kept %q", doc, k)
			}
		}
	})
}
