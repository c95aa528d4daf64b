package hcx

import (
	"encoding/json"
	"testing"
)

// FuzzDecrypt: whatever arrives as an HCX body, reading it never panics,
// and a refusal never returns a payload.
func FuzzDecrypt(f *testing.F) {
	f.Add([]byte(`{"payload":"a.b.c.d.e"}`))
	f.Add([]byte(`{"payload":"eyJhbGciOiJub25lIn0....."}`))
	f.Add([]byte(`{"payload":5}`))
	keys := testKeys()[:1]
	f.Fuzz(func(t *testing.T, body []byte) {
		compact, err := ParseBody(body)
		if err != nil {
			return
		}
		if _, p, err := Decrypt(compact, keys); err != nil && p != nil {
			t.Fatal("a refusal returned a payload")
		}
	})
}

// FuzzReadBundle: any payload is read or refused, never a panic; a
// reading always has its main resource.
func FuzzReadBundle(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Claim"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition","section":[{"entry":[{"reference":"Claim/1"}]}]}},{"resource":{"resourceType":"Claim","id":"1"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"MessageHeader","focus":[{"reference":"x"}]}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ReadBundle(raw)
		if err != nil {
			return
		}
		if r.MainType == "" || len(r.Main) == 0 {
			t.Fatalf("a reading without its main resource: %+v", r)
		}
	})
}

// FuzzParseTimestamp: a timestamp is read or refused, never a panic.
func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{`"2023-08-17T18:43:48+05:30"`, `1692278028000`, `"1692278028000"`, `"99999999999999999999"`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _ = ParseTimestamp(json.RawMessage(raw))
	})
}
