package fhir

import (
	"strings"
	"testing"
)

// BenchmarkLimitsCheck is the price every write pays for the limits: one
// pass over the bytes of a typical resource, and the refusal of issue #8's
// 500,000 given names.
func BenchmarkLimitsCheck(b *testing.B) {
	attack := []byte(`{"resourceType":"Patient","name":[{"given":["` + strings.Repeat(`Ann","`, 500_000-1) + `Ann"]}]}`)
	for _, bc := range []struct {
		name, root string
		raw        func(*testing.B) []byte
		refused    bool
	}{
		{"Patient", "Patient", func(b *testing.B) []byte { return benchFixture(b, "patient.json") }, false},
		{"Claim", "Claim", func(b *testing.B) []byte { return benchFixture(b, "claim.json") }, false},
		{"Bundle100", "Bundle", bundleOf100, false},
		{"HalfMillionGivenNames", "Patient", func(*testing.B) []byte { return attack }, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := bc.raw(b)
			if e := (Limits{}).Check(raw, bc.root); (e != nil) != bc.refused {
				b.Fatalf("Check = %v", e)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				(Limits{}).Check(raw, bc.root)
			}
		})
	}
}
