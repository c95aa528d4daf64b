//go:build !race

// The regeneration check decodes 60 MB of definitions; it has no
// concurrency to race-check and takes half a minute under -race, so it runs
// in the plain test pass only.

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestRegenerationIsReproducible regenerates the table from the pinned npm
// package and compares it byte for byte with the committed file, so a
// hand edit or a generator change without `go generate` fails here.
func TestRegenerationIsReproducible(t *testing.T) {
	defs := filepath.Join("..", "..", "..", "..", "tools", "fhirdefs", "node_modules", "@medplum", "definitions", "dist", "fhir", "r4")
	if _, err := os.Stat(defs); err != nil {
		t.Skipf("definitions not installed (run npm ci in tools/fhirdefs): %v", err)
	}
	table, err := build(defs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := encode(table)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "r4defs.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("regenerated table (%d bytes) differs from r4defs.json.gz (%d bytes): run go generate ./internal/fhir", len(got), len(want))
	}
	if len(table.Unexpanded) == 0 || len(table.ValueSets) < 200 {
		t.Errorf("value sets: %d expanded, %d not", len(table.ValueSets), len(table.Unexpanded))
	}
}
