package sim

import (
	"math"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestTheDefaultAndExampleRulesAreValid(t *testing.T) {
	r := DefaultRules()
	if len(r.Payers) != 2 || r.Payers[0].Currency != "EGP" || r.Payers[0].Plans[0].Copay != 5000 {
		t.Fatalf("default rules read as %+v", r.Payers[0])
	}
	b, err := os.ReadFile("../../../examples/payer-sim/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := ParseRules(b)
	if err != nil {
		t.Fatalf("the example rules: %v", err)
	}
	if ex.Payers[0].Faults.Latency.Kind == "" || len(ex.Payers[0].InformationRequests) == 0 {
		t.Fatalf("the example does not show every rule: %+v", ex.Payers[0])
	}
}

func TestRulesMistakesNameTheLineAndTheField(t *testing.T) {
	base := `seed: 1
payers:
  - code: p1
    name: P1
    plans:
      - id: a
        member_patterns: ["*"]
        covered: ["*"]
`
	cases := []struct {
		name, yaml, want string
	}{
		{"an unknown field", base + "        copays: 5\n", "line 9: field copays not found"},
		{"a wrong type", strings.Replace(base, "seed: 1", "seed: many", 1), "line 1"},
		{"an amount with three decimals", base + "        copay: \"1.005\"\n", "line 9"},
		{"a negative co-insurance", base + "        coinsurance_percent: -1\n", "rules line 9: payers[0].plans[0].coinsurance_percent: must be between 0 and 100"},
		{"a plan with no members", strings.Replace(base, `        member_patterns: ["*"]`+"\n", "", 1), "rules line 6: payers[0].plans[0].members"},
		{"a rate above one", base + "    faults:\n      error_rate: 1.5\n", "rules line 10: payers[0].faults.error_rate: a rate is a fraction between 0 and 1"},
		{"a latency without its kind", base + "    faults:\n      latency: {p50: 10ms}\n", "payers[0].faults.latency.kind"},
		{"a log-normal p99 below p50", base + "    faults:\n      latency: {kind: lognormal, p50: 10ms, p99: 5ms}\n", "payers[0].faults.latency.p99"},
		{"an answer delay of an unknown kind", base + "    faults:\n      answer_delay: {kind: normal}\n", "rules line 10: payers[0].faults.answer_delay.kind: must be fixed, uniform or lognormal"},
		{"a partial fraction of one", base + "    partial_payments:\n      - {codes: [\"1\"], fraction: 1}\n", "rules line 10: payers[0].partial_payments[0].fraction"},
		{"a denial without reason", base + "    denials:\n      - {codes: [\"1\"]}\n", "payers[0].denials[0].reason"},
		{"a code with a space", base + "    preauth_refused: [\"a b\"]\n", "rules line 9: payers[0].preauth_refused[0]"},
		{"the gateway's code taken by a payer", strings.Replace(base, "code: p1", "code: hcx-gateway", 1), "payers[0].code: the code is used twice"},
		{"no payers", "seed: 1\n", "payers: at least one payer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRules([]byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want it to say %q", err, c.want)
			}
		})
	}
}

