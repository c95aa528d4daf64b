package auth

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestAccountsLifecycle(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := newTestClock()
		a := newTestAccounts(t, db, clock)

		u, err := a.AddUser(ctx, "Dr.Amal", goodPassword, Physician)
		if err != nil {
			t.Fatal(err)
		}
		if u.Username != "dr.amal" || u.Role != Physician || len(u.ID) != 36 || u.ID[14] != '7' {
			t.Fatalf("added %+v: want lower-cased name, role and a UUIDv7 id", u)
		}
		if _, err := a.AddUser(ctx, "DR.AMAL", goodPassword, Nurse); !errs.Is(err, errs.Conflict) {
			t.Fatalf("duplicate username (other case) = %v, want conflict", err)
		}
		for _, bad := range []struct{ name, pw string }{{"x", goodPassword}, {"has space", goodPassword}, {"-lead", goodPassword}, {"bob", "short"}} {
			if _, err := a.AddUser(ctx, bad.name, bad.pw, Nurse); !errs.Is(err, errs.Invalid) {
				t.Errorf("AddUser(%q) = %v, want invalid", bad.name, err)
			}
		}
		if _, err := a.AddUser(ctx, "carol", goodPassword, Role("superuser")); !errs.Is(err, errs.Invalid) {
			t.Fatalf("unknown role = %v", err)
		}
		if _, err := a.AddUser(ctx, "billing.bob", goodPassword, Billing); err != nil {
			t.Fatal(err)
		}
		// The database holds a PHC argon2id hash, not the password.
		var stored string
		if err := db.Reader().QueryRow(ctx, `SELECT password_hash FROM auth_users WHERE username = $1`, "dr.amal").Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored, "$argon2id$") || strings.Contains(stored, goodPassword) {
			t.Fatalf("stored hash %q", stored)
		}

		if err := a.SetRole(ctx, "dr.amal", ClinicalAdmin); err != nil {
			t.Fatal(err)
		}
		if err := a.SetRole(ctx, "nobody", Nurse); !errs.Is(err, errs.NotFound) {
			t.Fatalf("SetRole(unknown) = %v", err)
		}
		sess := mustLogin(t, a, "dr.amal")
		if err := a.DisableUser(ctx, "dr.amal"); err != nil {
			t.Fatal(err)
		}
		users, err := a.ListUsers(ctx)
		if err != nil || len(users) != 2 {
			t.Fatalf("ListUsers = %v, %v", users, err)
		}
		if users[0].Username != "dr.amal" || users[0].Role != ClinicalAdmin || !users[0].Disabled || users[1].Disabled {
			t.Fatalf("users %+v", users)
		}
		// Disabling revoked the session and blocks logins.
		if _, err := a.Refresh(ctx, sess.RefreshToken); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("refresh after disable = %v", err)
		}
		if _, err := a.Authenticate(ctx, "dr.amal", goodPassword, "192.0.2.1"); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("login after disable = %v", err)
		}
	})
}

