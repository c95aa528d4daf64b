package httpapi

import (
	"context"
	"net/http"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/ratelimit"
)

// A request takes one token from each bucket guard charges it to (the
// client address's, then the principal's). Some requests do the work of
// many: a FHIR batch or transaction of N entries is N reads and writes, and
// charging it as one let a client multiply its budget by the Bundle's size.
// guard therefore remembers the buckets it charged in the request context,
// and a handler that learns the request's real cost charges the rest with
// chargeMore before doing any of the work.

// rateBucket is one bucket a request was charged to.
type rateBucket struct {
	key  string
	rule ratelimit.Rule
}

// rateCharge lists the buckets of one request, in the order guard charged
// them. guard appends to it; only the request's own goroutine touches it.
type rateCharge struct {
	buckets []rateBucket
}

type rateChargeKey struct{}

func withRateCharge(ctx context.Context) (context.Context, *rateCharge) {
	c := &rateCharge{}
	return context.WithValue(ctx, rateChargeKey{}, c), c
}

func rateChargeOf(ctx context.Context) *rateCharge {
	c, _ := ctx.Value(rateChargeKey{}).(*rateCharge)
	return c
}

// chargeMore takes n more tokens from every bucket the request was charged
// to, answering 429 with Retry-After (and returning false) when one of them
// lacks them. Buckets are charged in order and a refusal does not refund
// the ones before it: a refused oversized request still costs its sender,
// never someone else.
func (s *Server) chargeMore(w http.ResponseWriter, r *http.Request, n int) bool {
	if n <= 0 {
		return true
	}
	c := rateChargeOf(r.Context())
	if c == nil {
		return true
	}
	for _, b := range c.buckets {
		if !s.allowN(r.Context(), w, r, b.key, b.rule, n) {
			return false
		}
	}
	return true
}

// allowN takes n tokens from a bucket, answering 429 with Retry-After when
// it lacks them. A limiter failure lets the request through: the limiter
// protects capacity, and an outage of it must not become an outage of the
// API (the Redis limiter already falls back to local buckets).
func (s *Server) allowN(ctx context.Context, w http.ResponseWriter, r *http.Request, key string, rule ratelimit.Rule, n int) bool {
	if rule.Off() {
		return true
	}
	d, err := s.limiter.AllowN(ctx, key, rule, n)
	if err != nil {
		s.logger.Warn("rate limiter failed; request allowed", "request_id", RequestID(ctx), "error", err.Error())
		return true
	}
	if d.Allowed {
		return true
	}
	e := errs.E(errs.RateLimited, "too many requests; slow down")
	e.RetryAfterSeconds = ratelimit.RetryAfterSeconds(d.RetryAfter)
	s.writeError(w, r, e)
	return false
}
