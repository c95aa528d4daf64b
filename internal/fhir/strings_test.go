package fhir

import (
	"strings"
	"testing"
)

func TestStringsRefuseControlCharactersAndNamesRefuseDisguises(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		// R4 2.24.0.1: nothing below U+0020 but tab, CR and LF, in any
		// string-based type.
		{"a NUL in a family name is refused", `{"resourceType":"Patient","name":[{"family":"Hassan\u0000"}]}`, []string{"value@Patient.name[0].family"}},
		{"a bell in an address line is refused", `{"resourceType":"Patient","address":[{"line":["12 Nile St\u0007"]}]}`, []string{"value@Patient.address[0].line[0]"}},
		{"an escape in a code is refused", `{"resourceType":"Patient","gender":"female\u001b"}`, []string{"value@Patient.gender"}},
		{"a form feed in markdown is refused", `{"resourceType":"Observation","status":"final","code":{"text":"bp"},"note":[{"text":"page\fbreak"}]}`, []string{"value@Observation.note[0].text"}},
		{"tab, CR and LF in a note are text", `{"resourceType":"Observation","status":"final","code":{"text":"bp"},"note":[{"text":"line one\r\nline\ttwo"}]}`, nil},
		// An unpaired surrogate is no character: a JSON error (400) naming
		// where it is, not a U+FFFD stored in its place.
		{"an unpaired surrogate is malformed JSON", `{"resourceType":"Patient","name":[{"given":["Fatma","Am\ud800na"]}]}`, []string{"invalid@name[0].given[1]"}},
		{"a reversed surrogate pair is malformed JSON", `{"resourceType":"Patient","name":[{"family":"\udc00\ud800"}]}`, []string{"invalid@name[0].family"}},
		{"a surrogate pair is one character", `{"resourceType":"Patient","name":[{"family":"\ud83d\ude00"}]}`, nil},
		// Bidi controls and invisible characters in names and identifiers.
		{"a right-to-left override in a family name is refused", `{"resourceType":"Patient","name":[{"family":"Hassan\u202edam"}]}`, []string{"value@Patient.name[0].family"}},
		{"a first-strong isolate in a given name is refused", `{"resourceType":"Patient","name":[{"given":["Fatma","\u2068Amina\u2069"]}]}`, []string{"value@Patient.name[0].given[1]"}},
		{"a zero-width space in a name's text is refused", `{"resourceType":"Patient","name":[{"text":"Fat\u200bma Hassan"}]}`, []string{"value@Patient.name[0].text"}},
		{"a word joiner in a prefix is refused", `{"resourceType":"Practitioner","name":[{"prefix":["Dr\u2060"]}]}`, []string{"value@Practitioner.name[0].prefix[0]"}},
		{"a BOM inside an identifier value is refused", `{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"MRN\ufeff0042"}]}`, []string{"value@Patient.identifier[0].value"}},
		{"an embedding in a phone number is refused", `{"resourceType":"Patient","telecom":[{"system":"phone","value":"\u202a+20 100 000 0000"}]}`, []string{"value@Patient.telecom[0].value"}},
		{"a name inside a contained resource is checked too", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"performer":[{"reference":"#p"}],"contained":[{"resourceType":"Practitioner","id":"p","name":[{"family":"X\u202e"}]}]}`, []string{"value@Observation.contained[0].name[0].family"}},
		{"a name in a Bundle entry is checked", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:7c1f6a53-2b9e-4a35-9d84-2a8a6f3f5b10","resource":{"resourceType":"Patient","name":[{"family":"X\u200b"}]}}]}`, []string{"value@Bundle.entry[0].resource.name[0].family"}},
		// Allowed on purpose.
		{"an Arabic name is right-to-left script, not an override", `{"resourceType":"Patient","name":[{"family":"حسن","given":["فاطمة"],"text":"فاطمة حسن"}]}`, nil},
		{"a Persian name keeps its zero-width non-joiner", `{"resourceType":"Patient","name":[{"family":"حسین\u200cزاده","given":["می\u200cنا"]}]}`, nil},
		{"a zero-width joiner is allowed in a name", `{"resourceType":"Patient","name":[{"given":["क्\u200dष"]}]}`, nil},
		{"a right-to-left mark is allowed in a name", `{"resourceType":"Patient","name":[{"text":"Amina \u200fحسن"}]}`, nil},
		{"free text keeps a bidi control", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"note":[{"text":"quoted: \u202eabc\u202c"}]}`, nil},
	})
}

func TestIssuesOfRefusedCharactersNeverRepeatTheValue(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"resourceType":"Patient","name":[{"family":"Fatma\u0000Hassan"}]}`,
		`{"resourceType":"Patient","name":[{"family":"Fatma\u202eHassan"}]}`,
		`{"resourceType":"Patient","name":[{"family":"Fatma\udc00Hassan"}]}`,
	} {
		for _, is := range Validate([]byte(raw)) {
			if strings.Contains(is.Diagnostics, "Fatma") || strings.Contains(is.Diagnostics, "Hassan") {
				t.Fatalf("issue repeats the value: %+v", is)
			}
		}
	}
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, json, path string
		ok               bool
	}{
		{"a plain object", `{"a":1,"b":[{"a":2}]}`, "", true},
		{"a duplicate at the top", `{"a":1,"a":1}`, "a", false},
		{"a duplicate among many members", `{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"a3":3}`, "a3", false},
		{"a duplicate deep down", `{"a":[1,{"b":{"c":[{},{"d":1,"d":2}]}}]}`, "a[1].b.c[1].d", false},
		{"a free-text duplicate is withheld", `{"x":{"Fatma Hassan":1,"Fatma Hassan":2}}`, "x.?", false},
		{"a lone surrogate", `{"a":{"b":"\ud800"}}`, "a.b", false},
		{"a control character", `{"a":["ok","\u0000"]}`, "a[1]", false},
		{"a top-level string", `"\u0001"`, "(body)", false},
	}
	for _, c := range cases {
		err := CheckJSON([]byte(c.json))
		if (err == nil) != c.ok {
			t.Fatalf("%s: CheckJSON = %v, want ok %v", c.name, err, c.ok)
		}
		if err == nil {
			continue
		}
		se, isSyntax := err.(*SyntaxError)
		if !isSyntax || se.Path != c.path {
			t.Fatalf("%s: error %#v, want path %q", c.name, err, c.path)
		}
		if strings.Contains(err.Error(), "Fatma") {
			t.Fatalf("%s: error repeats a member name: %v", c.name, err)
		}
	}
}

// A member name is the client's text: an unknown or repeated one that is
// not shaped like an element name is reported as "?", so a name or birth
// date typed as a key does not travel on in an OperationOutcome or an
// import's error output.
func TestIssuesDoNotRepeatMemberNamesThatAreNotElementNames(t *testing.T) {
	t.Parallel()
	runValidateCases(t, []validateCase{
		{"an unknown free-text member", `{"resourceType":"Patient","Fatma Hassan 1961-07-13":true}`, []string{"structure@Patient.?"}},
		{"a repeated free-text member", `{"resourceType":"Patient","name":[{"Fatma Hassan":1,"Fatma Hassan":2}]}`, []string{"structure@Patient.name[0].?", "structure@Patient.name[0].?", "structure@Patient.name[0].?"}},
		{"an unknown element name is still named", `{"resourceType":"Patient","nmae":[{"family":"x"}]}`, []string{"structure@Patient.nmae"}},
	})
	for _, is := range Validate([]byte(`{"resourceType":"Patient","Fatma Hassan":true}`)) {
		if strings.Contains(is.Diagnostics, "Fatma") {
			t.Fatalf("issue repeats the member name: %+v", is)
		}
	}
}
