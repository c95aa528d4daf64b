package ratelimit

import (
	"container/list"
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// DefaultMaxKeys bounds a Memory limiter: about 100 bytes per key, so some
// 10 MB at most.
const DefaultMaxKeys = 100_000

const shardCount = 32

// Memory is an in-process limiter. Keys live in shards (so concurrent
// requests rarely share a lock), each an LRU list: when a shard is full its
// least recently used bucket is forgotten. A forgotten key starts again
// with a full bucket, which is the price of bounded memory; an attacker
// would need more distinct keys (client addresses, accounts) than the bound
// to use it.
type Memory struct {
	now      func() time.Time
	seed     maphash.Seed
	perShard int
	shards   [shardCount]memShard
}

type memShard struct {
	mu    sync.Mutex
	items map[string]*list.Element
	lru   list.List // front = most recently used
}

type bucket struct {
	key    string
	tokens float64
	last   time.Time
}

// NewMemory returns a limiter that remembers at most maxKeys keys (zero for
// DefaultMaxKeys); now is the clock (nil for time.Now).
func NewMemory(maxKeys int, now func() time.Time) *Memory {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	if now == nil {
		now = time.Now
	}
	m := &Memory{now: now, seed: maphash.MakeSeed(), perShard: max(1, maxKeys/shardCount)}
	for i := range m.shards {
		m.shards[i].items = map[string]*list.Element{}
	}
	return m
}

// Len returns how many keys are remembered.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.items)
		s.mu.Unlock()
	}
	return n
}

// Allow takes one token; it never fails.
func (m *Memory) Allow(ctx context.Context, key string, rule Rule) (Decision, error) {
	return m.AllowN(ctx, key, rule, 1)
}

// AllowN implements Limiter; it never fails.
func (m *Memory) AllowN(_ context.Context, key string, rule Rule, n int) (Decision, error) {
	if rule.Off() {
		return Decision{Allowed: true}, nil
	}
	now := m.now()
	s := &m.shards[maphash.String(m.seed, key)%shardCount]
	s.mu.Lock()
	defer s.mu.Unlock()
	var b *bucket
	if e, ok := s.items[key]; ok {
		s.lru.MoveToFront(e)
		b = e.Value.(*bucket)
	} else {
		if len(s.items) >= m.perShard {
			oldest := s.lru.Back()
			s.lru.Remove(oldest)
			delete(s.items, oldest.Value.(*bucket).key)
		}
		b = &bucket{key: key, tokens: float64(rule.Burst), last: now}
		s.items[key] = s.lru.PushFront(b)
	}
	return take(b, rule, now, n), nil
}

// take refills b for the time since its last use and takes n tokens, or
// none and says how long until it could.
func take(b *bucket, rule Rule, now time.Time, n int) Decision {
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(float64(rule.Burst), b.tokens+elapsed*rule.Rate)
		b.last = now
	}
	want := need(rule, n)
	if b.tokens >= want {
		b.tokens -= float64(max(n, 1))
		return Decision{Allowed: true}
	}
	wait := time.Duration((want - b.tokens) / rule.Rate * float64(time.Second))
	return Decision{RetryAfter: wait}
}
