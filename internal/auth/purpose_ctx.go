package auth

import (
	"context"
	"strings"
)

// A caller may state the purpose of use of a request (treatment, payment,
// operations, research); the HTTP layer puts it in the request's context
// and Decide uses it when the Request names none. A stated purpose is
// still checked: the role's rules must allow it, and the patient's consent
// for that purpose applies. Without one, the role's default purpose holds.

type purposeKey struct{}

// WithPurpose returns ctx carrying a stated purpose of use.
func WithPurpose(ctx context.Context, p Purpose) context.Context {
	return context.WithValue(ctx, purposeKey{}, p)
}

// PurposeFrom returns the purpose of use stated for ctx's request, if any.
func PurposeFrom(ctx context.Context) Purpose {
	p, _ := ctx.Value(purposeKey{}).(Purpose)
	return p
}

// purposeCodes maps HL7 v3 ActReason codes to the purposes they mean.
var purposeCodes = map[string]Purpose{
	"TREAT": PurposeTreatment, "ETREAT": PurposeTreatment,
	"HPAYMT":  PurposePayment,
	"HOPERAT": PurposeOperations,
	"HRESCH":  PurposeResearch, "CLINTRCH": PurposeResearch,
}

// ParsePurpose reads a purpose of use as careflow names it (treatment,
// payment, operations, research) or as its HL7 v3 ActReason code (TREAT,
// HPAYMT, HOPERAT, HRESCH, ...).
func ParsePurpose(s string) (Purpose, bool) {
	s = strings.TrimSpace(s)
	if p := Purpose(strings.ToLower(s)); p.Valid() {
		return p, true
	}
	p, ok := purposeCodes[strings.ToUpper(s)]
	return p, ok
}
