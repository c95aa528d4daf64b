package record

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"

	"github.com/careflow/careflow/internal/store"
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
			var db *store.DB
			var pgURL string
			if d == store.Postgres {
				if _, err := exec.LookPath("pg_dump"); err != nil {
					t.Skip("pg_dump not installed")
				}
				pgURL = storetest.NewPostgresDatabase(t)
				var err error
				if db, err = store.Open(ctx, store.Config{URL: pgURL}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				if _, err := db.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				db = storetest.Open(t, d)
			}
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

			var dump []byte
			if d == store.SQLite {
				for _, suffix := range []string{"", "-wal"} {
					b, err := os.ReadFile(db.SQLitePath() + suffix)
					if err != nil && !os.IsNotExist(err) {
						t.Fatal(err)
					}
					dump = append(dump, b...)
				}
			} else {
				out, err := exec.Command("pg_dump", "--no-owner", "--data-only", "--table=events", "--table=event_streams", pgURL).Output()
				if err != nil {
					t.Fatalf("pg_dump: %v", err)
				}
				dump = out
			}
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
