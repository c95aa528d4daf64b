package fhir

import (
	"math/big"
	"strings"
	"time"
)

// datatypeInvariants checks the error-level R4 invariants of the datatypes
// that carry clinical and billing facts (per-1, qty-3, cpt-2, att-1, rng-2,
// rat-1, exp-1, tim-*). The element walk has already checked their shape;
// these are the rules across their elements.
func (val *validator) datatypeInvariants(typ string, v *jsonValue, path *elemPath) {
	val.identityText(typ, v, path)
	switch typ {
	case "Period":
		if s, e := v.member("start"), v.member("end"); s != nil && e != nil && s.kind == jsonString && e.kind == jsonString {
			if later, ok := dateTimeAfter(s.text, e.text); ok && later {
				val.add(IssueInvariant, path, "a period's start is not after its end (per-1)")
			}
		}
	case "Quantity":
		if has(v, "code") && !has(v, "system") {
			val.add(IssueInvariant, path, "a quantity with a code names its system (qty-3)")
		}
	case "ContactPoint":
		if has(v, "value") && !has(v, "system") {
			val.add(IssueInvariant, path, "a contact point with a value names its system (cpt-2)")
		}
	case "Attachment":
		if has(v, "data") && !has(v, "contentType") {
			val.add(IssueInvariant, path, "an attachment with data has a contentType (att-1)")
		}
	case "Expression":
		if !has(v, "expression") && !has(v, "reference") {
			val.add(IssueInvariant, path, "an expression has an expression or a reference (exp-1)")
		}
	case "Ratio":
		num, den := has(v, "numerator"), has(v, "denominator")
		if num != den || (!num && !has(v, "extension")) {
			val.add(IssueInvariant, path, "a ratio has both numerator and denominator, or neither and an extension (rat-1)")
		}
	case "Range":
		low, high := v.member("low"), v.member("high")
		if low != nil && high != nil && low.kind == jsonObject && high.kind == jsonObject && sameUnit(low, high) {
			if l, h := decimalOf(low.member("value")), decimalOf(high.member("value")); l != nil && h != nil && l.Cmp(h) > 0 {
				val.add(IssueInvariant, path, "a range's low is not above its high (rng-2)")
			}
		}
	case "Timing":
		if r := v.member("repeat"); r != nil && r.kind == jsonObject {
			val.timingRepeat(r, path.child("repeat"))
		}
	}
}

func (val *validator) timingRepeat(r *jsonValue, path *elemPath) {
	pairs := []struct{ needs, has, key string }{
		{"duration", "durationUnit", "tim-1"},
		{"period", "periodUnit", "tim-2"},
	}
	for _, p := range pairs {
		if has(r, p.needs) && !has(r, p.has) {
			val.add(IssueInvariant, path, "%s needs %s (%s)", p.needs, p.has, p.key)
		}
	}
	for _, p := range []struct{ max, base, key string }{
		{"periodMax", "period", "tim-6"}, {"durationMax", "duration", "tim-7"}, {"countMax", "count", "tim-8"},
	} {
		if has(r, p.max) && !has(r, p.base) {
			val.add(IssueInvariant, path, "%s needs %s (%s)", p.max, p.base, p.key)
		}
	}
	for _, p := range []struct{ name, key string }{{"duration", "tim-4"}, {"period", "tim-5"}} {
		if d := decimalOf(r.member(p.name)); d != nil && d.Sign() < 0 {
			val.add(IssueInvariant, path.child(p.name), "%s is not negative (%s)", p.name, p.key)
		}
	}
	if has(r, "offset") {
		ok := false
		if when := r.member("when"); when != nil && when.kind == jsonArray {
			ok = true
			for _, w := range when.items {
				switch w.text {
				case "C", "CM", "CD", "CV":
					ok = false
				}
			}
		}
		if !ok {
			val.add(IssueInvariant, path.child("offset"), "an offset needs a when that is not a meal (C, CM, CD, CV) (tim-9)")
		}
	}
	if has(r, "timeOfDay") && has(r, "when") {
		val.add(IssueInvariant, path, "timeOfDay and when exclude each other (tim-10)")
	}
}

// decimalOf reads a JSON number exactly, or returns nil.
func decimalOf(v *jsonValue) *big.Rat {
	if v == nil || v.kind != jsonNumber {
		return nil
	}
	r, ok := new(big.Rat).SetString(v.text)
	if !ok {
		return nil
	}
	return r
}

// sameUnit reports whether two quantities are in the same unit, so their
// values compare directly.
func sameUnit(a, b *jsonValue) bool {
	str := func(v *jsonValue, k string) string {
		if m := v.member(k); m != nil && m.kind == jsonString {
			return m.text
		}
		return ""
	}
	if str(a, "code") != "" || str(b, "code") != "" {
		return str(a, "system") == str(b, "system") && str(a, "code") == str(b, "code")
	}
	return str(a, "unit") == str(b, "unit")
}

// dateTimeAfter reports whether a is after b, and whether the two could be
// compared. Like FHIRPath it compares only values of the same precision
// (two dates, two year-months, two full timestamps): a date and a timestamp
// within it are neither before nor after each other.
func dateTimeAfter(a, b string) (after, ok bool) {
	if strings.Contains(a, "T") != strings.Contains(b, "T") {
		return false, false
	}
	if strings.Contains(a, "T") {
		ta, err1 := time.Parse(time.RFC3339Nano, a)
		tb, err2 := time.Parse(time.RFC3339Nano, b)
		if err1 != nil || err2 != nil {
			return false, false
		}
		return ta.After(tb), true
	}
	if len(a) != len(b) {
		return false, false
	}
	return a > b, true // same-precision dates order as strings
}
