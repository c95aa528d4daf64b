package terminology

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// syntheticOrderFile writes an order file the size of a real release
// (96,200 lines, against about 98,000 in FY2026: 2,600 categories, each with
// nine subcategory headers of three billable codes) from made-up codes and
// descriptions. The five-digit order number caps a file at 99,999 lines.
func syntheticOrderFile() []byte {
	var b bytes.Buffer
	n := 0
	add := func(code string, billable bool) {
		n++
		desc := "Synthetic description of " + code
		b.WriteString(orderLine(n, code, billable, desc, desc+" for load testing"))
		b.WriteByte('\n')
	}
	for letter := 'A'; letter <= 'Z'; letter++ {
		for cat := 0; cat < 100; cat++ {
			c3 := fmt.Sprintf("%c%02d", letter, cat)
			add(c3, false)
			for sub := 0; sub < 9; sub++ {
				c4 := fmt.Sprintf("%s%d", c3, sub)
				add(c4, false)
				for leaf := 0; leaf < 3; leaf++ {
					add(fmt.Sprintf("%s%d", c4, leaf), true)
				}
			}
		}
	}
	return b.Bytes()
}

// BenchmarkLoadICD10CM loads a release-sized file; each iteration reloads
// the same version, which is also the idempotent path.
func BenchmarkLoadICD10CM(b *testing.B) {
	file := syntheticOrderFile()
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			s := newTestService(b, db)
			ctx := context.Background()
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				rel, err := s.LoadICD10CM(ctx, bytes.NewReader(file), "2026", Window{}, nil)
				if err != nil || rel.Codes != 96200 {
					b.Fatalf("%+v, %v", rel, err)
				}
			}
		})
	}
}

// BenchmarkValidateCodeFullRelease validates against a release-sized table.
func BenchmarkValidateCodeFullRelease(b *testing.B) {
	db := storetest.Open(b, store.SQLite)
	s := newTestService(b, db)
	ctx := context.Background()
	if _, err := s.LoadICD10CM(ctx, bytes.NewReader(syntheticOrderFile()), "2026", Window{}, nil); err != nil {
		b.Fatal(err)
	}
	opts := ValidateOptions{Date: day("2026-03-15")}
	b.ReportAllocs()
	for b.Loop() {
		v, err := s.ValidateCode(ctx, SystemICD10CM, "M45.21", opts)
		if err != nil || !v.Valid {
			b.Fatalf("%+v, %v", v, err)
		}
	}
}
