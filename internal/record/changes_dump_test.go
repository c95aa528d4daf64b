package record

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"

	"github.com/careflow/careflow/internal/store/storetest"
)

// TestDatabaseDumpWithEventsHoldsNoPHI stores a Patient (name, birth date,
// identifier) and an Observation of theirs with the event hook on, then
// reads the database as someone with a copy would (the SQLite file and its
// WAL; pg_dump) and looks for each marker as text and as hex: the events
// table beside the encrypted records holds ids, never the content.
func TestDatabaseDumpWithEventsHoldsNoPHI(t *testing.T) {
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, d)
			s := newService(t, db)
			s.changes = []ChangeHook{EventHook{}}
			pat, _, err := s.Create(ctx, nil, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Zorvathiel","given":["Quillimina"]}],
"birthDate":"1931-07-19","identifier":[{"system":"urn:oid:2.16.840.1.113883.4.1","value":"SSN-998-41-7720"}]}`), "")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Create(ctx, nil, "Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"Yellowmarrow note"},
"subject":{"reference":"Patient/`+pat.ID+`"},"valueString":"Plumbagine remark"}`), ""); err != nil {
				t.Fatal(err)
			}

			dump := storetest.Dump(t, db)
			// Not vacuous: the events are in the dump, naming the patient.
			for _, must := range []string{"record.created", pat.ID} {
				if !bytes.Contains(dump, []byte(must)) {
					t.Fatalf("the dump (%d bytes) does not hold %q", len(dump), must)
				}
			}
			for _, m := range []string{"Zorvathiel", "Quillimina", "1931-07-19", "998-41-7720", "Yellowmarrow", "Plumbagine"} {
				for _, form := range [][]byte{[]byte(m), []byte(hex.EncodeToString([]byte(m)))} {
					if i := bytes.Index(dump, form); i >= 0 {
						t.Errorf("the dump holds %s: …%q…", m, dump[max(0, i-60):min(len(dump), i+len(form)+20)])
					}
				}
			}
		})
	}
}
