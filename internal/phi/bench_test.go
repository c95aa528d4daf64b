package phi

import (
	"context"
	"testing"
)

// The crypto benchmarks use an in-memory keyset; BenchmarkRingOpen adds the
// Ring's lookup path. Numbers go in BENCHMARKS.md with the command.

var benchAAD = AAD{Table: "resources", Field: "ciphertext", Record: "0192f1d2-7c1e-7a00-8000-000000000001"}

func benchSizes() []struct {
	name string
	n    int
} {
	return []struct {
		name string
		n    int
	}{{"name_32B", 32}, {"resource_4KiB", 4096}}
}

func BenchmarkSeal(b *testing.B) {
	ks := testKeyset(b, 1)
	for _, sz := range benchSizes() {
		pt := make([]byte, sz.n)
		b.Run(sz.name, func(b *testing.B) {
			b.SetBytes(int64(sz.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ks.seal(benchAAD, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	ks := testKeyset(b, 1)
	for _, sz := range benchSizes() {
		ct, _ := ks.seal(benchAAD, make([]byte, sz.n))
		b.Run(sz.name, func(b *testing.B) {
			b.SetBytes(int64(sz.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := ks.open(benchAAD, ct); err != nil || !ok {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRingOpen(b *testing.B) {
	ks := testKeyset(b, 1)
	r := &Ring{}
	r.cur.Store(ks)
	ct, _ := r.Seal(benchAAD, make([]byte, 32))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Open(ctx, benchAAD, ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindIndex(b *testing.B) {
	ks := testKeyset(b, 1)
	r := &Ring{}
	r.cur.Store(ks)
	b.Run("latin_name", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.BlindIndex("patient.name", "Mohamed Abdel-Rahman"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("arabic_name", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.BlindIndex("patient.name", "مُحَمَّد عبد الرَّحمن"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("name_prefixes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.NamePrefixIndexes("patient.name", "Mohamed Abdel-Rahman"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkNormalize(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NormalizeName("Mohamed Abdel-Rahman مُحَمَّد")
	}
}
