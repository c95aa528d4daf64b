package record

import (
	"context"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A conditional reference outside a transaction is refused, naming the
// element, instead of being stored as a link to nothing; inside a
// transaction it resolves (TestTransactionConditionalReferenceToAnEntry and
// the sample Bundles cover that side).
func TestConditionalReferencesOnlyInTransactions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		enc := `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},` +
			`"subject":{"reference":"Patient/p1"},"participant":[{"individual":{"reference":"Practitioner?identifier=urn:lic|77"}}]}`
		_, _, err := s.Create(ctx, nil, "Encounter", []byte(enc), "")
		// The validator refuses it on its own (a single create is no Bundle).
		if !errs.Is(err, errs.Unprocessable) {
			t.Fatalf("create: %v", err)
		}
		batch := `{"resourceType":"Bundle","type":"batch","entry":[{"resource":` + enc + `,"request":{"method":"POST","url":"Encounter"}}]}`
		res, err := s.ProcessBundle(ctx, nil, []byte(batch))
		if err != nil {
			t.Fatal(err)
		}
		// In a batch the validator lets it pass (Bundles may carry them);
		// the write refuses it, naming the element.
		if e, ok := errs.As(res.Entries[0].Err); !ok || e.Kind != errs.Unprocessable || e.Field != "Encounter.participant[0].individual.reference" {
			t.Fatalf("batch entry: %+v", res.Entries[0])
		}
		// A query-looking string that is not a resource type is no search.
		ok := `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"}}`
		if _, _, err := s.Create(ctx, nil, "Encounter", []byte(ok), ""); err != nil {
			t.Fatal(err)
		}
	})
}
