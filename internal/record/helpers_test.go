package record

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/terminology"
)

// newService opens a record over db with a fresh random master key.
func newService(t testing.TB, db *store.DB) *Service {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	mk, err := phi.ParseMasterKey(k[:])
	if err != nil {
		t.Fatal(err)
	}
	ring, err := phi.OpenRing(context.Background(), db, mk, phi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return New(db, ring, Options{Codes: terminology.NewService(db, terminology.Options{}), Hooks: []WriteHook{auth.ConsentHook{Consents: auth.NewConsents(db, nil)}}})
}

// sampleDir finds ../shared/data from the module root, or skips.
func sampleDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("reference data not found at %s (see the shared data README): %v", dir, err)
	}
	return dir
}

// notResources are sample files that are not FHIR resources at all.
var notResources = map[string]bool{
	"hcx/jwe-vector/response_outgoing.json": true,
	"hcx/jwe-vector/response_incoming.json": true,
}

// sampleFiles lists the JSON sample files relative to dir, sorted.
func sampleFiles(t testing.TB) (string, []string) {
	t.Helper()
	dir := sampleDir(t)
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".json") {
			rel, _ := filepath.Rel(dir, path)
			rel = filepath.ToSlash(rel)
			if !notResources[rel] {
				files = append(files, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return dir, files
}
