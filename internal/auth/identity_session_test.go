package auth

import (
	"context"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestEndedSessionsEndTheirAccessTokens(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := newTestClock()
		a := newTestAccounts(t, db, clock)
		if _, err := a.AddUser(ctx, "amal", goodPassword, Nurse); err != nil {
			t.Fatal(err)
		}
		tokens := newTestTokens(t, clock.Now, newKey(t))
		cache := NewSessionCache(a, 5*time.Second, 0)
		v := NewVerifier(tokens, nil).WithSessionCheck(cache)

		s := mustLogin(t, a, "amal")
		at, _ := tokens.IssueUser(s.User, s.ID)
		if _, err := v.Authenticate(ctx, at.Token); err != nil {
			t.Fatal(err)
		}
		if err := a.RevokeSession(ctx, s.User.ID, s.ID); err != nil {
			t.Fatal(err)
		}
		// Cached as live for the TTL, then refused.
		if _, err := v.Authenticate(ctx, at.Token); err != nil {
			t.Fatalf("within the cache TTL: %v", err)
		}
		clock.Advance(6 * time.Second)
		if _, err := v.Authenticate(ctx, at.Token); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("after logout and the TTL: %v", err)
		}
		// Disabling the account ends its sessions too.
		s2 := mustLogin(t, a, "amal")
		at2, _ := tokens.IssueUser(s2.User, s2.ID)
		if err := a.DisableUser(ctx, "amal"); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Authenticate(ctx, at2.Token); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("after disable: %v", err)
		}
		// A token naming a session that never existed.
		forged, _ := tokens.IssueUser(s.User, "0193a4b2-7c1d-7f00-8a00-0000000000ff")
		if _, err := v.Authenticate(ctx, forged.Token); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("unknown session: %v", err)
		}
		// Client tokens have no session and pass.
		ct, _ := tokens.IssueClient(Client{ID: "c", Role: Integration}, nil)
		if _, err := v.Authenticate(ctx, ct.Token); err != nil {
			t.Fatalf("client token: %v", err)
		}
	})
}
