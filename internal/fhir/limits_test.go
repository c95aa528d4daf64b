package fhir

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// cost is what a document spends of each limit, measured on the parsed
// tree: the independent answer Limits.Check must agree with.
type cost struct {
	elements, arrayItems, depth, stringBytes, bundleEntries int
}

func measure(raw []byte) (cost, error) {
	v, err := parseJSON(raw)
	if err != nil {
		return cost{}, err
	}
	var c cost
	var walk func(v *jsonValue, depth int, scope *int, scopeRoot, bundleEntry bool)
	walk = func(v *jsonValue, depth int, scope *int, scopeRoot, bundleEntry bool) {
		*scope++
		c.elements = max(c.elements, *scope)
		switch v.kind {
		case jsonString:
			c.stringBytes = max(c.stringBytes, len(v.text))
		case jsonArray:
			c.depth = max(c.depth, depth)
			for i := range v.items {
				walk(&v.items[i], depth+1, scope, false, false)
			}
		case jsonObject:
			c.depth = max(c.depth, depth)
			for i := range v.members {
				m := &v.members[i]
				switch {
				case scopeRoot && m.key == "entry" && m.val.kind == jsonArray:
					*scope++
					c.elements = max(c.elements, *scope)
					c.depth = max(c.depth, depth+1)
					c.bundleEntries = max(c.bundleEntries, len(m.val.items))
					for j := range m.val.items {
						walk(&m.val.items[j], depth+2, scope, false, true)
					}
				case bundleEntry && m.key == "resource" && m.val.kind == jsonObject:
					*scope++
					own := 0
					walk(&m.val, depth+1, &own, true, false)
				default:
					walk(&m.val, depth+1, scope, false, false)
				}
			}
		}
		if v.kind == jsonArray {
			c.arrayItems = max(c.arrayItems, len(v.items))
		}
	}
	n := 0
	walk(&v, 1, &n, v.kind == jsonObject, false)
	return c, nil
}

// TestEverySharedSamplePassesTheDefaults reads every real sample (HL7,
// NPHIES, HCX) and checks it passes the default limits with a wide margin:
// a tenth of each default covers it. It also checks Check against the
// independent measure: each sample passes limits set to exactly its cost
// and fails, naming that limit, one below.
func TestEverySharedSamplePassesTheDefaults(t *testing.T) {
	dir, files := sampleFiles(t)
	d := DefaultLimits()
	var most cost
	for _, name := range files {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := measure(raw)
		if err != nil {
			continue // not JSON: the parser's business
		}
		if e := (Limits{}).Check(raw, "Resource"); e != nil {
			t.Errorf("%s: refused by the defaults: %v at %s", name, e, e.Path)
		}
		most = cost{max(most.elements, c.elements), max(most.arrayItems, c.arrayItems), max(most.depth, c.depth), max(most.stringBytes, c.stringBytes), max(most.bundleEntries, c.bundleEntries)}

		exact := Limits{Elements: c.elements, ArrayItems: max(c.arrayItems, 1), Depth: c.depth, StringBytes: max(c.stringBytes, 1), BundleEntries: max(c.bundleEntries, 1)}
		if e := exact.Check(raw, "Resource"); e != nil {
			t.Errorf("%s: refused at exactly its cost %+v: %v at %s", name, c, e, e.Path)
		}
		for _, tight := range []struct {
			limit string
			l     Limits
			skip  bool
		}{
			{LimitElements, Limits{Elements: c.elements - 1}, c.elements <= 1},
			{LimitArrayItems, Limits{ArrayItems: c.arrayItems - 1}, c.arrayItems <= 1},
			{LimitDepth, Limits{Depth: c.depth - 1}, c.depth <= 1},
			{LimitStringBytes, Limits{StringBytes: c.stringBytes - 1}, c.stringBytes <= 1},
			{LimitBundleEntries, Limits{BundleEntries: c.bundleEntries - 1}, c.bundleEntries <= 1},
		} {
			if tight.skip {
				continue
			}
			e := tight.l.Check(raw, "Resource")
			if e == nil || e.Limit != tight.limit {
				t.Errorf("%s: with %s one below its cost, got %v, want that limit", name, tight.limit, e)
			}
		}
	}
	t.Logf("most of any sample: %d elements in one resource, %d array items, depth %d, %d string bytes, %d Bundle entries",
		most.elements, most.arrayItems, most.depth, most.stringBytes, most.bundleEntries)
	for _, m := range []struct {
		name         string
		used, limit  int
		marginFactor int
	}{
		{LimitElements, most.elements, d.Elements, 10},
		{LimitArrayItems, most.arrayItems, d.ArrayItems, 10},
		{LimitDepth, most.depth, d.Depth, 3},
		{LimitStringBytes, most.stringBytes, d.StringBytes, 10},
		{LimitBundleEntries, most.bundleEntries, d.BundleEntries, 10},
	} {
		if m.used*m.marginFactor > m.limit {
			t.Errorf("the default %s (%d) is within %d× of a real sample (%d)", m.name, m.limit, m.marginFactor, m.used)
		}
	}
}

