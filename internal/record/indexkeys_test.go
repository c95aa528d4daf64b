package record

import "testing"

// TestParamKeysAreDistinct: index rows name their parameter by key alone
// (paramKey), so no two parameters of R4, of any types, nor the :exact
// rows of PHI strings, may share a key.
func TestParamKeysAreDistinct(t *testing.T) {
	seen := map[int64]string{}
	for name, k := range paramKeys() {
		if k <= 0 || k > 0x7fffffff {
			t.Errorf("%s: key %d out of 31 bits", name, k)
		}
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s share the key %d", name, other, k)
		}
		seen[k] = name
	}
	if len(seen) < 1000 {
		t.Fatalf("only %d parameters keyed", len(seen))
	}
}
