package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/store/storetest"
)

// careflow import accepts the set of types the API serves, from the same
// access policy (issue #9): a type the policy serves to no role is refused
// as not supported, a record of no patient that no role could read back is
// refused, and what the API serves is stored, records of no patient
// (a PaymentNotice, an organisational Task, a Bundle as received) among
// them. --access-policy is read by import too.
func TestImportAcceptsWhatTheAPIServes(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			env := newImportEnv(t, d)
			lines := strings.Join([]string{
				`{"resourceType":"PaymentNotice","id":"pn-1","status":"active","created":"2026-01-02","payment":{"reference":"PaymentReconciliation/pr-1"},"recipient":{"reference":"Organization/org-1"},"amount":{"value":10,"currency":"SAR"}}`,
				`{"resourceType":"Task","id":"task-org","status":"requested","intent":"order"}`,
				`{"resourceType":"Bundle","id":"msg-1","type":"collection"}`,
				`{"resourceType":"Basic","id":"basic-1","code":{"text":"x"}}`,
				`{"resourceType":"Consent","id":"consent-1","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"text":"x"}],"policyRule":{"text":"x"}}`,
			}, "\n") + "\n"
			file := env.write(t, "mixed.ndjson", []byte(lines))
			code, out, errOut := env.run(t, "import", file)
			if code != 1 {
				t.Fatalf("exit %d, want 1 for the refused lines\n%s%s", code, out, errOut)
			}
			if c := summaryNumber(t, out, "created"); c != 3 {
				t.Fatalf("created %d, want 3:\n%s%s", c, out, errOut)
			}
			for _, want := range []string{
				"Basic is not a resource type this server supports",
				"this Consent names no patient, and the access policy lets no role read a Consent that names none",
			} {
				if !strings.Contains(errOut, want) {
					t.Fatalf("the refusals do not say %q:\n%s", want, errOut)
				}
			}
			db, _ := env.open(t)
			counts := storedCounts(t, db)
			if counts["PaymentNotice"] != 1 || counts["Task"] != 1 || counts["Bundle"] != 1 || counts["Basic"] != 0 || counts["Consent"] != 0 {
				t.Fatalf("stored %v", counts)
			}

			// A policy that no longer serves Bundle: import refuses it too.
			policy := filepath.Join(env.dir, "policy.json")
			b, err := os.ReadFile(filepath.Join("..", "..", "internal", "auth", "policy", "default.json"))
			if err != nil {
				t.Fatal(err)
			}
			b = []byte(strings.ReplaceAll(string(b), `, "Bundle", "MessageHeader", "Binary"]`, `, "MessageHeader", "Binary"]`))
			if err := os.WriteFile(policy, b, 0o600); err != nil {
				t.Fatal(err)
			}
			bundle := env.write(t, "bundle.ndjson", []byte(`{"resourceType":"Bundle","id":"msg-2","type":"collection"}`+"\n"))
			code, out, errOut = env.run(t, "import", "--access-policy", policy, bundle)
			if code == 0 || !strings.Contains(errOut, "Bundle is not a resource type this server supports") {
				t.Fatalf("a Bundle under a policy that does not serve it: exit %d\n%s%s", code, out, errOut)
			}
		})
	}
}
