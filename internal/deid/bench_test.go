package deid

import (
	"strings"
	"testing"
)

// benchNote is a 2 KB clinical note of the test patient, in English and
// Arabic, with identifiers and clinical values.
func benchNote() string {
	var b strings.Builder
	for b.Len() < 2048 {
		for _, n := range notes[:2] {
			b.WriteString(n.text)
			b.WriteString("\nBP 120/80, HR 88, SpO2 97%, temp 38.5. Metformin 500 mg, E11.9, I21.4. Follow up in 2 weeks.\n")
		}
	}
	return b.String()[:2048]
}

func BenchmarkScrub2KB(b *testing.B) {
	s := NewScrubber(patient)
	note := strings.ToValidUTF8(benchNote(), "")
	b.SetBytes(int64(len(note)))
	b.ReportAllocs()
	for b.Loop() {
		s.Scrub(note)
	}
}

func BenchmarkNewScrubber(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NewScrubber(patient)
	}
}
