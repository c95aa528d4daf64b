package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// tokenBucketScript is the whole token bucket, run atomically in Redis so
// that nodes sharing a key never race. It reads the time from Redis (TIME)
// rather than from the nodes, whose clocks may disagree. State is a hash of
// tokens and the time in microseconds, written with %.17g/%.0f so Lua's
// default number formatting cannot round them; the key expires once a full
// bucket would have refilled, so idle keys cost nothing.
//
// KEYS[1] bucket key; ARGV[1] rate (tokens per second); ARGV[2] burst;
// ARGV[3] tokens to take; ARGV[4] tokens the bucket must hold to take them
// (see need). Tokens may go below zero (a debt); the expiry waits for the
// debt to be repaid, so forgetting the key never forgives it.
// Returns {allowed (0|1), retry-after in milliseconds}.
const tokenBucketScript = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
	tokens = burst
	ts = now
end
local elapsed = (now - ts) / 1000000
if elapsed > 0 then
	tokens = math.min(burst, tokens + elapsed * rate)
	ts = now
end
local allowed = 0
local retry = 0
if tokens >= want then
	tokens = tokens - n
	allowed = 1
else
	retry = math.ceil((want - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.0f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, retry}
`

// Redis is a limiter whose buckets live in Redis, shared by every node that
// uses the same Redis and prefix.
type Redis struct {
	client redis.Scripter
	prefix string
	script *redis.Script
}

// NewRedis returns a limiter on client; prefix namespaces its keys (e.g.
// "careflow:rl:").
func NewRedis(client redis.Scripter, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix, script: redis.NewScript(tokenBucketScript)}
}

// Allow takes one token. It fails when Redis does; see Fallback.
func (r *Redis) Allow(ctx context.Context, key string, rule Rule) (Decision, error) {
	return r.AllowN(ctx, key, rule, 1)
}

// AllowN implements Limiter. It fails when Redis does; see Fallback.
func (r *Redis) AllowN(ctx context.Context, key string, rule Rule, n int) (Decision, error) {
	if rule.Off() {
		return Decision{Allowed: true}, nil
	}
	n = max(n, 1)
	res, err := r.script.Run(ctx, r.client, []string{r.prefix + key},
		strconv.FormatFloat(rule.Rate, 'g', -1, 64), strconv.Itoa(rule.Burst),
		strconv.Itoa(n), strconv.FormatFloat(need(rule, n), 'g', -1, 64)).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit in redis: %w", err)
	}
	if len(res) != 2 {
		return Decision{}, fmt.Errorf("rate limit in redis: unexpected reply of %d values", len(res))
	}
	if res[0] == 1 {
		return Decision{Allowed: true}, nil
	}
	return Decision{RetryAfter: time.Duration(max(res[1], 1)) * time.Millisecond}, nil
}

// Fallback uses primary and, when it fails, local: if Redis is down each
// node still limits on its own instead of letting everything through or
// refusing everything. onError (may be nil) hears about each failure.
type Fallback struct {
	primary Limiter
	local   Limiter
	onError func(error)
}

// NewFallback combines a shared limiter with a local one.
func NewFallback(primary, local Limiter, onError func(error)) *Fallback {
	return &Fallback{primary: primary, local: local, onError: onError}
}

// Allow takes one token.
func (f *Fallback) Allow(ctx context.Context, key string, rule Rule) (Decision, error) {
	return f.AllowN(ctx, key, rule, 1)
}

// AllowN implements Limiter.
func (f *Fallback) AllowN(ctx context.Context, key string, rule Rule, n int) (Decision, error) {
	d, err := f.primary.AllowN(ctx, key, rule, n)
	if err == nil {
		return d, nil
	}
	if f.onError != nil {
		f.onError(err)
	}
	return f.local.AllowN(ctx, key, rule, n)
}

// RetryAfterSeconds rounds a wait up to whole seconds, at least one, for a
// Retry-After header.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