func mustLogin(t *testing.T, a *Accounts, name string) Session {
	t.Helper()
	ctx := context.Background()
	u, err := a.Authenticate(ctx, name, goodPassword, "192.0.2.1")
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	s, err := a.StartSession(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEveryBadLoginGetsTheSameAnswer(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	a := newTestAccounts(t, db, newTestClock())
	if _, err := a.AddUser(ctx, "amal", goodPassword, Physician); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddUser(ctx, "gone", goodPassword, Nurse); err != nil {
		t.Fatal(err)
	}
	if err := a.DisableUser(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for i, c := range []struct{ user, pw string }{
		{"amal", "wrong password!!"}, {"nobody", goodPassword}, {"gone", goodPassword}, {"not valid name!", goodPassword},
		{"amal", strings.Repeat("x", MaxPasswordLen+10)},
	} {
		_, err := a.Authenticate(ctx, c.user, c.pw, "192.0.2."+string(rune('1'+i)))
		if !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("%s: %v", c.user, err)
		}
		msgs = append(msgs, err.Error())
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Fatalf("messages differ: %q", msgs)
		}
	}
}

// Unknown users cost an argon2id verification like known ones, so timing
// does not reveal which usernames exist. The parameters are made expensive
// enough that a skipped hash would be obvious.
func TestUnknownUsersTakeAsLongAsKnownOnes(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	a, err := NewAccounts(db, AccountsConfig{Params: Argon2Params{MemoryKiB: 4096, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32},
		Lockout: LockoutPolicy{PairThreshold: 1000, AddrThreshold: 1000, Window: time.Hour, BaseLock: time.Minute, MaxLock: time.Hour, UnknownFree: 1000, UnknownDelay: time.Second, UnknownMaxDelay: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddUser(ctx, "amal", goodPassword, Physician); err != nil {
		t.Fatal(err)
	}
	// The fastest of several runs: noise from other work on the machine
	// only ever adds time, so the minimum is the cost of the code itself.
	fastest := func(user string) time.Duration {
		var ds []time.Duration
		for i := 0; i < 7; i++ {
			start := time.Now()
			_, _ = a.Authenticate(ctx, user, "wrong password!!", "")
			ds = append(ds, time.Since(start))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[0]
	}
	fastest("nobody") // warm the dummy hash
	known, unknown := fastest("amal"), fastest("nobody")
	if unknown < known/3 {
		t.Fatalf("unknown user took %v, known user %v: the hash is being skipped", unknown, known)
	}
}

func TestWeakHashesAreUpgradedAtLogin(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := newTestClock()
		old := newTestAccounts(t, db, clock)
		if _, err := old.AddUser(ctx, "amal", goodPassword, Physician); err != nil {
			t.Fatal(err)
		}
		stronger := cheapParams()
		stronger.MemoryKiB, stronger.Time = 128, 2
		a, err := NewAccounts(db, AccountsConfig{Params: stronger, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(ctx, "amal", goodPassword, ""); err != nil {
			t.Fatal(err)
		}
		var stored string
		if err := db.Reader().QueryRow(ctx, `SELECT password_hash FROM auth_users WHERE username = 'amal'`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stored, "$m=128,t=2,p=1$") {
			t.Fatalf("hash after login %q: want the raised parameters", stored)
		}
		if _, err := a.Authenticate(ctx, "amal", goodPassword, ""); err != nil {
			t.Fatalf("login with the upgraded hash: %v", err)
		}
	})
}

func TestRefreshTokensRotateAndReuseRevokesTheSession(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := newTestClock()
		a := newTestAccounts(t, db, clock)
		if _, err := a.AddUser(ctx, "amal", goodPassword, Physician); err != nil {
			t.Fatal(err)
		}
		s1 := mustLogin(t, a, "amal")
		if !strings.HasPrefix(s1.RefreshToken, "cfr_") {
			t.Fatalf("refresh token %q", s1.RefreshToken)
		}
		// Only the hash is stored.
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM auth_refresh_tokens WHERE token_hash = $1`, hashOpaque(s1.RefreshToken)).Scan(&n); err != nil || n != 1 {
			t.Fatalf("stored by hash: %d %v", n, err)
		}
		s2, err := a.Refresh(ctx, s1.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if s2.ID != s1.ID || s2.RefreshToken == s1.RefreshToken || s2.User.Username != "amal" {
			t.Fatalf("rotation gave %+v", s2)
		}
		s3, err := a.Refresh(ctx, s2.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		// A thief replays s1: refused, and the victim's current token dies too.
		if _, err := a.Refresh(ctx, s1.RefreshToken); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("reuse = %v", err)
		}
		if _, err := a.Refresh(ctx, s3.RefreshToken); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("current token after reuse = %v, want revoked", err)
		}
		var reason string
		if err := db.Reader().QueryRow(ctx, `SELECT revoked_reason FROM auth_sessions WHERE id = $1`, s1.ID).Scan(&reason); err != nil || reason != "reuse" {
			t.Fatalf("session revoked_reason %q %v", reason, err)
		}
		// Another session of the same user is untouched.
		other := mustLogin(t, a, "amal")
		if _, err := a.Refresh(ctx, other.RefreshToken); err != nil {
			t.Fatalf("other session: %v", err)
		}

		// Expiry.
		s4 := mustLogin(t, a, "amal")
		clock.Advance(12*time.Hour + time.Second)
		if _, err := a.Refresh(ctx, s4.RefreshToken); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("expired refresh = %v", err)
		}
		// Logout.
		s5 := mustLogin(t, a, "amal")
		if err := a.RevokeSession(ctx, s5.User.ID, s5.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Refresh(ctx, s5.RefreshToken); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("refresh after logout = %v", err)
		}
		for _, junk := range []string{"", "cfr_", "cfr_" + strings.Repeat("A", 43), "cfs_" + strings.Repeat("A", 43), strings.Repeat("x", 5000)} {
			if _, err := a.Refresh(ctx, junk); !errs.Is(err, errs.Unauthenticated) {
				t.Fatalf("Refresh(%.10q) = %v", junk, err)
			}
		}
	})
}

// Two requests racing with one refresh token: one wins, and the other is
// treated as reuse (so the session ends): a stolen token used at the same
// moment as the real one cannot fork the session.
func TestConcurrentRefreshOfOneTokenForksNothing(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := newTestAccounts(t, db, newTestClock())
		if _, err := a.AddUser(ctx, "amal", goodPassword, Physician); err != nil {
			t.Fatal(err)
		}
		s := mustLogin(t, a, "amal")
		var wg sync.WaitGroup
		results := make([]error, 8)
		for i := range results {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, results[i] = a.Refresh(ctx, s.RefreshToken)
			}(i)
		}
		wg.Wait()
		ok := 0
		for _, err := range results {
			if err == nil {
				ok++
			} else if !errs.Is(err, errs.Unauthenticated) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		if ok > 1 {
			t.Fatalf("%d concurrent refreshes of one token succeeded", ok)
		}
		var live int
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM auth_refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
			WHERE t.rotated_at IS NULL AND s.revoked_at IS NULL`).Scan(&live); err != nil {
			t.Fatal(err)
		}
		if live > 1 {
			t.Fatalf("%d live refresh tokens after the race", live)
		}
	})
}

func TestMachineClients(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := newTestAccounts(t, db, newTestClock())
		scopes, err := ParseScopes("system/Claim.cruds, system/Coverage.rs system/Claim.cruds")
		if err != nil || len(scopes) != 2 {
			t.Fatalf("ParseScopes = %v %v", scopes, err)
		}
		c, secret, err := a.AddClient(ctx, "payer-gateway", Integration, scopes)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, "cfs_") {
			t.Fatalf("secret %q", secret)
		}
		var stored []byte
		if err := db.Reader().QueryRow(ctx, `SELECT secret_hash FROM auth_clients WHERE id = $1`, c.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(stored), secret[4:]) || len(stored) != 32 {
			t.Fatalf("stored secret is not a SHA-256 hash")
		}
		got, err := a.AuthenticateClient(ctx, c.ID, secret)
		if err != nil || got.Name != "payer-gateway" || got.Role != Integration || len(got.Scopes) != 2 {
			t.Fatalf("AuthenticateClient = %+v, %v", got, err)
		}
		if _, _, err := a.AddClient(ctx, "payer-gateway", Integration, scopes); !errs.Is(err, errs.Conflict) {
			t.Fatalf("duplicate name = %v", err)
		}
		for _, bad := range []struct{ id, secret string }{{c.ID, wrongLast(secret)}, {"nope", secret}, {c.ID, "cfs_short"}} {
			if _, err := a.AuthenticateClient(ctx, bad.id, bad.secret); !errs.Is(err, errs.Unauthenticated) {
				t.Fatalf("bad credentials = %v", err)
			}
		}
		if err := a.DisableClient(ctx, "payer-gateway"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AuthenticateClient(ctx, c.ID, secret); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("disabled client = %v", err)
		}
		list, err := a.ListClients(ctx)
		if err != nil || len(list) != 1 || !list[0].Disabled {
			t.Fatalf("ListClients = %+v %v", list, err)
		}
	})
}

