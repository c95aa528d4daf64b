package hcx

import (
	"context"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestBearerTokensVerifyOnlyForTheirIssuerAudienceAndLifetime(t *testing.T) {
	t.Parallel()
	gw, prov := testKeys()[0], testKeys()[1]
	keyOf := func(_ context.Context, code string) (*rsa.PublicKey, error) {
		switch code {
		case "gateway@hcx":
			return &gw.PublicKey, nil
		case "provider@hcx":
			return &prov.PublicKey, nil
		}
		return nil, errors.New("unknown participant")
	}
	now := time.Now()
	ctx := context.Background()

	good, err := SignToken(gw, "gateway@hcx", "provider@hcx", now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyToken(ctx, good, "provider@hcx", now.Add(time.Minute), keyOf)
	if err != nil || c.Issuer != "gateway@hcx" || c.ID == "" {
		t.Fatalf("a good token: %+v, %v", c, err)
	}

	forged, _ := SignToken(prov, "gateway@hcx", "provider@hcx", now) // signed with another's key
	unknown, _ := SignToken(gw, "stranger@hcx", "provider@hcx", now)
	hs := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: make([]byte, 32)}, nil)
		tok, _ := jwt.Signed(s).Claims(jwt.Claims{Issuer: "gateway@hcx", Audience: jwt.Audience{"provider@hcx"},
			ID: "x", IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
		return tok
	}()
	long := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: gw}, nil)
		tok, _ := jwt.Signed(s).Claims(jwt.Claims{Issuer: "gateway@hcx", Audience: jwt.Audience{"provider@hcx"},
			ID: "x", IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
		return tok
	}()
	noJTI := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: gw}, nil)
		tok, _ := jwt.Signed(s).Claims(jwt.Claims{Issuer: "gateway@hcx", Audience: jwt.Audience{"provider@hcx"},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
		return tok
	}()
	parts := strings.Split(good, ".")
	for _, tc := range []struct {
		name, token, aud string
		at               time.Time
	}{
		{"an expired token", good, "provider@hcx", now.Add(10 * time.Minute)},
		{"a token for another participant", good, "other@hcx", now},
		{"a token signed with another participant's key", forged, "provider@hcx", now},
		{"a token from an unknown participant", unknown, "provider@hcx", now},
		{"an HS256 token", hs, "provider@hcx", now},
		{"a token living an hour", long, "provider@hcx", now},
		{"a token without jti", noJTI, "provider@hcx", now},
		{"a token with its signature removed", parts[0] + "." + parts[1] + ".", "provider@hcx", now},
		{"no token", "", "provider@hcx", now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := VerifyToken(ctx, tc.token, tc.aud, tc.at, keyOf); err == nil {
				t.Fatal("verified")
			}
		})
	}
}

func TestTokensAreReusedForHalfTheirLifetimePerAudienceAndKey(t *testing.T) {
	t.Parallel()
	prov, newer := testKeys()[1], testKeys()[2]
	keyOf := func(_ context.Context, code string) (*rsa.PublicKey, error) {
		if code == "provider@hcx" {
			return &prov.PublicKey, nil
		}
		return nil, errors.New("unknown participant")
	}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ts := NewTokens("provider@hcx", clock)
	ctx := context.Background()

	first, err := ts.For(prov, "gateway@hcx")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(tokenReuse - time.Second)
	again, _ := ts.For(prov, "gateway@hcx")
	if again != first {
		t.Fatal("a token was signed again within its reuse period")
	}
	// Whenever it is handed out, the reused token still verifies, with
	// at least half its lifetime left.
	if c, err := VerifyToken(ctx, again, "gateway@hcx", now, keyOf); err != nil || c.Expiry.Sub(now) < TokenLifetime/2 {
		t.Fatalf("the reused token: %+v, %v", c, err)
	}
	if other, _ := ts.For(prov, "other-gateway@hcx"); other == first {
		t.Fatal("a token for one audience was given for another")
	}
	if rotated, _ := ts.For(newer, "gateway@hcx"); rotated == first {
		t.Fatal("a token signed with the old key was given for the new one")
	}
	now = now.Add(2 * time.Second)
	renewed, _ := ts.For(newer, "gateway@hcx")
	now = now.Add(tokenReuse)
	if later, _ := ts.For(newer, "gateway@hcx"); later == renewed {
		t.Fatal("a token was reused past its reuse period")
	}
	now = now.Add(-time.Hour) // the clock stepped back
	if back, _ := ts.For(newer, "gateway@hcx"); back == renewed {
		t.Fatal("a token signed after now was reused")
	}
}
