package sim

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/payer/hcx"
)

// Rules is what the simulated payers decide and how the gateway misbehaves.
// It is read from a YAML (or JSON) file by ParseRules; DefaultRules is the
// embedded example. Amounts are decimals in the payer's currency with at
// most two fractional digits, kept as minor units (cents).
type Rules struct {
	// Seed makes every random choice (latency, faults) reproducible: two
	// runs with the same seed and the same messages in the same order make
	// the same choices.
	Seed    int64        `yaml:"seed"`
	Gateway GatewayRules `yaml:"gateway"`
	Payers  []PayerRules `yaml:"payers"`
}

// GatewayRules names the gateway participant the simulator plays.
type GatewayRules struct {
	Code string `yaml:"code"`
	Name string `yaml:"name"`
}

// PayerRules is one simulated payer.
type PayerRules struct {
	Code     string `yaml:"code"`
	Name     string `yaml:"name"`
	Currency string `yaml:"currency"`
	Plans    []Plan `yaml:"plans"`
	// PreauthRequired lists the codes (a trailing * makes a prefix) whose
	// claims are denied without a prior approved pre-authorization, for
	// every plan of the payer.
	PreauthRequired []string `yaml:"preauth_required"`
	// PreauthRefused lists codes a pre-authorization is refused for.
	PreauthRefused []string `yaml:"preauth_refused"`
	// Denials deny the claim items with these codes.
	Denials []Denial `yaml:"denials"`
	// PartialPayments approve only a fraction of an item's benefit.
	PartialPayments []PartialPayment `yaml:"partial_payments"`
	// InformationRequests make the payer ask for more information (a
	// CommunicationRequest) before deciding on a pre-authorization or a
	// claim with one of these codes.
	InformationRequests []InformationRequest `yaml:"information_requests"`
	// PaymentDelay is how long after a claim's adjudication its payment
	// notice goes out.
	PaymentDelay time.Duration `yaml:"payment_delay"`
	Faults       Faults        `yaml:"faults"`
}

// Plan is a benefit plan: who it covers and what it pays.
type Plan struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Members are member ids (Coverage.subscriberId or identifier) on the
	// plan; MemberPatterns are shell patterns (path.Match) over member ids.
	Members        []string `yaml:"members"`
	MemberPatterns []string `yaml:"member_patterns"`
	// Covered lists the covered codes; a trailing * makes a prefix, a lone
	// * covers everything.
	Covered []string `yaml:"covered"`
	// Copay is deducted once per claim, from its first paid item on.
	Copay Amount `yaml:"copay"`
	// CoinsurancePercent of what remains after the co-pay is the member's.
	CoinsurancePercent float64 `yaml:"coinsurance_percent"`
	// AnnualLimit bounds the benefit paid per member and calendar year;
	// zero is no limit.
	AnnualLimit Amount `yaml:"annual_limit"`
	// PreauthRequired adds codes needing pre-authorization on this plan.
	PreauthRequired []string `yaml:"preauth_required"`
}

// Denial denies items with one of Codes, with a claim-denial reason code.
type Denial struct {
	Codes []string `yaml:"codes"`
	// Reason is the claim adjustment reason code (X12 CARC, as HCX uses),
	// e.g. "50" (not medically necessary).
	Reason  string `yaml:"reason"`
	Display string `yaml:"display"`
	// FirstSubmissionOnly denies only a claim without Claim.related: an
	// appeal or resubmission of it is adjudicated without this denial.
	FirstSubmissionOnly bool `yaml:"first_submission_only"`
}

// PartialPayment approves Fraction (0 < f < 1) of the benefit of items
// with one of Codes.
type PartialPayment struct {
	Codes    []string `yaml:"codes"`
	Fraction float64  `yaml:"fraction"`
	Reason   string   `yaml:"reason"`
}

// InformationRequest asks the provider for more information before the
// payer decides.
type InformationRequest struct {
	Codes []string `yaml:"codes"`
	// Question is the CommunicationRequest's text (no PHI: the rules file
	// is configuration).
	Question string `yaml:"question"`
	// On says which exchanges ask: "claim", "preauth" or "both" (default).
	On string `yaml:"on"`
}

