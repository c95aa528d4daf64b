package record

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store/storetest"
)

// largestAllowed is a Patient near every default limit at once: 89,001
// elements (of 100,000), arrays of 10,000 items, and 9,002 index rows (of
// 10,000) from 4,000 given names and 1,000 address lines. It is what the
// limits let one write cost.
func largestAllowed() []byte {
	var b strings.Builder
	extensions := func(n int) {
		b.WriteString(`"extension":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"url":"http://example.org/x%d","valueString":"v%d"}`, i, i)
		}
		b.WriteString(`],`)
	}
	b.WriteString(`{"resourceType":"Patient",`)
	extensions(10_000)
	b.WriteString(`"name":[{`)
	extensions(10_000)
	b.WriteString(`"family":"Big","given":[`)
	for i := range 4_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%c%c%c"`, 'a'+i/676%26, 'a'+i/26%26, 'a'+i%26)
	}
	b.WriteString(`]}],"address":[{`)
	extensions(9_000)
	b.WriteString(`"line":[`)
	for i := range 1_000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%d"`, i)
	}
	b.WriteString(`]}]}`)
	return []byte(b.String())
}

// BenchmarkCreateLargestAllowed measures the most one create can cost under
// the default limits, on each backend.
func BenchmarkCreateLargestAllowed(b *testing.B) {
	body := largestAllowed()
	if e := (fhir.Limits{}).Check(body, "Patient"); e != nil {
		b.Fatalf("the body is over a limit: %v", e)
	}
	if e := (fhir.Limits{Elements: 89_000}).Check(body, "Patient"); e == nil {
		b.Fatal("the body is not near the element limit")
	}
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			s := newService(b, storetest.Open(b, d))
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, _, err := s.Create(context.Background(), nil, "Patient", body, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
