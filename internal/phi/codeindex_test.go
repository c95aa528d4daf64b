package phi

import (
	"errors"
	"testing"
)

// CodeIndex matches a code exactly: case and punctuation count (unlike
// BlindIndex), equal codes in one domain give one index, and domains keep
// equal codes apart.
func TestCodeIndex(t *testing.T) {
	r := &Ring{}
	r.cur.Store(testKeyset(t, 1))
	idx := func(domain, code string) string {
		t.Helper()
		h, err := r.CodeIndex(domain, code)
		if err != nil {
			t.Fatalf("CodeIndex(%q): %v", code, err)
		}
		return h
	}
	a := idx("record:Condition.code", "C50.911")
	if len(a) != 43 || a == "C50.911" {
		t.Fatalf("index %q is not a 43-character MAC", a)
	}
	if idx("record:Condition.code", "C50.911") != a {
		t.Fatal("the same code gave two indexes")
	}
	for _, other := range []string{"c50.911", "C50911", "C50.911 "} {
		if idx("record:Condition.code", other) == a {
			t.Errorf("%q has the index of C50.911: codes are exact", other)
		}
	}
	if idx("record:Procedure.reason-code", "C50.911") == a {
		t.Error("two domains gave one index")
	}
	if b, _ := r.BlindIndex("record:Condition.code", "c50911"); b == a {
		t.Error("a normalised blind index equals the code index")
	}
	if _, err := r.CodeIndex("record:Condition.code", ""); !errors.Is(err, ErrEmptyValue) {
		t.Fatalf("empty code: %v, want ErrEmptyValue", err)
	}
}

func BenchmarkCodeIndex(b *testing.B) {
	r := &Ring{}
	r.cur.Store(testKeyset(b, 1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.CodeIndex("record:Observation.code", "75622-1"); err != nil {
			b.Fatal(err)
		}
	}
}
