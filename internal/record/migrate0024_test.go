package record

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// legacyWriter writes resources as careflow wrote them before migration
// 0024 (the release with migrations up to 0023): the current version's
// ciphertext in resources and again in resource_history, and index rows
// keyed by (type, id) with parameter names and 43-character blind
// indexes. The rows are what extract gives, as that release's write did.
type legacyWriter struct {
	t   *testing.T
	s   *Service
	at  time.Time
	raw map[string][]byte // "Type/id/version" → stored JSON
}

func (w *legacyWriter) put(tx store.Tx, typ, id string, version int, body string) {
	t, ctx := w.t, context.Background()
	t.Helper()
	w.at = w.at.Add(time.Second)
	raw, err := fhir.SetIDAndMeta([]byte(body), id, strconv.Itoa(version), w.at)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := decodeDoc(raw)
	if err != nil {
		t.Fatal(err)
	}
	patient := patientOf(typ, id, doc)
	ct, err := w.s.ring.Seal(versionAAD(typ, id, version), raw)
	if err != nil {
		t.Fatal(err)
	}
	method := "POST"
	if version == 1 {
		_, err = tx.Exec(ctx, `INSERT INTO resources (type, id, version, last_updated, deleted, patient_id, ciphertext) VALUES ($1, $2, $3, $4, FALSE, $5, $6)`,
			typ, id, version, w.at, store.NullIfEmpty(patient), ct)
	} else {
		method = "PUT"
		_, err = tx.Exec(ctx, `UPDATE resources SET version = $3, last_updated = $4, deleted = FALSE, patient_id = $5, ciphertext = $6 WHERE type = $1 AND id = $2`,
			typ, id, version, w.at, store.NullIfEmpty(patient), ct)
		w.clear(tx, typ, id)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO resource_history (type, id, version, last_updated, deleted, method, patient_id, ciphertext) VALUES ($1, $2, $3, $4, FALSE, $5, $6, $7)`,
		typ, id, version, w.at, method, store.NullIfEmpty(patient), ct); err != nil {
		t.Fatal(err)
	}
	rows, err := extract(w.s.ring, typ, doc, math.MaxInt)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rows.tokens {
		exec(`INSERT INTO resource_tokens (type, id, param, system, code) VALUES ($1, $2, $3, $4, $5)`, typ, id, r.param, r.system, r.code)
	}
	for _, r := range rows.strs {
		var rawText any
		if r.raw != nil {
			rawText = *r.raw
		}
		exec(`INSERT INTO resource_strings (type, id, param, value, raw) VALUES ($1, $2, $3, $4, $5)`, typ, id, r.param, r.value, rawText)
	}
	for _, r := range rows.dates {
		exec(`INSERT INTO resource_dates (type, id, param, low, high) VALUES ($1, $2, $3, $4, $5)`, typ, id, r.param, r.low, r.high)
	}
	for _, r := range rows.refs {
		exec(`INSERT INTO resource_refs (type, id, param, target_type, target_id) VALUES ($1, $2, $3, $4, $5)`, typ, id, r.param, r.targetType, r.targetID)
	}
	for _, r := range rows.numbers {
		exec(`INSERT INTO resource_numbers (type, id, param, value, system, code) VALUES ($1, $2, $3, $4, $5, $6)`, typ, id, r.param, r.value, r.system, r.code)
	}
	w.raw[fmt.Sprintf("%s/%s/%d", typ, id, version)] = raw
}

func (w *legacyWriter) clear(tx store.Tx, typ, id string) {
	for _, tb := range indexTables {
		if _, err := tx.Exec(context.Background(), "DELETE FROM "+tb+" WHERE type = $1 AND id = $2", typ, id); err != nil {
			w.t.Fatal(err)
		}
	}
}

func (w *legacyWriter) delete(tx store.Tx, typ, id string, version int) {
	ctx := context.Background()
	w.at = w.at.Add(time.Second)
	if _, err := tx.Exec(ctx, `UPDATE resources SET version = $3, last_updated = $4, deleted = TRUE, ciphertext = NULL WHERE type = $1 AND id = $2`, typ, id, version, w.at); err != nil {
		w.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO resource_history (type, id, version, last_updated, deleted, method, patient_id, ciphertext) VALUES ($1, $2, $3, $4, TRUE, 'DELETE', $2, NULL)`, typ, id, version, w.at); err != nil {
		w.t.Fatal(err)
	}
	w.clear(tx, typ, id)
}

