package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestEachMemberKeepsOrderBytesAndElements(t *testing.T) {
	t.Parallel()
	doc := []byte(`{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{"id":"b"},"name":[ {"family":"X"} ],"n":1.50}`)
	var out bytes.Buffer
	out.WriteByte('{')
	first := true
	var elements []string
	err := EachMember(doc, func(key, element string, val json.RawMessage) error {
		elements = append(elements, element)
		if element != "resourceType" {
			AppendMember(&out, first, key, val)
			first = false
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out.WriteByte('}')
	if want := `{"birthDate":"1970-01-01","_birthDate":{"id":"b"},"name":[ {"family":"X"} ],"n":1.50}`; out.String() != want {
		t.Errorf("copied members = %s, want %s", out.String(), want)
	}
	if got := elements; len(got) != 5 || got[1] != "birthDate" || got[2] != "birthDate" {
		t.Errorf("elements = %v", got)
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"a":1} {"b":2}`, `{"a":1`, `{"a":}`} {
		if err := EachMember([]byte(bad), func(string, string, json.RawMessage) error { return nil }); !errors.Is(err, ErrNotObject) {
			t.Errorf("EachMember(%q) = %v, want ErrNotObject", bad, err)
		}
	}
	stop := errors.New("stop")
	if err := EachMember(doc, func(string, string, json.RawMessage) error { return stop }); err != stop {
		t.Errorf("fn's error = %v, want it returned", err)
	}
}
