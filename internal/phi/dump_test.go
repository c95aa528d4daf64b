package phi

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestDatabaseFileHoldsNoPHI writes sealed values and blind indexes to a
// SQLite file and checks the bytes on disk (database and WAL): no name, no
// name prefix, no key material.
func TestDatabaseFileHoldsNoPHI(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	ring := openTestRing(t, db)
	if _, err := db.Writer().Exec(ctx, `CREATE TABLE test_people (id TEXT PRIMARY KEY, name BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().Exec(ctx, `CREATE TABLE test_people_name_index (token TEXT NOT NULL, id TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	names := []string{"Mohamed Abdelrahman", "محمد عبد الرحمن", "Zeinab Fawzy"}
	for i, name := range names {
		id := patientID(i)
		ct, err := ring.SealText(AAD{Table: "test_people", Field: "name", Record: id}, NewText(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Writer().Exec(ctx, `INSERT INTO test_people (id, name) VALUES ($1, $2)`, id, ct); err != nil {
			t.Fatal(err)
		}
		tokens, err := ring.NamePrefixIndexes("person.name", name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range tokens {
			if _, err := db.Writer().Exec(ctx, `INSERT INTO test_people_name_index (token, id) VALUES ($1, $2)`, tok, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	var disk []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(db.SQLitePath() + suffix)
		if err != nil && suffix == "" {
			t.Fatal(err)
		}
		disk = append(disk, b...)
	}
	if len(disk) == 0 {
		t.Fatalf("nothing on disk at %s", filepath.Dir(db.SQLitePath()))
	}
	secrets := [][]byte{ring.cur.Load().blind.mac}
	for _, name := range names {
		secrets = append(secrets, []byte(name), []byte(NormalizeName(name)))
		secrets = append(secrets, stringsToBytes(NamePrefixes(name))...)
	}
	for _, s := range secrets {
		// Shorter strings occur by chance in 100 KB of pages; five bytes do not.
		if len(s) >= 5 && bytes.Contains(disk, s) {
			t.Errorf("the database file contains %q", s)
		}
	}
	// The sealed values still open, so the check above is not vacuous.
	var ct []byte
	_ = db.Reader().QueryRow(ctx, `SELECT name FROM test_people WHERE id = $1`, patientID(0)).Scan(&ct)
	if got, err := ring.OpenText(ctx, AAD{Table: "test_people", Field: "name", Record: patientID(0)}, ct); err != nil || got.Reveal() != names[0] {
		t.Fatalf("OpenText = %v", err)
	}
}

func stringsToBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