// TestMigrate0024ConvertsInPlace upgrades a database made by the release
// before migration 0024 (migrations up to 0023, rows written in that
// release's layout: patients, one updated, one deleted, observations with
// codes, dates, quantities and references, an organisation): migration
// 0024 and the start-up passes convert it in place, after which every
// record reads back as it was stored, its versions too, the current
// version's ciphertext is kept once, every search finds what it found
// before, and new writes work beside the converted rows. On each backend.
func TestMigrate0024ConvertsInPlace(t *testing.T) {
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) { testMigrate0024(t, d) })
	}
}

func testMigrate0024(t *testing.T, d store.Dialect) {
	ctx := context.Background()
	db := storetest.OpenUnmigrated(t, d)
	storetest.MigrateTo(t, db, 23)
	s := newService(t, db)
	w := &legacyWriter{t: t, s: s, at: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), raw: map[string][]byte{}}
	const patients = 30
	obs := func(i int) string {
		return fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2026-01-%02dT10:00:00Z","valueQuantity":{"value":%d,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`,
			i%patients, 1+i%28, 60+i)
	}
	err := db.Tx(ctx, func(tx store.Tx) error {
		for i := range patients {
			w.put(tx, "Patient", fmt.Sprintf("p%d", i), 1, string(benchPatient(i)))
		}
		for i := range 20 {
			w.put(tx, "Observation", fmt.Sprintf("o%d", i), 1, obs(i))
		}
		w.put(tx, "Organization", "org1", 1, `{"resourceType":"Organization","name":"Cairo Clinic","identifier":[{"system":"urn:org","value":"C-1"}]}`)
		w.put(tx, "Patient", "p1", 2, string(benchPatient(1000)))
		w.delete(tx, "Patient", "p2", 2)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BlindLegacyCodes(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := s.ReindexChangedParams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := patients - 1 + 20 + 1; n != want {
		t.Fatalf("the start-up pass re-indexed %d resources, want %d (every one not deleted)", n, want)
	}

	// Every record reads back, current versions and replaced ones.
	for key, raw := range w.raw {
		var typ, id string
		var v int
		if _, err := fmt.Sscanf(bytesReplace(key, '/', ' '), "%s %s %d", &typ, &id, &v); err != nil {
			t.Fatal(err)
		}
		got, err := s.VRead(ctx, nil, typ, id, strconv.Itoa(v))
		if err != nil || !bytes.Equal(got.JSON, raw) {
			t.Errorf("vread %s: %v, %q", key, err, got.JSON)
		}
		if typ == "Patient" && (id == "p1" && v == 1 || id == "p2") {
			continue
		}
		cur, err := s.Read(ctx, nil, typ, id)
		if err != nil || !bytes.Equal(cur.JSON, raw) {
			t.Errorf("read %s: %v", key, err)
		}
	}
	if _, err := s.Read(ctx, nil, "Patient", "p2"); !errors.Is(err, ErrDeleted) {
		t.Errorf("the deleted patient reads %v, want deleted", err)
	}
	h, err := s.History(ctx, nil, "Patient", "p1", nil)
	if err != nil || len(h.Entries) != 2 || !bytes.Equal(h.Entries[0].JSON, w.raw["Patient/p1/2"]) || !bytes.Equal(h.Entries[1].JSON, w.raw["Patient/p1/1"]) {
		t.Fatalf("history of p1: %v, %+v", err, h)
	}
	var kept, replaced int
	if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM resource_history h JOIN resources r ON r.type = h.type AND r.id = h.id AND r.version = h.version`).Scan(&kept); err != nil || kept != 0 {
		t.Fatalf("%d current versions are kept in the history too (%v)", kept, err)
	}
	if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM resource_history`).Scan(&replaced); err != nil || replaced != 2 {
		t.Fatalf("the history holds %d versions, want the 2 replaced ones (%v)", replaced, err)
	}
	var methods string
	if err := db.Reader().QueryRow(ctx, `SELECT (SELECT method FROM resources WHERE type = 'Patient' AND id = 'p1') || (SELECT method FROM resources WHERE type = 'Patient' AND id = 'p2') || (SELECT method FROM resources WHERE type = 'Patient' AND id = 'p3')`).Scan(&methods); err != nil || methods != "PUTDELETEPOST" {
		t.Fatalf("the current versions' methods: %q, %v", methods, err)
	}
	if h, err := s.History(ctx, nil, "Patient", "", map[string][]string{"_count": {"100"}}); err != nil || len(h.Entries) != patients+2 {
		t.Fatalf("type history: %v, %d entries, want %d", err, len(h.Entries), patients+2)
	}

	// Every search finds what it found before.
	expect := func(typ, query string, want ...string) {
		t.Helper()
		got, err := searchIDs(t, s, typ, query)
		if err != nil || fmt.Sprint(sortedIDs(got)) != fmt.Sprint(sortedIDs(want)) {
			t.Errorf("%s?%s: %v, %v; want %v", typ, query, got, err, want)
		}
	}
	for i := range patients {
		id := fmt.Sprintf("p%d", i)
		switch i {
		case 1:
			expect("Patient", fmt.Sprintf("identifier=urn:eg:nid|%014d", 29000000000000+i))
			expect("Patient", fmt.Sprintf("identifier=urn:eg:nid|%014d", 29000000000000+1000), id)
		case 2:
			expect("Patient", fmt.Sprintf("identifier=urn:eg:nid|%014d", 29000000000000+i))
		default:
			expect("Patient", fmt.Sprintf("identifier=urn:eg:nid|%014d", 29000000000000+i), id)
			expect("Patient", fmt.Sprintf("identifier=MRN-%08d", i), id)
		}
	}
	// benchPatient(i): given by i%10, family by (i/10)%8; phone and birth
	// date from i.
	expect("Patient", "given=moh&family=hass&_count=100", "p0")
	expect("Patient", "name=sara%20sal&_count=100", "p15")
	expect("Patient", "family:exact=Saleh&_count=100", "p10", "p11", "p12", "p13", "p14", "p15", "p16", "p17", "p18", "p19")
	expect("Patient", fmt.Sprintf("phone=+20 10 %08d", 7), "p7")
	expect("Patient", "birthdate=1947-08-08", "p7")
	expect("Patient", "gender=female&address-postalcode=11003", "p3")
	expect("Observation", "subject=Patient/p3", "o3")
	expect("Observation", "patient=p5&code=http://loinc.org|8867-4", "o5")
	expect("Observation", "date=2026-01-04", "o3")
	expect("Observation", "value-quantity=gt78&_count=100", "o19")
	expect("Observation", "subject:Patient.identifier=urn:eg:nid|29000000000004", "o4")
	expect("Organization", "name=cairo", "org1")
	expect("Organization", "name:exact=Cairo Clinic", "org1")
	expect("Organization", "identifier=urn:org|C-1", "org1")
	expect("Patient", "_has:Observation:subject:code=http://loinc.org|8867-4&_count=100&_id=p4,p5,p2", "p4", "p5")

	// Writes after the conversion: a create, and an update of a converted
	// resource, whose replaced version moves to the history.
	created := mustCreate(t, s, "Patient", string(benchPatient(5000)))
	expect("Patient", fmt.Sprintf("identifier=urn:eg:nid|%014d", 29000000000000+5000), created.ID)
	if _, _, err := s.Update(ctx, nil, "Patient", "p4", benchPatientWithID(4, "p4"), `W/"1"`); err != nil {
		t.Fatal(err)
	}
	if got, err := s.VRead(ctx, nil, "Patient", "p4", "1"); err != nil || !bytes.Equal(got.JSON, w.raw["Patient/p4/1"]) {
		t.Fatalf("vread of the replaced converted version: %v", err)
	}
	expect("Observation", "subject:Patient.identifier=urn:eg:nid|29000000000004", "o4")
}

func bytesReplace(s string, old, new byte) string {
	return string(bytes.ReplaceAll([]byte(s), []byte{old}, []byte{new}))
}

// benchPatientWithID is benchPatient(i) with the id id, for an update.
func benchPatientWithID(i int, id string) []byte {
	return bytes.Replace(benchPatient(i), []byte(`{"resourceType":"Patient",`), []byte(`{"resourceType":"Patient","id":"`+id+`",`), 1)
}