// Faults are how the payer (through the gateway) misbehaves. Rates are
// fractions between 0 and 1.
type Faults struct {
	// Latency delays the gateway's synchronous answer.
	Latency Latency `yaml:"latency"`
	// AnswerDelay is how long the payer takes to answer: the delay of
	// each callback (answers, requests for information) after the message
	// that caused it. A payment notice waits PaymentDelay instead.
	AnswerDelay Latency `yaml:"answer_delay"`
	// ErrorRate is the fraction of requests answered 503 (nothing kept:
	// the sender retries).
	ErrorRate float64 `yaml:"error_rate"`
	// TimeoutRate is the fraction of requests held for TimeoutHold and then
	// dropped without an answer (the connection is closed). Nothing is
	// kept, as with an error.
	TimeoutRate float64       `yaml:"timeout_rate"`
	TimeoutHold time.Duration `yaml:"timeout_hold"`
	// DuplicateCallbacks is the fraction of callbacks delivered twice.
	DuplicateCallbacks float64 `yaml:"duplicate_callbacks"`
	// OutOfOrderCallbacks is the fraction of paid claims whose payment
	// notice is delivered before the claim response.
	OutOfOrderCallbacks float64 `yaml:"out_of_order_callbacks"`
}

// Latency is a distribution of delays: kind "fixed" (value), "uniform"
// (min, max), "lognormal" (p50, p99), or "" for none.
type Latency struct {
	Kind  string        `yaml:"kind"`
	Value time.Duration `yaml:"value"`
	Min   time.Duration `yaml:"min"`
	Max   time.Duration `yaml:"max"`
	P50   time.Duration `yaml:"p50"`
	P99   time.Duration `yaml:"p99"`
}

// Amount is money in minor units (1/100 of the currency).
type Amount int64

// UnmarshalYAML reads a decimal with at most two fractional digits.
func (a *Amount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: an amount is a decimal number", n.Line)
	}
	v, err := ParseAmount(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*a = v
	return nil
}

