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
