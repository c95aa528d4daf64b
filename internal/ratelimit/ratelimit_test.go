package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestParseRule(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in    string
		rate  float64
		burst int
		err   bool
	}{
		{"100/s", 100, 100, false},
		{"10/m", 10.0 / 60, 10, false},
		{"3600/h", 1, 3600, false},
		{"off", 0, 0, false},
		{"10", 0, 0, true},
		{"0/s", 0, 0, true},
		{"-1/s", 0, 0, true},
		{"10/d", 0, 0, true},
		{"x/s", 0, 0, true},
	}
	for _, c := range cases {
		r, err := ParseRule(c.in)
		if (err != nil) != c.err || (err == nil && (r.Rate != c.rate || r.Burst != c.burst)) {
			t.Errorf("ParseRule(%q) = %+v, %v", c.in, r, err)
		}
		if err == nil {
			back, _ := ParseRule(r.String())
			if back != r {
				t.Errorf("%q → %q does not round-trip", c.in, r.String())
			}
		}
	}
}

func TestMemoryBucketAllowsBurstThenRefills(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemory(100, c.now)
	rule := Rule{Rate: 1, Burst: 3} // 3 at once, then one a second
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if d, _ := m.Allow(ctx, "k", rule); !d.Allowed {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	d, _ := m.Allow(ctx, "k", rule)
	if d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("4th request = %+v, want refused with 1s", d)
	}
	if d, _ := m.Allow(ctx, "other", rule); !d.Allowed {
		t.Fatal("another key shares the bucket")
	}
	c.advance(500 * time.Millisecond)
	if d, _ := m.Allow(ctx, "k", rule); d.Allowed || d.RetryAfter != 500*time.Millisecond {
		t.Fatalf("half a token: %+v", d)
	}
	c.advance(500 * time.Millisecond)
	if d, _ := m.Allow(ctx, "k", rule); !d.Allowed {
		t.Fatal("a refilled token was refused")
	}
	// Idle time refills only up to the burst.
	c.advance(time.Hour)
	allowed := 0
	for i := 0; i < 10; i++ {
		if d, _ := m.Allow(ctx, "k", rule); d.Allowed {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("after an hour idle %d allowed, want the burst of 3", allowed)
	}
	if d, _ := m.Allow(ctx, "k", Rule{}); !d.Allowed {
		t.Fatal("an off rule refused")
	}
}

func TestMemoryStaysWithinItsBound(t *testing.T) {
	t.Parallel()
	m := NewMemory(1000, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				_, _ = m.Allow(ctx, fmt.Sprintf("10.%d.%d.%d", g, i/256, i%256), Rule{Rate: 1, Burst: 1})
			}
		}(g)
	}
	wg.Wait()
	if n := m.Len(); n > 1000 || n < 500 {
		t.Fatalf("%d keys remembered after 20000 distinct keys, bound 1000", n)
	}
	// A key in use is remembered (its bucket stays empty) despite the flood.
	_, _ = m.Allow(ctx, "fresh", Rule{Rate: 0.001, Burst: 1})
	if d, _ := m.Allow(ctx, "fresh", Rule{Rate: 0.001, Burst: 1}); d.Allowed {
		t.Fatal("a just-used key was forgotten")
	}
}

// redisClient returns a client for CAREFLOW_TEST_REDIS, or skips.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	u := os.Getenv("CAREFLOW_TEST_REDIS")
	if u == "" {
		t.Skip("CAREFLOW_TEST_REDIS is not set; skipping the Redis limiter")
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	return c
}

func uniquePrefix(t *testing.T) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "careflow-test:" + t.Name() + ":" + hex.EncodeToString(b[:]) + ":"
}