// ParseAmount reads a non-negative decimal with at most two fractional
// digits ("120", "120.5", "120.50") into minor units.
func ParseAmount(s string) (Amount, error) {
	whole, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	if whole == "" || len(frac) > 2 || strings.HasPrefix(whole, "-") || strings.HasPrefix(whole, "+") {
		return 0, fmt.Errorf("an amount is a non-negative decimal with at most two fractional digits")
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/1000 {
		return 0, fmt.Errorf("an amount is a non-negative decimal with at most two fractional digits")
	}
	var f int64
	if frac != "" {
		for len(frac) < 2 {
			frac += "0"
		}
		if f, err = strconv.ParseInt(frac, 10, 64); err != nil || f < 0 {
			return 0, fmt.Errorf("an amount is a non-negative decimal with at most two fractional digits")
		}
	}
	return Amount(w*100 + f), nil
}

// String is the amount as a decimal with two fractional digits, the form
// FHIR Money.value takes.
func (a Amount) String() string {
	sign := ""
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%02d", sign, a/100, a%100)
}

//go:embed default_rules.yaml
var defaultRulesYAML []byte

// DefaultRules returns the embedded rules (examples/payer-sim/rules.yaml
// documents the same shape).
func DefaultRules() *Rules {
	r, err := ParseRules(defaultRulesYAML)
	if err != nil {
		// The embedded file is tested; a failure here is a build mistake.
		panic("payer-sim default rules: " + err.Error())
	}
	return r
}

// ParseRules reads and validates a rules file: unknown fields, wrong types
// and inconsistent values are errors naming the line and the field.
func ParseRules(data []byte) (*Rules, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, errs.E(errs.Invalid, "rules: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var r Rules
	if err := dec.Decode(&r); err != nil {
		return nil, errs.E(errs.Invalid, "rules: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	r.setDefaults()
	if err := r.validate(); err != nil {
		var fe *fieldError
		if !errors.As(err, &fe) {
			return nil, errs.Wrap(errs.Invalid, err, "rules")
		}
		line := lineOf(&root, fe.path)
		return nil, errs.E(errs.Invalid, "rules line %d: %s: %s", line, joinPath(fe.path), fe.msg).InField(joinPath(fe.path))
	}
	return &r, nil
}

func (r *Rules) setDefaults() {
	if r.Gateway.Code == "" {
		// careflow's default gateway code (hcx.DefaultGatewayCode), so
		// `careflow serve --hcx-gateway URL` needs no other setting.
		r.Gateway.Code = hcx.DefaultGatewayCode
	}
	if r.Gateway.Name == "" {
		r.Gateway.Name = "HCX gateway (careflow simulator)"
	}
	for i := range r.Payers {
		p := &r.Payers[i]
		if p.Currency == "" {
			p.Currency = "EGP"
		}
		if p.Faults.TimeoutHold == 0 {
			p.Faults.TimeoutHold = 30 * time.Second
		}
		for j := range p.InformationRequests {
			if p.InformationRequests[j].On == "" {
				p.InformationRequests[j].On = "both"
			}
		}
	}
}

// fieldError is a validation failure at a path of the rules document.
type fieldError struct {
	path []any // string keys and int indexes
	msg  string
}

func (e *fieldError) Error() string { return joinPath(e.path) + ": " + e.msg }

func bad(msg string, p ...any) error { return &fieldError{path: p, msg: msg} }

func (r *Rules) validate() error {
	if !validCode(r.Gateway.Code) {
		return bad("a participant code is 1 to 64 letters, digits, '.', '-', '_' or '@'", "gateway", "code")
	}
	if len(r.Payers) == 0 {
		return bad("at least one payer is needed", "payers")
	}
	seen := map[string]bool{r.Gateway.Code: true}
	for i, p := range r.Payers {
		at := func(rest ...any) []any { return append([]any{"payers", i}, rest...) }
		if !validCode(p.Code) {
			return bad("a participant code is 1 to 64 letters, digits, '.', '-', '_' or '@'", at("code")...)
		}
		if seen[p.Code] {
			return bad("the code is used twice (the gateway and every payer need their own)", at("code")...)
		}
		seen[p.Code] = true
		if p.Name == "" {
			return bad("a payer needs a name", at("name")...)
		}
		if len(p.Currency) != 3 || strings.ToUpper(p.Currency) != p.Currency {
			return bad("a currency is an ISO 4217 code of three capital letters", at("currency")...)
		}
		if len(p.Plans) == 0 {
			return bad("a payer needs at least one plan", at("plans")...)
		}
		plans := map[string]bool{}
		for j, pl := range p.Plans {
			pat := func(rest ...any) []any { return at(append([]any{"plans", j}, rest...)...) }
			if pl.ID == "" || plans[pl.ID] {
				return bad("a plan needs an id of its own", pat("id")...)
			}
			plans[pl.ID] = true
			if len(pl.Members) == 0 && len(pl.MemberPatterns) == 0 {
				return bad("a plan needs members or member_patterns", pat("members")...)
			}
			for k, m := range pl.MemberPatterns {
				if _, err := path.Match(m, ""); err != nil {
					return bad("not a valid pattern", pat("member_patterns", k)...)
				}
			}
			if len(pl.Covered) == 0 {
				return bad("a plan needs covered codes (a lone * covers everything)", pat("covered")...)
			}
			if err := codeList(pl.Covered, pat("covered")); err != nil {
				return err
			}
			if err := codeList(pl.PreauthRequired, pat("preauth_required")); err != nil {
				return err
			}
			if pl.CoinsurancePercent < 0 || pl.CoinsurancePercent > 100 {
				return bad("must be between 0 and 100", pat("coinsurance_percent")...)
			}
		}
		for _, l := range []struct {
			name  string
			codes []string
		}{{"preauth_required", p.PreauthRequired}, {"preauth_refused", p.PreauthRefused}} {
			if err := codeList(l.codes, at(l.name)); err != nil {
				return err
			}
		}
		for j, d := range p.Denials {
			if len(d.Codes) == 0 {
				return bad("a denial needs codes", at("denials", j, "codes")...)
			}
			if err := codeList(d.Codes, at("denials", j, "codes")); err != nil {
				return err
			}
			if !validCode(d.Reason) {
				return bad("a denial needs a reason code (X12 CARC, e.g. 50)", at("denials", j, "reason")...)
			}
		}
		for j, pp := range p.PartialPayments {
			if len(pp.Codes) == 0 {
				return bad("a partial payment needs codes", at("partial_payments", j, "codes")...)
			}
			if err := codeList(pp.Codes, at("partial_payments", j, "codes")); err != nil {
				return err
			}
			if !(pp.Fraction > 0 && pp.Fraction < 1) {
				return bad("must be more than 0 and less than 1", at("partial_payments", j, "fraction")...)
			}
		}
		for j, ir := range p.InformationRequests {
			if len(ir.Codes) == 0 {
				return bad("an information request needs codes", at("information_requests", j, "codes")...)
			}
			if err := codeList(ir.Codes, at("information_requests", j, "codes")); err != nil {
				return err
			}
			if strings.TrimSpace(ir.Question) == "" {
				return bad("an information request needs a question", at("information_requests", j, "question")...)
			}
			if ir.On != "claim" && ir.On != "preauth" && ir.On != "both" {
				return bad("must be claim, preauth or both", at("information_requests", j, "on")...)
			}
		}
		if p.PaymentDelay < 0 {
			return bad("must not be negative", at("payment_delay")...)
		}
		if err := p.Faults.validate(at("faults")); err != nil {
			return err
		}
	}
	return nil
}

func (f Faults) validate(at []any) error {
	sub := func(rest ...any) []any { return append(append([]any{}, at...), rest...) }
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"error_rate", f.ErrorRate}, {"timeout_rate", f.TimeoutRate},
		{"duplicate_callbacks", f.DuplicateCallbacks}, {"out_of_order_callbacks", f.OutOfOrderCallbacks},
	} {
		if r.v < 0 || r.v > 1 || math.IsNaN(r.v) {
			return bad("a rate is a fraction between 0 and 1", sub(r.name)...)
		}
	}
	if f.ErrorRate+f.TimeoutRate > 1 {
		return bad("error_rate and timeout_rate together cannot pass 1", sub("timeout_rate")...)
	}
	if f.TimeoutHold < 0 {
		return bad("must not be negative", sub("timeout_hold")...)
	}
	for _, l := range []struct {
		name string
		l    Latency
	}{{"latency", f.Latency}, {"answer_delay", f.AnswerDelay}} {
		if err := l.l.validate(sub(l.name)); err != nil {
			return err
		}
	}
	return nil
}

func (l Latency) validate(at []any) error {
	field := func(name string) []any { return append(append([]any{}, at...), name) }
	switch l.Kind {
	case "":
		if l.Value != 0 || l.Min != 0 || l.Max != 0 || l.P50 != 0 || l.P99 != 0 {
			return bad("a latency needs a kind: fixed, uniform or lognormal", field("kind")...)
		}
	case "fixed":
		if l.Value < 0 {
			return bad("must not be negative", field("value")...)
		}
	case "uniform":
		if l.Min < 0 || l.Max < l.Min {
			return bad("needs 0 <= min <= max", field("max")...)
		}
	case "lognormal":
		if l.P50 <= 0 || l.P99 < l.P50 {
			return bad("needs 0 < p50 <= p99", field("p99")...)
		}
	default:
		return bad("must be fixed, uniform or lognormal", field("kind")...)
	}
	return nil
}

// codeList checks a list of codes and prefixes ("A12*", "*").
func codeList(codes []string, at []any) error {
	for k, c := range codes {
		if c == "*" {
			continue
		}
		if !validCode(strings.TrimSuffix(c, "*")) || strings.Count(c, "*") > 1 {
			return bad("a code is letters, digits, '.', '-' or '_', with an optional trailing * for a prefix", append(append([]any{}, at...), k)...)
		}
	}
	return nil
}

func validCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_', c == '@':
		default:
			return false
		}
	}
	return true
}

// matchCode reports whether code is one of list (exact codes, prefixes
// with a trailing *, or * for all).
func matchCode(list []string, code string) bool {
	for _, c := range list {
		if c == "*" || c == code || (strings.HasSuffix(c, "*") && strings.HasPrefix(code, strings.TrimSuffix(c, "*"))) {
			return true
		}
	}
	return false
}

func joinPath(p []any) string {
	var b strings.Builder
	for _, e := range p {
		switch v := e.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", v)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		}
	}
	return b.String()
}

// lineOf finds the line of the deepest node of p present in the document
// (the key's line for a mapping entry), so an error points at the field, or
// at its parent when the field is missing.
func lineOf(root *yaml.Node, p []any) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, e := range p {
		var next *yaml.Node
		switch v := e.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == v {
						line = n.Content[i].Line
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && v < len(n.Content) {
				next = n.Content[v]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
