package record

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestReindexChangedParams upgrades a database whose index rows were
// written for an older parameter set (simulated on today's layout: the
// rows of DocumentReference.patient and ExplanationOfBenefit.patient,
// which the hand-written table did not have, removed, and no parameter
// set stored, as after migrations 0013 and 0024): the start-up pass
// re-indexes every stored type once, so those searches find the
// resources; it resumes from its cursor; a type whose fingerprint changed
// is re-indexed alone; and a later start does nothing. On each backend.
func TestReindexChangedParams(t *testing.T) {
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) { testReindexChangedParams(t, d) })
	}
}

func testReindexChangedParams(t *testing.T, d store.Dialect) {
	ctx := context.Background()
	db := storetest.Open(t, d)
	s := newService(t, db)
	const docs = reindexBatch + 30
	var docIDs []string
	for i := range docs {
		docIDs = append(docIDs, mustCreate(t, s, "DocumentReference", fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/p%d"},"content":[{"attachment":{"contentType":"text/plain"}}]}`, i%3)).ID)
	}
	eob := mustCreate(t, s, "ExplanationOfBenefit", `{"resourceType":"ExplanationOfBenefit","status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"oral"}]},"use":"claim","patient":{"reference":"Patient/p1"},"created":"2026-01-02","insurer":{"reference":"Organization/o1"},"provider":{"reference":"Organization/o2"},"outcome":"complete","insurance":[{"focal":true,"coverage":{"reference":"Coverage/c1"}}]}`).ID
	org := mustCreate(t, s, "Organization", `{"resourceType":"Organization","name":"Clinic"}`).ID
	if _, err := db.Writer().Exec(ctx, `DELETE FROM resource_refs WHERE param IN ($1, $2)`, paramKey("DocumentReference", "patient"), paramKey("ExplanationOfBenefit", "patient")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().Exec(ctx, `DELETE FROM record_param_sets`); err != nil {
		t.Fatal(err)
	}
	count := func(typ, query string) int {
		t.Helper()
		got, err := searchIDs(t, s, typ, query)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := count("DocumentReference", "patient=Patient/p1&_count=500"); n != 0 {
		t.Fatalf("the simulated old index finds %d DocumentReferences by patient", n)
	}

	// A pass that stopped in DocumentReference resumes after its cursor.
	if _, err := db.Writer().Exec(ctx, `INSERT INTO record_reindex (task, after_type, after_id) VALUES ('params', 'DocumentReference', $1)`, sortedIDs(docIDs)[99]); err != nil {
		t.Fatal(err)
	}
	n, err := s.ReindexChangedParams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := docs - 100 + 2; n != want {
		t.Fatalf("resumed pass re-indexed %d resources, want %d (the DocumentReferences after the cursor, the ExplanationOfBenefit, the Organization)", n, want)
	}
	if got, want := count("DocumentReference", "patient=Patient/p1&_count=500"), (docs-100)/3; got < want-1 || got > want+1 {
		t.Fatalf("after the resumed pass %d DocumentReferences of p1 found, want about %d (those after the cursor)", got, want)
	}
	if count("ExplanationOfBenefit", "patient=Patient/p1") != 1 {
		t.Fatal("the ExplanationOfBenefit is not found by patient after the pass")
	}
	var tasks, sets int
	_ = db.Reader().QueryRow(ctx, `SELECT count(*) FROM record_reindex`).Scan(&tasks)
	_ = db.Reader().QueryRow(ctx, `SELECT count(*) FROM record_param_sets`).Scan(&sets)
	if tasks != 0 || sets != len(ModelledTypes()) {
		t.Fatalf("after the pass: %d tasks (want 0), %d parameter sets (want %d)", tasks, sets, len(ModelledTypes()))
	}
	if n, err := s.ReindexChangedParams(ctx); err != nil || n != 0 {
		t.Fatalf("a second start: %d, %v; want 0", n, err)
	}

	// A changed parameter set re-indexes that type alone, all of it.
	if _, err := db.Writer().Exec(ctx, `UPDATE record_param_sets SET fingerprint = 'old' WHERE type = 'DocumentReference'`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReindexChangedParams(ctx); err != nil || n != docs {
		t.Fatalf("after a DocumentReference change: %d, %v; want %d", n, err, docs)
	}
	if got := count("DocumentReference", "patient=Patient/p1&_count=500"); got != (docs+2)/3 {
		t.Fatalf("%d DocumentReferences of p1 found, want %d", got, (docs+2)/3)
	}
	if got, err := searchIDs(t, s, "Organization", "name=clin"); err != nil || len(got) != 1 || got[0] != org {
		t.Fatalf("the Organization by name: %v, %v", got, err)
	}
	_ = eob
}

func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}