func TestCheckRefusesAtTheLimitNamingThePath(t *testing.T) {
	given := func(n int) string {
		return `"` + strings.Repeat(`x","`, n-1) + `x"`
	}
	nested := func(n int) string {
		return strings.Repeat(`{"item":[`, n) + `{"linkId":"a"}` + strings.Repeat(`]}`, n)
	}
	small := Limits{Elements: 50, ArrayItems: 5, Depth: 8, StringBytes: 16, BundleEntries: 2}
	for _, tc := range []struct {
		name      string
		body      string
		root      string
		wantLimit string
		wantPath  string
	}{
		{"an array at its item limit passes", `{"resourceType":"Patient","name":[{"given":[` + given(5) + `]}]}`, "Patient", "", ""},
		{"an array one over its item limit is refused at the array", `{"resourceType":"Patient","name":[{"family":"f"},{"given":[` + given(6) + `]}]}`, "Patient", LimitArrayItems, "Patient.name[1].given"},
		{"a resource under its element limit passes", `{"resourceType":"Patient","name":[` + strings.Repeat(`{"given":["a","b","c"]},`, 4) + `{"given":["a","b","c"]}]}`, "Patient", "", ""},
		{"a string over the limit is refused at the string", `{"resourceType":"Patient","name":[{"given":["short","0123456789abcdefg"]}]}`, "Patient", LimitStringBytes, "Patient.name[0].given[1]"},
		{"a member string over the limit is refused at the member", `{"resourceType":"Patient","gender":"0123456789abcdefg"}`, "Patient", LimitStringBytes, "Patient.gender"},
		{"escapes count as what they decode to", `{"resourceType":"Patient","gender":"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"}`, "Patient", "", ""},
		{"nesting past the depth is refused", `{"resourceType":"Questionnaire","item":[` + nested(3) + `]}`, "Questionnaire", LimitDepth, "Questionnaire.item[0].item[0].item[0].item[0]"},
		{"a Bundle over its entry limit is refused at entry", `{"resourceType":"Bundle","entry":[{},{},{}]}`, "Bundle", LimitBundleEntries, "Bundle.entry"},
		{"an entry resource is its own scope for elements", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","name":[{"given":["a","b","c","d","e"]}]}},{"resource":{"resourceType":"Patient","name":[{"given":["a","b","c","d","e"]}]}}]}`, "Bundle", "", ""},
		{"an entry resource's array is named by its full path", `{"resourceType":"Bundle","entry":[{"fullUrl":"urn:uuid:1"},{"resource":{"resourceType":"Patient","name":[{"given":[` + given(6) + `]}]}}]}`, "Bundle", LimitArrayItems, "Bundle.entry[1].resource.name[0].given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := small.Check([]byte(tc.body), tc.root)
			if tc.wantLimit == "" {
				if e != nil {
					t.Fatalf("refused: %v at %s", e, e.Path)
				}
				return
			}
			if e == nil {
				t.Fatalf("passed, want %s at %s", tc.wantLimit, tc.wantPath)
			}
			if e.Limit != tc.wantLimit || e.Path != tc.wantPath {
				t.Errorf("got %s at %s, want %s at %s", e.Limit, e.Path, tc.wantLimit, tc.wantPath)
			}
		})
	}
}

func TestCheckElementsCountsEveryValueOfOneResource(t *testing.T) {
	// 1 root + resourceType + name array + 5 × (object + given array + 3 strings) = 28.
	body := []byte(`{"resourceType":"Patient","name":[` + strings.Repeat(`{"given":["a","b","c"]},`, 4) + `{"given":["a","b","c"]}]}`)
	if e := (Limits{Elements: 28}).Check(body, "Patient"); e != nil {
		t.Fatalf("28 elements refused at 28: %v", e)
	}
	e := (Limits{Elements: 27}).Check(body, "Patient")
	if e == nil || e.Limit != LimitElements || e.Path != "Patient.name[4].given[2]" {
		t.Fatalf("got %v, want %s at Patient.name[4].given[2]", e, LimitElements)
	}
}

