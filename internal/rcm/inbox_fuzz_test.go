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
		in, cur string
		want    int64
		ok      bool
	}{
		{`450`, "EGP", 45000, true}, {`450.5`, "EGP", 45050, true}, {`"12.345"`, "EGP", 1235, true}, {`-3.10`, "EGP", -310, true},
		{`0.1`, "EGP", 10, true}, {`1e20`, "EGP", 0, false}, {`"abc"`, "EGP", 0, false}, {`null`, "EGP", 0, false},
		// Exact where a float is not: 0.285 is 0.28499999... as a float64.
		{`0.285`, "EGP", 29, true}, {`1.5e2`, "EGP", 15000, true},
		// A currency's own places: fils of KWD, whole yen.
		{`3.125`, "KWD", 3125, true}, {`"3.1255"`, "KWD", 3126, true}, {`450.5`, "JPY", 451, true},
		// A code nobody knows reads with two places.
		{`450.5`, "", 45050, true},
	} {
		got, ok := parseMinor(json.RawMessage(tc.in), tc.cur)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseMinor(%s, %q) = %d, %v; want %d, %v", tc.in, tc.cur, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		v         int64
		cur, want string
	}{{0, "EGP", "0.00"}, {5, "EGP", "0.05"}, {45050, "EGP", "450.50"}, {-310, "EGP", "-3.10"}, {3125, "KWD", "3.125"}, {451, "JPY", "451"}} {
		if got := FormatAmount(tc.v, tc.cur); got != tc.want {
			t.Errorf("FormatAmount(%d, %s) = %s, want %s", tc.v, tc.cur, got, tc.want)
		}
		if back, ok := parseMinor(json.RawMessage(minorJSON(tc.v, tc.cur)), tc.cur); !ok || back != tc.v {
			t.Errorf("%d %s does not round-trip: %d, %v", tc.v, tc.cur, back, ok)
		}
	}
}