// Two limiters (two nodes) on one Redis share each key's bucket.
func TestRedisLimitsAreSharedAcrossNodes(t *testing.T) {
	t.Parallel()
	prefix := uniquePrefix(t)
	nodeA := NewRedis(redisClient(t), prefix)
	nodeB := NewRedis(redisClient(t), prefix)
	ctx := context.Background()
	rule := Rule{Rate: 0.5, Burst: 4}
	allowed := 0
	var last Decision
	for i := 0; i < 10; i++ {
		l := nodeA
		if i%2 == 1 {
			l = nodeB
		}
		d, err := l.Allow(ctx, "user:42", rule)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
		last = d
	}
	if allowed != 4 {
		t.Fatalf("%d of 10 allowed across two nodes, want the shared burst of 4", allowed)
	}
	if last.RetryAfter <= 0 || last.RetryAfter > 2*time.Second {
		t.Fatalf("retry after %v, want up to 2s at 0.5/s", last.RetryAfter)
	}
	if d, _ := nodeB.Allow(ctx, "user:43", rule); !d.Allowed {
		t.Fatal("another key is limited")
	}
	// Keys expire once a full bucket would have refilled.
	ttl, err := redisClient(t).PTTL(ctx, prefix+"user:42").Result()
	if err != nil || ttl <= 0 || ttl > 9*time.Second {
		t.Fatalf("bucket TTL %v %v", ttl, err)
	}
	// Concurrency: many goroutines on both nodes never exceed the burst.
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			l := nodeA
			if g%2 == 0 {
				l = nodeB
			}
			for i := 0; i < 5; i++ {
				if d, err := l.Allow(ctx, "burst", Rule{Rate: 0.001, Burst: 10}); err == nil && d.Allowed {
					mu.Lock()
					got++
					mu.Unlock()
				}
			}
		}(g)
	}
	wg.Wait()
	if got != 10 {
		t.Fatalf("%d concurrent requests allowed, want exactly the burst of 10", got)
	}
}

func TestFallbackUsesLocalBucketsWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { dead.Close() })
	var failures int
	var mu sync.Mutex
	f := NewFallback(NewRedis(dead, "x:"), NewMemory(10, nil), func(error) { mu.Lock(); failures++; mu.Unlock() })
	ctx := context.Background()
	rule := Rule{Rate: 0.001, Burst: 2}
	var allowed int
	for i := 0; i < 4; i++ {
		d, err := f.Allow(ctx, "k", rule)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 2 || failures != 4 {
		t.Fatalf("allowed %d (want 2 from the local bucket), failures reported %d", allowed, failures)
	}
}

// A request worth n requests takes n tokens, all or none; one larger than
// the bucket needs a full bucket and leaves it in debt, so what follows
// waits until the whole of it is paid for.
func TestAllowNTakesAllOrNoneAndLargeRequestsLeaveADebt(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemory(100, c.now)
	rule := Rule{Rate: 1, Burst: 5}
	ctx := context.Background()
	if d, _ := m.AllowN(ctx, "k", rule, 3); !d.Allowed {
		t.Fatal("3 of a full bucket of 5 refused")
	}
	if d, _ := m.AllowN(ctx, "k", rule, 3); d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("3 with 2 left = %+v, want refused for 1s", d)
	}
	if d, _ := m.AllowN(ctx, "k", rule, 2); !d.Allowed {
		t.Fatal("the refused request took tokens: 2 with 2 left refused")
	}
	c.advance(5 * time.Second)
	if d, _ := m.AllowN(ctx, "k", rule, 12); !d.Allowed {
		t.Fatal("12 with a full bucket of 5 refused: a large batch must stay possible")
	}
	if d, _ := m.Allow(ctx, "k", rule); d.Allowed || d.RetryAfter != 8*time.Second {
		t.Fatalf("after a debt of 7 the next request = %+v, want refused for 8s", d)
	}
	c.advance(7 * time.Second)
	if d, _ := m.AllowN(ctx, "k", rule, 12); d.Allowed || d.RetryAfter != 5*time.Second {
		t.Fatalf("12 with 0 tokens = %+v, want refused until the bucket is full (5s)", d)
	}
}

func TestRedisAllowNTakesAllOrNoneAndKeepsTheDebt(t *testing.T) {
	t.Parallel()
	c := redisClient(t)
	prefix := uniquePrefix(t)
	r := NewRedis(c, prefix)
	ctx := context.Background()
	rule := Rule{Rate: 0.01, Burst: 5} // nothing refills while the test runs
	step := func(key string, n int, allowed bool, minWait time.Duration) {
		t.Helper()
		d, err := r.AllowN(ctx, key, rule, n)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != allowed || (!allowed && (d.RetryAfter < minWait-time.Second || d.RetryAfter > minWait+time.Second)) {
			t.Fatalf("AllowN(%s, %d) = %+v, want allowed %v (wait about %v)", key, n, d, allowed, minWait)
		}
	}
	step("k", 3, true, 0)
	step("k", 3, false, 100*time.Second) // 2 left, 1 missing at 0.01/s
	step("k", 2, true, 0)
	step("big", 12, true, 0)
	step("big", 1, false, 800*time.Second) // a debt of 7, plus the 1 wanted
	// The bucket is remembered until the debt is repaid and it is full.
	ttl, err := c.PTTL(ctx, prefix+"big").Result()
	if err != nil || ttl < 1200*time.Second {
		t.Fatalf("TTL of an indebted bucket %v %v, want at least the 1200 s to refill from -7 to 5", ttl, err)
	}
}
