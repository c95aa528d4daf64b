package httpapi

import (
	"context"
	"net/http"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// purposeHeader lets a caller state the purpose of use of a request:
// treatment, payment, operations or research, or the HL7 v3 ActReason code
// (TREAT, HPAYMT, HOPERAT, HRESCH). The access policy decides with it
// instead of the role's default purpose, so the role must be allowed that
// purpose and the patient's consent for it applies; the audit log records
// it. An integration that submits claims states payment, a research export
// states research.
const purposeHeader = "X-Purpose-Of-Use"

// statedPurpose puts the request's stated purpose of use in ctx, or fails
// with 400 for a value that is not one.
func statedPurpose(ctx context.Context, r *http.Request) (context.Context, error) {
	vs := r.Header.Values(purposeHeader)
	if len(vs) == 0 {
		return ctx, nil
	}
	if len(vs) > 1 {
		return ctx, errs.E(errs.Invalid, "give one purpose of use").InField(purposeHeader)
	}
	p, ok := auth.ParsePurpose(vs[0])
	if !ok {
		return ctx, errs.E(errs.Invalid, "must be treatment, payment, operations or research (or TREAT, HPAYMT, HOPERAT, HRESCH)").InField(purposeHeader)
	}
	return auth.WithPurpose(ctx, p), nil
}
