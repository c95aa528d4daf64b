package sim

import (
	"strings"
	"testing"
)

func TestAClaimIsReadWithItsMemberRelatedAndLines(t *testing.T) {
	payload := `{"resourceType":"Bundle","type":"collection","entry":[
	 {"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Claim","id":"c1","status":"active","use":"claim",
	  "identifier":[{"system":"s","value":""},{"system":"s","value":"CLM-9"}],
	  "related":[{"claim":{"identifier":{"value":"CLM-1"}}}],
	  "insurance":[{"sequence":1,"focal":false,"coverage":{"reference":"Coverage/x"}},
	               {"sequence":2,"focal":true,"coverage":{"reference":"urn:uuid:cov2"},"preAuthRef":["PA-1"]}],
	  "item":[{"sequence":1,"productOrService":{"coding":[{"code":"A1"}]},"unitPrice":{"value":12.5},"quantity":{"value":3}},
	          {"sequence":2,"productOrService":{"coding":[{"code":"B2"}]},"net":{"value":"7"}},
	          {"sequence":3,"productOrService":{"coding":[{"code":"C3"}]}}]}},
	 {"fullUrl":"urn:uuid:cov2","resource":{"resourceType":"Coverage","id":"cov2","identifier":[{"value":"MEM-2"}]}}]}`
	rb, err := readRequest([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	c, err := rb.claim()
	if err != nil {
		t.Fatal(err)
	}
	if c.Identifier.Value != "CLM-9" || c.Related != "CLM-1" || c.MemberID != "MEM-2" || len(c.PreAuthRef) != 1 {
		t.Fatalf("read %+v", c)
	}
	want := []Amount{3750, 700, 0}
	for i, l := range c.Lines {
		if l.Net != want[i] {
			t.Fatalf("line %d: %v, want %v", i+1, l.Net, want[i])
		}
	}
}

func TestUnreadableRequestsAreDomainErrorsNamingTheRule(t *testing.T) {
	for name, payload := range map[string]string{
		"not JSON":              `{`,
		"no Claim":              `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p"}}]}`,
		"a Claim without use":   `{"resourceType":"Claim","identifier":[{"value":"X"}],"item":[{"productOrService":{"coding":[{"code":"A"}]}}]}`,
		"a Claim without items": `{"resourceType":"Claim","use":"claim","identifier":[{"value":"X"}]}`,
		"an item without code":  `{"resourceType":"Claim","use":"claim","identifier":[{"value":"X"}],"item":[{"productOrService":{"text":"x"}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			rb, err := readRequest([]byte(payload))
			if err == nil {
				_, err = rb.claim()
			}
			de, ok := err.(*domainErr)
			if !ok || de.rule == "" || strings.Contains(de.rule, "X") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Claim","use":"claim","identifier":[{"value":"X"}],"item":[{"productOrService":{"coding":[{"code":"A"}]},"net":{"value":1}}]}}]}`))
	f.Add([]byte(`{"resourceType":"CoverageEligibilityRequest","insurance":[{"coverage":{"reference":"Coverage/1"}}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rb, err := readRequest(b)
		if err != nil {
			return
		}
		if c, err := rb.claim(); err == nil && (c.Identifier.Value == "" || len(c.Lines) == 0) {
			t.Fatal("a claim without identity or lines was read")
		}
		_, _, _ = rb.eligibility()
	})
}
