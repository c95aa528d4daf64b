package record

import (
	"fmt"
	"sort"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// A conditional reference (Patient?identifier=system|value) is a search,
// not a link: a transaction Bundle resolves it to the one match before
// anything is written. Anywhere else (a single create or update, a batch
// entry) it would be stored as a reference to nothing, so it is refused.

// conditionalReference finds the first reference of doc written as a
// search and returns its element path (Encounter.subject.reference).
func conditionalReference(typ string, doc map[string]any) (string, bool) {
	if typ == "Bundle" {
		// A stored Bundle is a document: its entries' references are what
		// was sent (a transaction kept as a record, say), not links this
		// record makes.
		return "", false
	}
	var walk func(path string, v any) (string, bool)
	walk = func(path string, v any) (string, bool) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if s, ok := x[k].(string); ok && k == "reference" && isConditionalRef(s) {
					return path + ".reference", true
				}
				if p, ok := walk(path+"."+k, x[k]); ok {
					return p, true
				}
			}
		case []any:
			for i, c := range x {
				if p, ok := walk(fmt.Sprintf("%s[%d]", path, i), c); ok {
					return p, true
				}
			}
		}
		return "", false
	}
	return walk(typ, doc)
}

// isConditionalRef reports whether a reference is Type?query.
func isConditionalRef(s string) bool {
	t, _, ok := strings.Cut(s, "?")
	return ok && fhir.IsResourceType(t)
}

func errConditionalRef(path string) error {
	return errs.E(errs.Unprocessable, "a conditional reference is resolved only inside a transaction Bundle; here it would point at nothing: give the literal reference (Type/id)").InField(path)
}
