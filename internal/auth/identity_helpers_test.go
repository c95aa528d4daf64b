package auth

import (
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// testClock is a settable clock for lock-outs, expiry and TTLs.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cheapParams keep tests under -race fast; production's parameters are
// checked by TestProductionParametersAreTheAgreedMinimum.
func cheapParams() Argon2Params {
	return Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
}

func newTestAccounts(t *testing.T, db *store.DB, clock *testClock) *Accounts {
	t.Helper()
	a, err := NewAccounts(db, AccountsConfig{Params: cheapParams(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const goodPassword = "correct horse battery"
