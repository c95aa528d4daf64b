package auth

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// retryAfter returns the Retry-After of a RateLimited error, or -1.
func retryAfter(err error) int {
	if e, ok := errs.As(err); ok && e.Kind == errs.RateLimited {
		return e.RetryAfterSeconds
	}
	return -1
}

// The attack of the finding, and more: a stranger types wrong passwords
// for a clinician's username from many addresses. The clinician still
// signs in from the address they used before, at once, and from a fresh
// address after at most a short delay; the stranger's addresses are the
// ones stopped.
func TestAStrangerCannotLockTheOwnerOut(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := newTestClock()
		a := newTestAccounts(t, db, clock)
		if _, err := a.AddUser(ctx, "amal", goodPassword, Physician); err != nil {
			t.Fatal(err)
		}
		const ward = "192.0.2.10"
		if _, err := a.Authenticate(ctx, "amal", goodPassword, ward); err != nil {
			t.Fatalf("first sign-in from the ward: %v", err)
		}
		// Five addresses, five wrong passwords each (the finding had one
		// each; more makes every pair lock too).
		for i := 0; i < 5; i++ {
			for j := 0; j < 5; j++ {
				_, _ = a.Authenticate(ctx, "amal", "wrong password!!", fmt.Sprintf("198.51.100.%d", i+1))
				clock.Advance(time.Second)
			}
		}
		// The stranger's address is throttled, even with the right password.
		if _, err := a.Authenticate(ctx, "amal", goodPassword, "198.51.100.1"); retryAfter(err) < 60 {
			t.Fatalf("attacker's address, right password = %v; want a lock-out of minutes", err)
		}
		// The owner from the ward: no delay at all.
		if _, err := a.Authenticate(ctx, "amal", goodPassword, ward); err != nil {
			t.Fatalf("owner from the known address during the attack = %v", err)
		}
		// From a fresh address: a short delay at most.
		_, err := a.Authenticate(ctx, "amal", goodPassword, "203.0.113.50")
		if w := retryAfter(err); w > 0 {
			if w > 30 {
				t.Fatalf("owner from a fresh address must wait %d s; want at most 30", w)
			}
			clock.Advance(time.Duration(w) * time.Second)
			_, err = a.Authenticate(ctx, "amal", goodPassword, "203.0.113.50")
		}
		if err != nil {
			t.Fatalf("owner from a fresh address after the delay = %v", err)
		}
	})
}

// Guessing spread over many addresses is still slowed: after the free
// failures, every unknown-address attempt waits a doubling delay up to
// 30 s, so a day of it is a few thousand guesses, not millions; nothing
// ever locks the account, and its known address is never delayed.
func TestDistributedGuessingIsCappedPerAccount(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := newTestClock()
		a := newTestAccounts(t, db, clock)
		if _, err := a.AddUser(ctx, "amal", goodPassword, Physician); err != nil {
			t.Fatal(err)
		}
		const ward = "2001:db8:1:2::10"
		if _, err := a.Authenticate(ctx, "amal", goodPassword, ward); err != nil {
			t.Fatal(err)
		}
		// Ten free failures, each from a new address.
		for i := 0; i < 10; i++ {
			if _, err := a.Authenticate(ctx, "amal", "wrong password!!", fmt.Sprintf("198.51.100.%d", i+1)); !errs.Is(err, errs.Unauthenticated) {
				t.Fatalf("free failure %d = %v", i+1, err)
			}
		}
		// The eleventh starts the delay: 1 s, then 2, 4, 8, 16, 30, 30...
		var waits []int
		addr := 0
		next := func() string { addr++; return fmt.Sprintf("203.0.113.%d", addr%250+1) + "" }
		for len(waits) < 8 {
			_, err := a.Authenticate(ctx, "amal", "wrong password!!", next())
			w := retryAfter(err)
			if w <= 0 {
				t.Fatalf("failure after the free ones = %v; want a delay", err)
			}
			waits = append(waits, w)
			// Another fresh address right away is refused before any
			// password is checked, right or wrong.
			if _, err := a.Authenticate(ctx, "amal", goodPassword, next()); retryAfter(err) <= 0 {
				t.Fatalf("attempt inside the delay = %v; want rate_limited", err)
			}
			// The known address is not delayed (and its success does not
			// reset the count).
			if _, err := a.Authenticate(ctx, "amal", goodPassword, "2001:db8:1:2::99"); err != nil {
				t.Fatalf("known /64 during the delay = %v", err)
			}
			clock.Advance(time.Duration(w) * time.Second)
		}
		if got := fmt.Sprint(waits); got != "[1 2 4 8 16 30 30 30]" {
			t.Fatalf("delays %s; want [1 2 4 8 16 30 30 30]", got)
		}
		// A steady guesser at the cap for an hour gets about 120 guesses.
		counted := 0
		for end := clock.Now().Add(time.Hour); clock.Now().Before(end); {
			_, err := a.Authenticate(ctx, "amal", "wrong password!!", next())
			if w := retryAfter(err); w > 0 {
				counted++
				clock.Advance(time.Duration(w) * time.Second)
			} else {
				t.Fatalf("guess at the cap = %v", err)
			}
		}
		if counted > 121 {
			t.Fatalf("%d guesses in an hour; want at most 121 (one per 30 s)", counted)
		}
		// After a quiet window the account's count is forgotten.
		clock.Advance(16 * time.Minute)
		if _, err := a.Authenticate(ctx, "amal", "wrong password!!", next()); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("after a quiet window = %v", err)
		}
	})
}

