package rcm

import (
	"encoding/json"
	"testing"

	"github.com/careflow/careflow/internal/payer"
)

// FuzzReadMessage feeds arbitrary payloads to the lenient reading of a
// payer's message and of the resources a journey takes from it: nothing
// panics, every resource kept is JSON, and amounts read are what a
// decimal can hold.
func FuzzReadMessage(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition"}},{"resource":{"resourceType":"ClaimResponse","outcome":"complete","total":[{"category":{"coding":[{"code":"benefit"}]},"amount":{"value":450.5}}]}}]}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"PaymentReconciliation","paymentAmount":{"value":"12.345"},"detail":[{"request":{"reference":"Claim/1"},"amount":{"value":1e3}}]}}]}`,
		`{"resourceType":"ClaimResponse","outcome":"error","error":[{"code":{"coding":[{"code":"CO-50"}]}}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":null},{},{"resource":[]}]}`,
		`not json`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a := readMessage(payer.Message{Action: payer.ClaimOnSubmit, Bundle: b})
		for _, r := range a.Resources {
			if !json.Valid(r) {
				t.Fatalf("kept a resource that is not JSON: %q", r)
			}
		}
		cr := a.first("ClaimResponse")
		_, _ = approvedAmount(cr)
		if c := safeCode(denialReason(cr)); len(c) > 64 {
			t.Fatalf("a reason code of %d bytes", len(c))
		}
		_, _ = paidAmount(&a, "1")
	})
}

func TestMinorUnitsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{`450`, 45000, true}, {`450.5`, 45050, true}, {`"12.345"`, 1235, true}, {`-3.10`, -310, true},
		{`0.1`, 10, true}, {`1e20`, 0, false}, {`"abc"`, 0, false}, {`null`, 0, false},
	} {
		got, ok := parseMinor(json.RawMessage(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseMinor(%s) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for v, want := range map[int64]string{0: "0.00", 5: "0.05", 45050: "450.50", -310: "-3.10"} {
		if got := formatMinor(v); got != want {
			t.Errorf("formatMinor(%d) = %s, want %s", v, got, want)
		}
	}
}