func TestJSONRulesAreReadToo(t *testing.T) {
	r, err := ParseRules([]byte(`{"payers":[{"code":"p","name":"P","currency":"SAR","payment_delay":"1m",
		"plans":[{"id":"a","members":["M1"],"covered":["99*"],"copay":"12.5","annual_limit":100}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := r.Payers[0]
	if p.Currency != "SAR" || p.PaymentDelay != time.Minute || p.Plans[0].Copay != 1250 || p.Plans[0].AnnualLimit != 10000 || r.Gateway.Code == "" {
		t.Fatalf("read as %+v", p)
	}
}

func TestAdjudicationDeductsCopayOnceAndCapsAtTheAnnualLimit(t *testing.T) {
	p := &PayerRules{Code: "p", Currency: "EGP", Plans: []Plan{{ID: "g", Members: []string{"M"}, Covered: []string{"*"},
		Copay: 3000, CoinsurancePercent: 20, AnnualLimit: 20000}},
		PartialPayments: []PartialPayment{{Codes: []string{"P*"}, Fraction: 0.5}},
		Denials:         []Denial{{Codes: []string{"D1"}, Reason: "50", FirstSubmissionOnly: true}, {Codes: []string{"D2"}, Reason: "96"}},
	}
	tests := []struct {
		name     string
		in       adjudication
		benefits []Amount
		outcome  string
	}{
		{"co-pay taken from the first item that pays, co-insurance from the rest",
			adjudication{Use: useClaim, MemberID: "M", Lines: []line{{Code: "A", Net: 2000}, {Code: "B", Net: 10000}}},
			[]Amount{0, 7200}, OutcomeApproved},
		{"the annual limit caps what is left of the year",
			adjudication{Use: useClaim, MemberID: "M", UsedThisYear: 15000, Lines: []line{{Code: "A", Net: 50000}}},
			[]Amount{5000}, OutcomePartial},
		{"a partial payment halves the benefit",
			adjudication{Use: useClaim, MemberID: "M", Lines: []line{{Code: "P7", Net: 13000}}},
			[]Amount{4000}, OutcomePartial},
		{"a first-submission denial does not deny the appeal",
			adjudication{Use: useClaim, MemberID: "M", Appeal: true, Lines: []line{{Code: "D1", Net: 13000}, {Code: "D2", Net: 100}}},
			[]Amount{8000, 0}, OutcomePartial},
		{"every line denied denies the claim",
			adjudication{Use: useClaim, MemberID: "M", Lines: []line{{Code: "D1", Net: 13000}}},
			[]Amount{0}, OutcomeDenied},
		{"a pre-authorization has no limit or partial payment",
			adjudication{Use: usePreauth, MemberID: "M", UsedThisYear: 20000, Lines: []line{{Code: "P1", Net: 13000}}},
			[]Amount{8000}, OutcomeApproved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.adjudicate(tt.in)
			var got []Amount
			for _, it := range d.Items {
				got = append(got, it.Benefit)
			}
			if d.Outcome != tt.outcome || len(got) != len(tt.benefits) {
				t.Fatalf("outcome %s benefits %v", d.Outcome, got)
			}
			for i := range got {
				if got[i] != tt.benefits[i] {
					t.Fatalf("benefits %v, want %v", got, tt.benefits)
				}
			}
		})
	}
}

func TestAmountsReadAndWriteAsDecimals(t *testing.T) {
	for in, want := range map[string]string{"0": "0.00", "12.5": "12.50", "12.05": "12.05", "1000000": "1000000.00"} {
		a, err := ParseAmount(in)
		if err != nil || a.String() != want {
			t.Fatalf("%s: %v %v", in, a, err)
		}
	}
	for _, bad := range []string{"", "-1", "1.234", "1e3", "abc", ".5"} {
		if _, err := ParseAmount(bad); err == nil {
			t.Fatalf("%q was read as an amount", bad)
		}
	}
}

func TestLatencyDistributionsHaveTheirShape(t *testing.T) {
	d := newDice(3)
	const n = 20000
	draw := func(l Latency) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d.latency(l)
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out
	}
	ln := draw(Latency{Kind: "lognormal", P50: 50 * time.Millisecond, P99: 500 * time.Millisecond})
	p50, p99 := ln[n/2], ln[n*99/100]
	if math.Abs(float64(p50-50*time.Millisecond)) > float64(5*time.Millisecond) || math.Abs(float64(p99-500*time.Millisecond)) > float64(80*time.Millisecond) {
		t.Fatalf("log-normal p50 %v p99 %v, want about 50ms and 500ms", p50, p99)
	}
	u := draw(Latency{Kind: "uniform", Min: 10 * time.Millisecond, Max: 20 * time.Millisecond})
	if u[0] < 10*time.Millisecond || u[n-1] > 20*time.Millisecond || u[n/2] < 14*time.Millisecond || u[n/2] > 16*time.Millisecond {
		t.Fatalf("uniform: min %v median %v max %v", u[0], u[n/2], u[n-1])
	}
	if d.latency(Latency{Kind: "fixed", Value: time.Second}) != time.Second || d.latency(Latency{}) != 0 {
		t.Fatal("fixed or none")
	}
	a, b := newDice(9), newDice(9)
	for range 100 {
		if a.requestFault(Faults{ErrorRate: 0.3, TimeoutRate: 0.3}) != b.requestFault(Faults{ErrorRate: 0.3, TimeoutRate: 0.3}) {
			t.Fatal("the same seed made other choices")
		}
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add([]byte(defaultRulesYAML))
	f.Add([]byte(`{"payers":[]}`))
	f.Add([]byte("payers:\n  - code: [\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRules(b)
		if err == nil && len(r.Payers) == 0 {
			t.Fatal("rules without payers were accepted")
		}
	})
}
