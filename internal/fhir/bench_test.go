package fhir

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func benchFixture(b *testing.B, name string) []byte {
	b.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// bundleOf100 builds a 100-entry transaction Bundle alternating the Patient
// and Claim fixtures.
func bundleOf100(b *testing.B) []byte {
	b.Helper()
	patient, claim := benchFixture(b, "patient.json"), benchFixture(b, "claim.json")
	var sb strings.Builder
	sb.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
	for i := 0; i < 100; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		res, typ := patient, "Patient"
		if i%2 == 1 {
			res, typ = claim, "Claim"
		}
		fmt.Fprintf(&sb, `{"fullUrl":"urn:uuid:00000000-0000-4000-8000-%012d","resource":%s,"request":{"method":"POST","url":"%s"}}`, i, res, typ)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

func BenchmarkValidate(b *testing.B) {
	for _, bc := range []struct {
		name string
		raw  func(*testing.B) []byte
	}{
		{"Patient", func(b *testing.B) []byte { return benchFixture(b, "patient.json") }},
		{"Claim", func(b *testing.B) []byte { return benchFixture(b, "claim.json") }},
		{"Bundle100", bundleOf100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := bc.raw(b)
			if is := Validate(raw); len(is) != 0 {
				b.Fatalf("fixture is not valid: %v", is)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				Validate(raw)
			}
		})
	}
}

func BenchmarkSetIDAndMeta(b *testing.B) {
	raw := benchFixture(b, "claim.json")
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SetIDAndMeta(raw, "c1", "2", fixedTime); err != nil {
			b.Fatal(err)
		}
	}
}
