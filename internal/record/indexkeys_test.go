package record

import "testing"

// TestParamKeysAreDistinct: index rows name their parameter by key alone
// (paramKey), so no two parameters of R4, of any types, nor the :exact
// rows of PHI strings, may share a key; the keys are small.
func TestParamKeysAreDistinct(t *testing.T) {
	seen := map[int64]string{}
	for name, k := range paramKeys() {
		if k <= 0 || k >= 1<<15 {
			t.Errorf("%s: key %d is not a two-byte SQLite integer", name, k)
		}
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s share the key %d", name, other, k)
		}
		seen[k] = name
	}
	if len(seen) < 1000 {
		t.Fatalf("only %d parameters keyed", len(seen))
	}
	// Every parameter the record indexes is numbered (none falls back to
	// the hash), and Patient's take one byte.
	for _, typ := range ModelledTypes() {
		for _, p := range ParamsOf(typ) {
			for _, name := range []string{p.Name, p.Name + ":exact"} {
				k, ok := paramKeys()[typ+"."+name]
				if !ok {
					t.Errorf("%s.%s has no number", typ, name)
				}
				if typ == "Patient" && k >= 128 {
					t.Errorf("Patient.%s: key %d takes more than one byte", name, k)
				}
			}
		}
	}
	if k := paramKey("Patient", "no-such-parameter"); k < 1<<20 || k >= 1<<31 {
		t.Errorf("a name outside R4 got the key %d", k)
	}
}