// One address guessing at many names is locked out, but an account that
// signed in from that address before (a ward's shared NAT address) keeps
// signing in from it.
func TestOneAddressGuessingManyAccountsIsLockedOut(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := newTestAccounts(t, db, newTestClock())
		for _, n := range []string{"amal", "nour"} {
			if _, err := a.AddUser(ctx, n, goodPassword, Physician); err != nil {
				t.Fatal(err)
			}
		}
		const nat = "198.51.100.9"
		if _, err := a.Authenticate(ctx, "nour", goodPassword, nat); err != nil {
			t.Fatal(err)
		}
		var err error
		for i := 0; i < 20; i++ {
			_, err = a.Authenticate(ctx, "user"+string(rune('a'+i)), "wrong password!!", nat)
		}
		if !errs.Is(err, errs.RateLimited) {
			t.Fatalf("20th failure from one address = %v", err)
		}
		if _, err := a.Authenticate(ctx, "amal", goodPassword, nat); !errs.Is(err, errs.RateLimited) {
			t.Fatalf("locked address, an account new to it = %v", err)
		}
		if _, err := a.Authenticate(ctx, "nour", goodPassword, nat); err != nil {
			t.Fatalf("locked address, an account that signed in from it = %v", err)
		}
		if _, err := a.Authenticate(ctx, "amal", goodPassword, "198.51.100.10"); err != nil {
			t.Fatalf("another address = %v", err)
		}
	})
}

// One address guessing one account is locked for growing periods; the
// lock is that pair's. Unlock clears it, and the tables never hold a
// username or an address in plain.
func TestPairLockOutGrowsAndUnlockClearsIt(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := newTestClock()
		a := newTestAccounts(t, db, clock)
		if _, err := a.AddUser(ctx, "amal", goodPassword, Physician); err != nil {
			t.Fatal(err)
		}
		const guesser = "198.51.100.7"
		fail := func(n int) (err error) {
			for i := 0; i < n; i++ {
				_, err = a.Authenticate(ctx, "amal", "wrong password!!", guesser)
			}
			return err
		}
		if err := fail(4); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("after 4 failures: %v", err)
		}
		if w := retryAfter(fail(1)); w != 900 {
			t.Fatalf("5th failure: Retry-After %d, want 900", w)
		}
		if _, err := a.Authenticate(ctx, "amal", goodPassword, guesser); retryAfter(err) <= 0 {
			t.Fatalf("right password from the locked pair = %v", err)
		}
		clock.Advance(15*time.Minute + time.Second)
		if w := retryAfter(fail(5)); w != 1800 {
			t.Fatalf("second lock-out: Retry-After %d, want 1800", w)
		}
		cleared, err := a.Unlock(ctx, "AMAL")
		if err != nil || !cleared {
			t.Fatalf("Unlock = %v, %v", cleared, err)
		}
		if _, err := a.Authenticate(ctx, "amal", goodPassword, guesser); err != nil {
			t.Fatalf("after unlock: %v", err)
		}
		if cleared, err := a.Unlock(ctx, "amal"); err != nil || cleared {
			t.Fatalf("second Unlock = %v, %v; want nothing to clear", cleared, err)
		}
		for _, q := range []string{`SELECT throttle_key FROM auth_login_throttle`, `SELECT user_key || addr_hash FROM auth_login_known_addrs`} {
			rows, err := db.Reader().Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					t.Fatal(err)
				}
				n++
				if strings.Contains(k, "amal") || (strings.Contains(k, guesser) && !strings.HasPrefix(k, "addr:")) {
					t.Fatalf("%s: %q holds a username or an address", q, k)
				}
			}
			rows.Close()
			if n == 0 {
				t.Fatalf("%s: no rows; the test checks nothing", q)
			}
		}
	})
}
