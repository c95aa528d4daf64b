package fhir

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBundleEntryCount(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, json string
		want       int
	}{
		{"no entries", `{"resourceType":"Bundle","type":"batch"}`, 0},
		{"an empty entry array", `{"resourceType":"Bundle","entry":[]}`, 0},
		{"entries after nested look-alikes", `{"meta":{"entry":[1,2,3]},"x":"\"entry\":[1,2]","entry":[{"resource":{"entry":[{},{}]}},{"a":"]}"},{"b":[[],[{}]]}],"type":"batch"}`, 3},
		{"entries before other members", "\ufeff" + ` { "entry" : [ {} , {} ] , "type" : "transaction" , "n" : -1.5e3 , "t" : true }`, 2},
		{"a repeated entry key counts both", `{"entry":[{}],"entry":[{},{}]}`, 3},
		{"an escaped entry key counts", `{"entr\u0079":[{},{}],"\u0065ntry":[{}],"entry\u0000":[{}]}`, 3},
		{"not an object", `[{"entry":[{}]}]`, 0},
		{"cut short", `{"entry":[{},{`, 1},
	}
	for _, c := range cases {
		if got := BundleEntryCount([]byte(c.json)); got != c.want {
			t.Errorf("%s: %d entries, want %d", c.name, got, c.want)
		}
	}
}

// The skim agrees with the full parser on every shared sample Bundle.
func TestBundleEntryCountAgreesWithParseBundleOnSamples(t *testing.T) {
	t.Parallel()
	dir := sampleDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "fhir-r4", "*.json"))
	checked := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		env, err := ReadEnvelope(raw)
		if err != nil || env.ResourceType != "Bundle" {
			continue
		}
		b, err := ParseBundle(raw)
		if err != nil {
			continue
		}
		if got := BundleEntryCount(raw); got != len(b.Entry) {
			t.Errorf("%s: skimmed %d entries, parsed %d", filepath.Base(f), got, len(b.Entry))
		}
		checked++
	}
	if checked == 0 {
		t.Skip("no sample Bundles found")
	}
	t.Logf("%d sample Bundles counted alike", checked)
}

// FuzzBundleEntryCount checks that the skim never panics and, on any JSON
// the parser accepts, counts exactly the items of the top-level "entry"
// arrays.
func FuzzBundleEntryCount(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient"}},{}]}`))
	f.Add([]byte(`{"a":"\"entry\":[1]","entry":[[],{"entry":[1,2]},"]",-1e5,null,true]}`))
	f.Add([]byte(`{"entry":[{}],"entry":[1]}`))
	f.Add([]byte(`{"entr\u0079":[{},{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got := BundleEntryCount(data)
		v, err := parseJSON(data)
		if err != nil || v.kind != jsonObject {
			return
		}
		want := 0
		for _, m := range v.members {
			if m.key == "entry" && m.val.kind == jsonArray {
				want += len(m.val.items)
			}
		}
		if got != want {
			t.Fatalf("skimmed %d entries, parsed %d: %q", got, want, data)
		}
	})
}