// TestCheckRefusesHalfAMillionGivenNamesAtOnce is the attack of issue #8:
// 500,000 given names in one Patient, refused by the defaults.
func TestCheckRefusesHalfAMillionGivenNamesAtOnce(t *testing.T) {
	body := []byte(`{"resourceType":"Patient","name":[{"given":["` + strings.Repeat(`Ann","`, 500_000-1) + `Ann"]}]}`)
	e := (Limits{}).Check(body, "Patient")
	if e == nil || e.Limit != LimitArrayItems || e.Path != "Patient.name[0].given" {
		t.Fatalf("got %v, want %s at Patient.name[0].given", e, LimitArrayItems)
	}
	if strings.Contains(e.Error(), "Ann") || strings.Contains(e.Issue().Diagnostics, "Ann") {
		t.Errorf("the message repeats a value: %s", e.Error())
	}
	if is := e.Issue(); is.Code != IssueTooCostly || is.Severity != SeverityError || len(is.Expression) != 1 || is.Expression[0] != e.Path {
		t.Errorf("issue %+v", is)
	}
}

// TestCheckEndsOnMalformedInput: Check is not the parser; whatever it is
// given, it ends, and leaves syntax errors to the parser.
func TestCheckEndsOnMalformedInput(t *testing.T) {
	for _, body := range []string{``, `{`, `"`, `{"a":"\`, `[[[[`, `]]]}}}`, `{"a":"\u12`, `@@@`, `{"a":tru`, `{"a" "b"}`, `{,,,:::}`} {
		if e := (Limits{}).Check([]byte(body), "Patient"); e != nil {
			t.Errorf("%q: %v", body, e)
		}
	}
	if e := (Limits{Depth: 3}).Check([]byte(`[[[[`), "X"); e == nil || e.Limit != LimitDepth {
		t.Errorf("unclosed nesting past the limit: %v", e)
	}
}

// sameLimitError reports whether ReadAll's error is Check's answer.
func sameLimitError(want *LimitError, got error) bool {
	if want == nil {
		return got == nil
	}
	var le *LimitError
	return errors.As(got, &le) && *le == *want
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestReadAllStopsReadingAtTheLimit: an over-limit body is not read whole;
// ReadAll stops a little past the element that crossed the limit.
func TestReadAllStopsReadingAtTheLimit(t *testing.T) {
	body := []byte(`{"resourceType":"Patient","name":[{"given":["` + strings.Repeat(`Ann","`, 500_000-1) + `Ann"]}]}`)
	r := &countingReader{r: bytes.NewReader(body)}
	_, err := (Limits{}).ReadAll(r, "Patient")
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitArrayItems || le.Path != "Patient.name[0].given" {
		t.Fatalf("got %v, want %s at Patient.name[0].given", err, LimitArrayItems)
	}
	if r.n > 256<<10 {
		t.Errorf("read %d of %d bytes before refusing, want no more than the first 256 KiB", r.n, len(body))
	}
}

// TestReadAllAgreesWithCheckOnEverySample reads every shared sample one
// byte at a time, which cuts every string, escape and number, and checks
// ReadAll returns the bytes and Check's answer under tight limits.
func TestReadAllAgreesWithCheckOnEverySample(t *testing.T) {
	dir, files := sampleFiles(t)
	tight := Limits{Elements: 200, ArrayItems: 10, Depth: 8, StringBytes: 200, BundleEntries: 5}
	for _, name := range files {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range []Limits{{}, tight} {
			want := l.Check(raw, "Resource")
			got, err := l.ReadAll(iotest.OneByteReader(bytes.NewReader(raw)), "Resource")
			if !sameLimitError(want, err) {
				t.Errorf("%s: Check says %v, ReadAll %v", name, want, err)
			}
			if want == nil && !bytes.Equal(got, raw) {
				t.Errorf("%s: ReadAll returned other bytes", name)
			}
		}
	}
}

func FuzzLimitsCheck(f *testing.F) {
	for _, s := range []string{`{"resourceType":"Patient","name":[{"given":["a"]}]}`, `{"resourceType":"Bundle","entry":[{"resource":{"a":[1,2,{"b":"\ud83d\ude00"}]}}]}`, `[`, `{"a":"\"}`} {
		f.Add([]byte(s))
	}
	small := Limits{Elements: 20, ArrayItems: 4, Depth: 5, StringBytes: 8, BundleEntries: 2}
	f.Fuzz(func(t *testing.T, raw []byte) {
		e := small.Check(raw, "X")
		for _, r := range []io.Reader{iotest.OneByteReader(bytes.NewReader(raw)), iotest.HalfReader(bytes.NewReader(raw))} {
			got, err := small.ReadAll(r, "X")
			if !sameLimitError(e, err) {
				t.Fatalf("Check says %v, ReadAll in pieces %v", e, err)
			}
			if e == nil && !bytes.Equal(got, raw) {
				t.Fatalf("ReadAll returned %q, not what it read", got)
			}
		}
		c, err := measure(raw)
		if err != nil {
			return
		}
		over := c.elements > small.Elements || c.arrayItems > small.ArrayItems || c.depth > small.Depth || c.stringBytes > small.StringBytes || c.bundleEntries > small.BundleEntries
		if (e != nil) != over {
			t.Fatalf("Check says %v, the parsed tree costs %+v", e, c)
		}
	})
}
