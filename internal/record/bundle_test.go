package record

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A conditional reference whose criteria are those of a conditional create
// or update in the same transaction is that entry's resource, whether the
// transaction creates it or finds it stored (Synthea writes patient
// Bundles so, with the practitioner in the same Bundle or an earlier one).
func TestTransactionConditionalReferenceToAnEntry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
 {"resource":{"resourceType":"Patient","generalPractitioner":[{"reference":"Practitioner?identifier=urn:npi|42"}],"managingOrganization":{"reference":"Organization?name=Nile&identifier=urn:org|7"}},"request":{"method":"POST","url":"Patient"}},
 {"resource":{"resourceType":"Practitioner","identifier":[{"system":"urn:npi","value":"42"}]},"request":{"method":"POST","url":"Practitioner","ifNoneExist":"identifier=urn:npi|42"}},
 {"resource":{"resourceType":"Organization","name":"Nile","identifier":[{"system":"urn:org","value":"7"}]},"request":{"method":"PUT","url":"Organization?identifier=urn:org|7&name=Nile"}}
]}`)
		refsOf := func(res *BundleResult) (gp, org, practitioner, organization string) {
			t.Helper()
			var p struct {
				GeneralPractitioner  []struct{ Reference string } `json:"generalPractitioner"`
				ManagingOrganization struct{ Reference string }   `json:"managingOrganization"`
			}
			if err := json.Unmarshal(res.Entries[0].Record.JSON, &p); err != nil || len(p.GeneralPractitioner) != 1 {
				t.Fatalf("patient %s: %v", res.Entries[0].Record.JSON, err)
			}
			return p.GeneralPractitioner[0].Reference, p.ManagingOrganization.Reference, res.Entries[1].Record.Ref(), res.Entries[2].Record.Ref()
		}
		first, err := s.ProcessBundle(ctx, nil, tx)
		if err != nil {
			t.Fatalf("transaction with references to its own conditional entries: %v", err)
		}
		gp, org, practitioner, organization := refsOf(first)
		if gp != practitioner || org != organization || !first.Entries[1].Created || !first.Entries[2].Created {
			t.Fatalf("references %s, %s; want the created %s, %s", gp, org, practitioner, organization)
		}
		// Again: the conditional entries find what the first run stored,
		// and the references follow them.
		second, err := s.ProcessBundle(ctx, nil, tx)
		if err != nil {
			t.Fatal(err)
		}
		gp2, org2, practitioner2, organization2 := refsOf(second)
		if practitioner2 != practitioner || organization2 != organization || gp2 != practitioner || org2 != organization || second.Entries[1].Created {
			t.Fatalf("second run: references %s, %s to %s, %s; want the first run's %s, %s", gp2, org2, practitioner2, organization2, practitioner, organization)
		}
		// Two entries with the same criteria make the reference ambiguous:
		// it is looked up among stored resources as before, and matches none.
		ambiguous := strings.Replace(string(tx), `"url":"Practitioner","ifNoneExist":"identifier=urn:npi|42"}}`,
			`"url":"Practitioner","ifNoneExist":"identifier=urn:npi|43"}},
 {"resource":{"resourceType":"Practitioner","identifier":[{"system":"urn:npi","value":"43"}]},"request":{"method":"POST","url":"Practitioner","ifNoneExist":"identifier=urn:npi|43"}}`, 1)
		ambiguous = strings.Replace(ambiguous, "Practitioner?identifier=urn:npi|42", "Practitioner?identifier=urn:npi|43", 1)
		if _, err := s.ProcessBundle(ctx, nil, []byte(ambiguous)); !errs.Is(err, errs.PreconditionFailed) {
			t.Fatalf("a reference two entries' criteria share: %v, want precondition failed", err)
		}
	})
}

// A refused entry is named once: "entry 1: …" or "entry 1 is …", never
// "entry 1: entry 1: …", in a transaction and in a batch alike.
func TestBundleEntryErrorsNameTheEntryOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		ok := `{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}`
		for _, tc := range []struct{ name, entry string }{
			{"invalid resource", `{"resource":{"resourceType":"Patient","active":"yes"},"request":{"method":"POST","url":"Patient"}}`},
			{"bad request url", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient/1/x/y"}}`},
			{"no request", `{"resource":{"resourceType":"Patient"}}`},
			{"invalid code", `{"resource":{"resourceType":"Condition","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"86406009"}]}},"request":{"method":"POST","url":"Condition"}}`},
		} {
			for _, typ := range []string{"transaction", "batch"} {
				body := `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + ok + `,` + tc.entry + `]}`
				res, err := s.ProcessBundle(ctx, nil, []byte(body))
				if typ == "batch" {
					if err != nil {
						t.Fatalf("%s in a batch: %v", tc.name, err)
					}
					err = res.Entries[1].Err
				}
				if err == nil {
					t.Fatalf("%s in a %s was accepted", tc.name, typ)
				}
				msg := err.Error()
				if e, isE := errs.As(err); isE {
					msg = e.Message
				}
				// A transaction that is not valid FHIR as a whole is refused
				// as the Bundle, its issues naming the element paths.
				if strings.Count(msg, "entry 1") > 1 || strings.Contains(msg, "entry 0") {
					t.Errorf("%s in a %s: %q names entry 1 more than once", tc.name, typ, msg)
				}
			}
		}
	})
}
