package record

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// claimWith is a valid R4 Claim billing one diagnosis and one item.
func claimWith(diagnosis, item string) string {
	return fmt.Sprintf(`{"resourceType":"Claim","status":"active",
"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},
"use":"claim","patient":{"reference":"Patient/p1"},"created":"2026-03-02",
"billablePeriod":{"start":"2026-03-01"},
"provider":{"reference":"Organization/o1"},
"priority":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/processpriority","code":"normal"}]},
"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/c1"}}],
"diagnosis":[{"sequence":1,"diagnosisCodeableConcept":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":%q}]}}],
"item":[{"sequence":1,"productOrService":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":%q}]}}]}`, diagnosis, item)
}

func conditionWith(system, code string) string {
	return fmt.Sprintf(`{"resourceType":"Condition","subject":{"reference":"Patient/p1"},
"onsetDateTime":"2026-02-10","code":{"coding":[{"system":%q,"code":%q}]}}`, system, code)
}

// issueAt returns the expressions of a rejected write's issues.
func issueExpressions(t *testing.T, err error) []string {
	t.Helper()
	var ie *IssuesError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v carries no validation issues", err)
	}
	var out []string
	for _, is := range ie.Issues {
		if is.Severity == "error" {
			out = append(out, strings.Join(is.Expression, ","))
		}
	}
	return out
}

// Claims and Conditions are checked against the terminology service on
// every write path: create, update, conditional update, batch and
// transaction entries. Other code systems pass untouched.
func TestWritesCheckClaimAndConditionCodes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)

		// Billable starter-set diagnosis and a well-formed CPT code.
		if _, _, err := s.Create(ctx, nil, "Claim", []byte(claimWith("E11.9", "99213")), ""); err != nil {
			t.Fatalf("valid claim: %v", err)
		}
		// A header code cannot be billed.
		_, _, err := s.Create(ctx, nil, "Claim", []byte(claimWith("E11", "99213")), "")
		if !errs.Is(err, errs.Unprocessable) {
			t.Fatalf("header-code claim: %v, want unprocessable", err)
		}
		if got := issueExpressions(t, err); len(got) != 1 || got[0] != "Claim.diagnosis[0].diagnosisCodeableConcept.coding[0].code" {
			t.Fatalf("header-code claim issues at %v", got)
		}
		// A malformed CPT code on an update (create-on-update) is refused too.
		bad := strings.Replace(claimWith("E11.9", "9921"), `"resourceType":"Claim"`, `"resourceType":"Claim","id":"c-bad"`, 1)
		_, _, err = s.Update(ctx, nil, "Claim", "c-bad", []byte(bad), "")
		if got := issueExpressions(t, err); len(got) != 1 || got[0] != "Claim.item[0].productOrService.coding[0].code" {
			t.Fatalf("malformed CPT issues at %v (%v)", got, err)
		}
		if _, err := s.Read(ctx, nil, "Claim", "c-bad"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("a refused update left a record: %v", err)
		}

		// Conditions: a header code is a (vague) diagnosis and passes; a
		// SNOMED CT id with a wrong check digit does not; a local code
		// system is not careflow's to judge.
		if _, _, err := s.Create(ctx, nil, "Condition", []byte(conditionWith("http://hl7.org/fhir/sid/icd-10-cm", "E11")), ""); err != nil {
			t.Fatalf("header-code condition: %v", err)
		}
		if _, _, err := s.Create(ctx, nil, "Condition", []byte(conditionWith("http://snomed.info/sct", "44054006")), ""); err != nil {
			t.Fatalf("valid SNOMED CT condition: %v", err)
		}
		_, _, err = s.ConditionalUpdate(ctx, nil, "Condition", "_id=cond-x", []byte(conditionWith("http://snomed.info/sct", "44054007")), "")
		if got := issueExpressions(t, err); len(got) != 1 || got[0] != "Condition.code.coding[0].code" {
			t.Fatalf("bad check digit issues at %v (%v)", got, err)
		}
		if _, _, err := s.Create(ctx, nil, "Condition", []byte(conditionWith("http://example.org/local-codes", "ANY-THING")), ""); err != nil {
			t.Fatalf("local code system: %v", err)
		}

		// A batch: the bad entry fails alone, its issue names its entry.
		entry := func(body string) string {
			typ := "Claim"
			if strings.Contains(body, `"Condition"`) {
				typ = "Condition"
			}
			return fmt.Sprintf(`{"resource":%s,"request":{"method":"POST","url":%q}}`, body, typ)
		}
		batch := fmt.Sprintf(`{"resourceType":"Bundle","type":"batch","entry":[%s,%s]}`,
			entry(claimWith("E11.9", "99213")), entry(claimWith("Z99.999", "99213")))
		res, err := s.ProcessBundle(ctx, nil, []byte(batch))
		if err != nil {
			t.Fatal(err)
		}
		if res.Entries[0].Err != nil || res.Entries[0].Record == nil {
			t.Fatalf("batch entry 0: %+v", res.Entries[0])
		}
		if got := issueExpressions(t, res.Entries[1].Err); len(got) != 1 || got[0] != "Bundle.entry[1].resource.diagnosis[0].diagnosisCodeableConcept.coding[0].code" {
			t.Fatalf("batch entry 1 issues at %v", got)
		}

		// A transaction with one bad code is refused whole.
		count := func() int {
			t.Helper()
			q, err := s.ParseQuery("Condition", url.Values{"_summary": {"count"}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Search(ctx, nil, q)
			if err != nil || res.Total == nil {
				t.Fatalf("count: %v", err)
			}
			return *res.Total
		}
		before := count()
		tx := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[%s,%s]}`,
			entry(conditionWith("http://snomed.info/sct", "44054006")), entry(conditionWith("http://loinc.org", "2345-8")))
		_, err = s.ProcessBundle(ctx, nil, []byte(tx))
		if !errs.Is(err, errs.Unprocessable) {
			t.Fatalf("transaction with a bad LOINC code: %v", err)
		}
		if got := issueExpressions(t, err); len(got) != 1 || got[0] != "Bundle.entry[1].resource.code.coding[0].code" {
			t.Fatalf("transaction issues at %v", got)
		}
		if after := count(); before != after {
			t.Fatalf("a refused transaction wrote: %d Conditions before, %d after", before, after)
		}
	})
}

// A write inside the caller's transaction checks its codes through that
// transaction. On a pool of one connection the transaction holds the only
// one: a check that asked the pool for another would wait until its
// context ended. A workflow step writing a Claim is such a caller, and on
// PostgreSQL enough of them at once used to hold every connection of the
// pool while each waited for one more.
func TestCodesOfAWriteInATransactionAreCheckedThroughIt(t *testing.T) {
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			db := storetest.OpenMaxConns(t, d, 1)
			s := newService(t, db)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := db.Tx(ctx, func(tx store.Tx) error {
				if _, _, err := s.CreateTx(ctx, tx, nil, "Claim", []byte(claimWith("E11.9", "99213")), ""); err != nil {
					return fmt.Errorf("a valid claim: %w", err)
				}
				_, _, err := s.CreateTx(ctx, tx, nil, "Claim", []byte(claimWith("E11", "99213")), "")
				if got := issueExpressions(t, err); len(got) != 1 || got[0] != "Claim.diagnosis[0].diagnosisCodeableConcept.coding[0].code" {
					t.Errorf("a header-code claim in the transaction: issues at %v", got)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
