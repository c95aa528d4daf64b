package rcm

import (
	"encoding/json"
	"strings"
)

// answer is a payer message as a journey's wait step receives it: the
// signal payload Receive builds (sealed by the engine), or the engine's
// {"timed_out": true} when the wait gave up.
type answer struct {
	Action      string            `json:"action,omitempty"`
	Status      string            `json:"status,omitempty"`
	Correlation string            `json:"correlation_id,omitempty"`
	Resources   []json.RawMessage `json:"resources,omitempty"`
	Error       json.RawMessage   `json:"error,omitempty"`
	Warnings    []string          `json:"warnings,omitempty"`
	TimedOut    bool              `json:"timed_out,omitempty"`
}

// node is a leniently read FHIR resource: whatever members it has.
type node map[string]json.RawMessage

func (a *answer) find(typ string) []node {
	var out []node
	for _, raw := range a.Resources {
		var n node
		if json.Unmarshal(raw, &n) != nil {
			continue
		}
		if n.str("resourceType") == typ {
			out = append(out, n)
		}
	}
	return out
}

func (a *answer) first(typ string) node {
	if ns := a.find(typ); len(ns) > 0 {
		return ns[0]
	}
	return nil
}

func (n node) str(k string) string {
	var s string
	if n == nil || json.Unmarshal(n[k], &s) != nil {
		return ""
	}
	return s
}

func (n node) obj(k string) node {
	var o node
	if n == nil || json.Unmarshal(n[k], &o) != nil {
		return nil
	}
	return o
}

func (n node) list(k string) []node {
	var l []node
	if n == nil || json.Unmarshal(n[k], &l) != nil {
		return nil
	}
	return l
}

// code is the first coding's code of a CodeableConcept member.
func (n node) code(k string) string {
	cc := n.obj(k)
	for _, c := range cc.list("coding") {
		if s := c.str("code"); s != "" {
			return s
		}
	}
	return ""
}

// money is a Money member's value in minor units.
func (n node) money(k string) (int64, bool) {
	m := n.obj(k)
	if m == nil {
		return 0, false
	}
	return parseMinor(m["value"], m.str("currency"))
}

// reference is a Reference member's reference.
func (n node) reference(k string) string { return n.obj(k).str("reference") }

// approvedAmount is what a ClaimResponse approves: its benefit total,
// else its payment, else the sum of the items' benefit adjudications.
func approvedAmount(cr node) (int64, bool) {
	for _, t := range cr.list("total") {
		if t.code("category") == "benefit" {
			if v, ok := t.money("amount"); ok {
				return v, true
			}
		}
	}
	if v, ok := cr.obj("payment").money("amount"); ok {
		return v, true
	}
	var sum int64
	found := false
	for _, it := range cr.list("item") {
		for _, adj := range it.list("adjudication") {
			if adj.code("category") == "benefit" {
				if v, ok := adj.money("amount"); ok {
					sum, found = sum+v, true
				}
			}
		}
	}
	return sum, found
}

// patientShare is the part of the bill a ClaimResponse leaves to the
// patient: the items' adjudications of category copay and deductible
// (HL7's adjudication codes; a co-insurance is reported as copay). A
// payer that reports none leaves the patient nothing to pay.
func patientShare(cr node) int64 {
	var sum int64
	for _, it := range cr.list("item") {
		for _, adj := range it.list("adjudication") {
			switch adj.code("category") {
			case "copay", "deductible":
				if v, ok := adj.money("amount"); ok && v > 0 {
					sum += v
				}
			}
		}
	}
	return sum
}

// denialReason is the payer's reason code for refusing a claim: an error
// code, else an item adjudication's reason, else "denied".
func denialReason(cr node) string {
	for _, e := range cr.list("error") {
		if c := e.code("code"); c != "" {
			return c
		}
	}
	for _, it := range cr.list("item") {
		for _, adj := range it.list("adjudication") {
			if c := adj.code("reason"); c != "" {
				return c
			}
		}
	}
	return "denied"
}

// safeCode keeps a payer's code to what an identifier-like code holds, so
// nothing else (free text, a value) lands in a plain column.
func safeCode(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == ':':
			return r
		}
		return -1
	}, s)
}