func TestGrantedScopesAreTheIntersection(t *testing.T) {
	t.Parallel()
	allowed := []string{"system/Claim.cruds", "system/Coverage.rs"}
	cases := []struct {
		name      string
		requested []string
		want      string
		err       bool
	}{
		{"none requested gives all allowed", nil, "system/Claim.cruds system/Coverage.rs", false},
		{"a subset is granted", []string{"system/Coverage.rs"}, "system/Coverage.rs", false},
		{"extra scopes are dropped", []string{"system/Coverage.rs", "system/Patient.cruds"}, "system/Coverage.rs", false},
		{"only foreign scopes is an error", []string{"system/Patient.cruds"}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := GrantScopes(allowed, c.requested)
			if (err != nil) != c.err || strings.Join(got, " ") != c.want {
				t.Fatalf("GrantScopes = %v, %v", got, err)
			}
		})
	}
	if _, err := ParseScopes(`bad"scope`); err == nil {
		t.Fatal("a quote in a scope was accepted")
	}
	if err := errors.Unwrap(nil); err != nil {
		t.Fatal(err)
	}
}

// wrongLast changes a secret's last character (to one it is not).
func wrongLast(s string) string {
	if s[len(s)-1] == 'A' {
		return s[:len(s)-1] + "B"
	}
	return s[:len(s)-1] + "A"
}

// Password hashing waits for a slot; a request whose deadline passes while
// waiting gets 503 instead of adding another 19 MiB to memory.
func TestPasswordHashingIsBoundedInConcurrency(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	a, err := NewAccounts(db, AccountsConfig{Params: cheapParams(), MaxConcurrentHashes: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := a.AddUser(ctx, "amal", goodPassword, Nurse); err != nil {
		t.Fatal(err)
	}
	a.hashSlots <- struct{}{} // someone else is hashing
	// Long enough for the account look-up on a loaded machine; the wait for
	// the busy slot is what must end it.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := a.Authenticate(short, "amal", goodPassword, ""); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("login with every slot busy = %v, want unavailable", err)
	}
	<-a.hashSlots
	if _, err := a.Authenticate(ctx, "amal", goodPassword, ""); err != nil {
		t.Fatalf("login with a free slot: %v", err)
	}
}
