package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// standing is a SessionChecker whose answer the test sets.
type standing struct{ live bool }

func (s *standing) Active(context.Context, string, string, Role) (bool, error) { return s.live, nil }
func (s *standing) ClientActive(context.Context, string, Role) (bool, error)   { return s.live, nil }

// A verified token is remembered, but what can change is asked again on
// every request: the holder's standing (the session check) and the clock
// (nbf and exp with the skew).
func TestVerifiedTokensStillCheckStandingAndTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	tok := newTestTokens(t, clock.Now, newKey(t))
	st := &standing{live: true}
	v := NewVerifier(tok, nil).WithSessionCheck(st)
	ct, err := tok.IssueClient(Client{ID: "c-1", Role: Integration}, []string{"system/Patient.rs", "system/Claim.cruds"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Authenticate(ctx, ct.Token)
	if err != nil {
		t.Fatal(err)
	}
	// Each hit hands out its own principal: a caller changing it changes
	// no other request's.
	p.Scopes[0] = "system/*.cruds"
	p.Role = Admin
	p2, err := v.Authenticate(ctx, ct.Token)
	if err != nil || p2.Role != Integration || strings.Join(p2.Scopes, " ") != "system/Patient.rs system/Claim.cruds" {
		t.Fatalf("second principal %+v %v", p2, err)
	}
	// The client is disabled: the very next request is refused, cached
	// token or not.
	st.live = false
	if _, err := v.Authenticate(ctx, ct.Token); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("disabled client: %v", err)
	}
	st.live = true
	// A token one byte away from a remembered one is verified, and fails.
	sig := ct.Token[strings.LastIndexByte(ct.Token, '.')+1:]
	flip := "A"
	if sig[0] == 'A' {
		flip = "B"
	}
	tampered := ct.Token[:len(ct.Token)-len(sig)] + flip + sig[1:]
	if _, err := v.Authenticate(ctx, tampered); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("tampered signature: %v", err)
	}
	// Expiry: valid until exp plus the skew, then refused, from the cache
	// as from a fresh verification.
	clock.Advance(tok.AccessTTL() + DefaultClockSkew - time.Second)
	if _, err := v.Authenticate(ctx, ct.Token); err != nil {
		t.Fatalf("within skew: %v", err)
	}
	clock.Advance(2 * time.Second)
	if _, err := v.Authenticate(ctx, ct.Token); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("after exp+skew: %v", err)
	}
}

// A token not valid yet is refused, and stays refused until its nbf (less
// the skew) even after another token was remembered.
func TestVerifiedTokensRefuseTokensNotValidYet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newTestClock()
	key := newKey(t)
	tok := newTestTokens(t, clock.Now, key)
	v := NewVerifier(tok, nil)
	now := clock.Now()
	later := now.Add(5 * time.Minute)
	c := with(with(goodClaims(now), "nbf", later.Unix()), "iat", later.Unix())
	c = with(c, "exp", later.Add(10*time.Minute).Unix())
	token := forge(map[string]any{"alg": "EdDSA", "kid": tok.Keys().SigningKeyID(), "typ": "at+jwt"}, c, edSigner(key))
	for range 2 {
		if _, err := v.Authenticate(ctx, token); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("before nbf: %v", err)
		}
	}
	clock.Advance(5*time.Minute - DefaultClockSkew)
	if _, err := v.Authenticate(ctx, token); err != nil {
		t.Fatalf("at nbf less the skew: %v", err)
	}
	// Remembered now; a clock set back before its window refuses it again.
	clock.Advance(-time.Minute)
	if _, err := v.Authenticate(ctx, token); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("clock set back: %v", err)
	}
}

// The cache is bounded: when full, expired tokens go first, then all.
func TestVerifiedTokensAreBounded(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	ks, err := NewKeySet(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	kid := ks.SigningKeyID()
	c := newVerifiedTokens(3)
	live := window{until: now.Add(time.Minute)}
	gone := window{until: now.Add(-time.Second)}
	c.put("a", kid, &Principal{Subject: "a"}, gone, now)
	c.put("b", kid, &Principal{Subject: "b"}, live, now)
	c.put("c", kid, &Principal{Subject: "c"}, live, now)
	c.put("d", kid, &Principal{Subject: "d"}, live, now)
	if len(c.entries) != 3 {
		t.Fatalf("%d entries after an expired one made room", len(c.entries))
	}
	if _, ok := c.get("b", ks, now); !ok {
		t.Fatal("a live token was dropped while an expired one made room")
	}
	c.put("e", kid, &Principal{Subject: "e"}, live, now)
	if len(c.entries) != 1 {
		t.Fatalf("%d entries after a full cache of live tokens took one more", len(c.entries))
	}
	// A token verified by a key the set does not hold is not served.
	other, _ := NewKeySet(newKey(t))
	if _, ok := c.get("e", other, now); ok {
		t.Fatal("served a token under a key set without its key")
	}
}
