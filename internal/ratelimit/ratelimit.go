// Package ratelimit holds token-bucket rate limiters: one in process memory
// with a bound on how many keys it remembers, and one in Redis that several
// careflow nodes share.
//
// A Rule says how many requests a key may make in a period: the bucket
// holds up to Burst tokens and refills continuously at Rate per second; a
// request takes one token or is refused with the time until one is back.
//
// A request that does the work of several (a FHIR batch of N entries) takes
// N tokens at once (AllowN), all or none. It needs min(N, Burst) tokens in
// the bucket and then takes all N, leaving the bucket in debt when N is
// larger than the bucket: so a batch bigger than the burst is still
// possible, but whatever follows waits until its entries are paid for, and
// over any period a key gets no more than Rate×period+Burst units of work.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rule is a token bucket's size and refill rate.
type Rule struct {
	// Rate is tokens per second; Burst is the bucket's size. A zero Rule
	// allows everything.
	Rate  float64
	Burst int
}

// Off reports whether the rule limits nothing.
func (r Rule) Off() bool { return r.Rate <= 0 || r.Burst <= 0 }

// String formats the rule the way ParseRule reads it.
func (r Rule) String() string {
	if r.Off() {
		return "off"
	}
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}} {
		if float64(r.Burst) == r.Rate*u.d.Seconds() {
			return fmt.Sprintf("%d/%s", r.Burst, u.name)
		}
	}
	return fmt.Sprintf("%g/s burst %d", r.Rate, r.Burst)
}

// ParseRule reads "N/s", "N/m" or "N/h" (N requests per second, minute or
// hour, any N of them at once), or "off".
func ParseRule(s string) (Rule, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return Rule{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rule{}, errors.New(`must be N/s, N/m or N/h (e.g. 100/s), or "off"`)
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 || count > 1_000_000 {
		return Rule{}, errors.New("the count must be a whole number from 1 to 1000000")
	}
	var d time.Duration
	switch unit {
	case "s":
		d = time.Second
	case "m":
		d = time.Minute
	case "h":
		d = time.Hour
	default:
		return Rule{}, errors.New(`the period must be s, m or h`)
	}
	return Rule{Rate: float64(count) / d.Seconds(), Burst: count}, nil
}

// Decision is a limiter's answer.
type Decision struct {
	Allowed bool
	// RetryAfter is how long until a request would be allowed, when it is
	// not.
	RetryAfter time.Duration
}

// Limiter takes n tokens (n ≥ 1) from key's bucket under rule, all or
// none. Allow(ctx, key, rule) on the implementations is AllowN with n = 1.
type Limiter interface {
	AllowN(ctx context.Context, key string, rule Rule, n int) (Decision, error)
}

// need is how many tokens the bucket must hold for n to be taken: all n,
// or a full bucket when n is larger than it (see the package comment).
func need(rule Rule, n int) float64 {
	return float64(min(max(n, 1), rule.Burst))
}
