package sim

import (
	"encoding/json"
	"math"
	"path"
	"strconv"
	"strings"
)

// Claim-adjustment reason codes (X12 CARC, the set HCX's claim-denial
// reasons draw on) the simulator gives without a rule naming them.
const (
	reasonNotOurMember   = "31"  // patient cannot be identified as our insured
	reasonNotCovered     = "96"  // non-covered charge(s)
	reasonNoPreauth      = "197" // precertification/authorization absent
	reasonLimitReached   = "119" // benefit maximum for this time period has been reached
	reasonPreauthRefused = "15"  // the authorization number is missing, invalid, or does not apply
	useClaim             = "claim"
	usePreauth           = "preauthorization"
)

var reasonDisplay = map[string]string{
	reasonNotOurMember:   "Patient cannot be identified as our insured.",
	reasonNotCovered:     "Non-covered charge(s).",
	reasonNoPreauth:      "Precertification/authorization/notification/pre-treatment absent.",
	reasonLimitReached:   "Benefit maximum for this time period or occurrence has been reached.",
	reasonPreauthRefused: "The authorization is refused for this service.",
}

// line is one billed item as the payer reads it.
type line struct {
	Sequence int
	System   string
	Code     string
	Net      Amount
}

// itemDecision is the payer's decision on one line.
type itemDecision struct {
	line
	Eligible    Amount
	Copay       Amount
	Coinsurance Amount
	Benefit     Amount
	// Reason is set for a line denied (Benefit 0) or reduced.
	Reason, ReasonDisplay string
	Denied                bool
}

// decision is the payer's decision on a claim or pre-authorization.
type decision struct {
	Outcome    string
	Items      []itemDecision
	Submitted  Amount
	Benefit    Amount
	DenialCode string // the first line's reason when every line is denied
	Plan       *Plan
}

// adjudication is what a decision is made from.
type adjudication struct {
	Use      string
	Appeal   bool // Claim.related is set
	MemberID string
	Lines    []line
	// Preauthorized reports whether an approved pre-authorization the claim
	// names covers code.
	Preauthorized func(code string) bool
	// UsedThisYear is the benefit already paid to the member this year.
	UsedThisYear Amount
}

// planFor finds the member's plan: an explicit member first, then the
// first plan whose pattern matches.
func (p *PayerRules) planFor(member string) *Plan {
	if member == "" {
		return nil
	}
	for i := range p.Plans {
		for _, m := range p.Plans[i].Members {
			if m == member {
				return &p.Plans[i]
			}
		}
	}
	for i := range p.Plans {
		for _, pat := range p.Plans[i].MemberPatterns {
			if ok, _ := path.Match(pat, member); ok {
				return &p.Plans[i]
			}
		}
	}
	return nil
}

func (p *PayerRules) needsPreauth(pl *Plan, code string) bool {
	return matchCode(p.PreauthRequired, code) || (pl != nil && matchCode(pl.PreauthRequired, code))
}

// informationQuestion returns the question the payer asks before deciding
// on lines, or "" when it decides at once.
func (p *PayerRules) informationQuestion(use string, lines []line) string {
	on := "claim"
	if use == usePreauth {
		on = "preauth"
	}
	for _, ir := range p.InformationRequests {
		if ir.On != on && ir.On != "both" {
			continue
		}
		for _, l := range lines {
			if matchCode(ir.Codes, l.Code) {
				return ir.Question
			}
		}
	}
	return ""
}

// adjudicate decides a claim or pre-authorization. Every line is decided
// on its own; the co-pay is taken once per claim from the first lines that
// pay; the co-insurance is the plan's percentage of the rest; a partial
// payment rule scales the benefit; the annual limit caps the total.
func (p *PayerRules) adjudicate(in adjudication) decision {
	d := decision{Plan: p.planFor(in.MemberID)}
	copayLeft := Amount(0)
	if d.Plan != nil {
		copayLeft = d.Plan.Copay
	}
	limitLeft := Amount(math.MaxInt64)
	if d.Plan != nil && d.Plan.AnnualLimit > 0 {
		limitLeft = max(d.Plan.AnnualLimit-in.UsedThisYear, 0)
	}
	for _, l := range in.Lines {
		it := itemDecision{line: l}
		d.Submitted += l.Net
		deny := func(reason, display string) {
			it.Denied, it.Reason, it.ReasonDisplay = true, reason, display
			if display == "" {
				it.ReasonDisplay = reasonDisplay[reason]
			}
		}
		switch {
		case d.Plan == nil:
			deny(reasonNotOurMember, "")
		case !matchCode(d.Plan.Covered, l.Code):
			deny(reasonNotCovered, "")
		case in.Use == usePreauth && matchCode(p.PreauthRefused, l.Code):
			deny(reasonPreauthRefused, "")
		case in.Use == useClaim && p.needsPreauth(d.Plan, l.Code) && (in.Preauthorized == nil || !in.Preauthorized(l.Code)):
			deny(reasonNoPreauth, "")
		}
		if !it.Denied && in.Use == useClaim {
			for _, dn := range p.Denials {
				if matchCode(dn.Codes, l.Code) && !(dn.FirstSubmissionOnly && in.Appeal) {
					deny(dn.Reason, dn.Display)
					break
				}
			}
		}
		if !it.Denied {
			it.Eligible = l.Net
			it.Copay = min(copayLeft, it.Eligible)
			copayLeft -= it.Copay
			rest := it.Eligible - it.Copay
			it.Coinsurance = Amount(math.Round(float64(rest) * d.Plan.CoinsurancePercent / 100))
			it.Benefit = rest - it.Coinsurance
			if in.Use == useClaim {
				for _, pp := range p.PartialPayments {
					if matchCode(pp.Codes, l.Code) {
						it.Benefit = Amount(math.Round(float64(it.Benefit) * pp.Fraction))
						it.Reason = pp.Reason
						if it.Reason == "" {
							it.Reason = "45" // charge exceeds fee schedule/maximum allowable
						}
						it.ReasonDisplay = "Approved in part."
						break
					}
				}
				if it.Benefit > limitLeft {
					it.Benefit = limitLeft
					it.Reason, it.ReasonDisplay = reasonLimitReached, reasonDisplay[reasonLimitReached]
				}
				limitLeft -= it.Benefit
			}
		}
		d.Benefit += it.Benefit
		d.Items = append(d.Items, it)
	}
	denied, reduced := 0, false
	for _, it := range d.Items {
		if it.Denied {
			denied++
		} else if it.Reason != "" {
			reduced = true
		}
	}
	switch {
	case len(d.Items) == 0 || denied == len(d.Items):
		d.Outcome = OutcomeDenied
		if in.Use == usePreauth {
			d.Outcome = OutcomeRefused
		}
		if len(d.Items) > 0 {
			d.DenialCode = d.Items[0].Reason
		}
	case denied > 0 || reduced:
		d.Outcome = OutcomePartial
	default:
		d.Outcome = OutcomeApproved
	}
	return d
}

// amountOf reads a FHIR decimal amount, rounding to minor units.
func amountOf(n json.Number) (Amount, bool) {
	if n == "" {
		return 0, false
	}
	if a, err := ParseAmount(string(n)); err == nil {
		return a, true
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(string(n)), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || f > 1e15 {
		return 0, false
	}
	return Amount(math.Round(f * 100)), true
}
