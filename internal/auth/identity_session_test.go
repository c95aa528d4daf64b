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
		// A role change ends the tokens that name the old role; a new
		// login carries the new one.
		if _, err := a.AddUser(ctx, "badr", goodPassword, Physician); err != nil {
			t.Fatal(err)
		}
		s3 := mustLogin(t, a, "badr")
		at3, _ := tokens.IssueUser(s3.User, s3.ID)
		if _, err := v.Authenticate(ctx, at3.Token); err != nil {
			t.Fatal(err)
		}
		if err := a.SetRole(ctx, "badr", Billing); err != nil {
			t.Fatal(err)
		}
		clock.Advance(6 * time.Second)
		if _, err := v.Authenticate(ctx, at3.Token); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("a physician token after the move to billing: %v", err)
		}
		s4 := mustLogin(t, a, "badr")
		at4, _ := tokens.IssueUser(s4.User, s4.ID)
		if p, err := v.Authenticate(ctx, at4.Token); err != nil || p.Role != Billing {
			t.Fatalf("a token after the role change: %+v %v", p, err)
		}

		// Client tokens: live while the client is enabled with that role.
		c, _, err := a.AddClient(ctx, "payer-gateway", Integration, []string{"system/Claim.cruds"})
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := tokens.IssueClient(c, nil)
		if _, err := v.Authenticate(ctx, ct.Token); err != nil {
			t.Fatalf("client token: %v", err)
		}
		if err := a.DisableClient(ctx, "payer-gateway"); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Authenticate(ctx, ct.Token); err != nil {
			t.Fatalf("within the cache TTL: %v", err)
		}
		clock.Advance(6 * time.Second)
		if _, err := v.Authenticate(ctx, ct.Token); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("a disabled client's token: %v", err)
		}
		// A client token for a client that does not exist.
		ghost, _ := tokens.IssueClient(Client{ID: "0193a4b2-7c1d-7f00-8a00-0000000000fe", Role: Integration}, nil)
		if _, err := v.Authenticate(ctx, ghost.Token); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("unknown client: %v", err)
		}
	})
}
