package httpapi

import (
	"context"
	"net/http"
	"net/netip"
	"strings"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/ratelimit"
)

// Authenticator verifies a bearer token and says who it is for. Errors are
// *errs.Error of kind Unauthenticated, Forbidden or Unavailable.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*auth.Principal, error)
}

// AuthenticatorFunc adapts a function (tests of other handlers use one).
type AuthenticatorFunc func(ctx context.Context, token string) (*auth.Principal, error)

// Authenticate implements Authenticator.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, token string) (*auth.Principal, error) {
	return f(ctx, token)
}

// RateLimits are the token-bucket rules the server applies. A zero rule is
// off.
type RateLimits struct {
	// PerUser applies to each authenticated principal.
	PerUser ratelimit.Rule
	// PerAddr applies to each client address on every route but the probes.
	PerAddr ratelimit.Rule
	// Credentials replaces PerAddr on the routes that take passwords,
	// refresh tokens or client secrets: guessing must be slow.
	Credentials ratelimit.Rule
	// Gateway replaces PerAddr on the HCX callback route: one gateway
	// delivers every payer's answers from one address, several per claim,
	// so a people-sized per-address rule would cap the claims careflow can
	// settle. The handler authenticates each call by the gateway's token.
	Gateway ratelimit.Rule
}

// Identity is everything the server needs to know who a request is from.
type Identity struct {
	// Authenticator verifies bearer tokens. Nil means no token is ever
	// valid: every protected route answers 401 (deny by default).
	Authenticator Authenticator
	// Accounts and Tokens serve login, refresh, logout, me and the
	// client_credentials token endpoint; nil answers those with 503.
	Accounts *auth.Accounts
	Tokens   *auth.Tokens
	// Limiter holds the rate-limit buckets (nil: in memory, bounded).
	Limiter ratelimit.Limiter
	Limits  RateLimits
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// MetricsAuth makes /metrics require a token like any protected route.
	MetricsAuth bool
}

// The routes anyone may call. Every other route, registered now or later,
// requires a valid token: a new handler is protected unless it is added
// here on purpose.
var publicRoutes = map[string]bool{
	"GET /healthz":               true,
	"GET /readyz":                true,
	"GET /api/v1/openapi.json":   true,
	"POST /api/v1/auth/login":    true,
	"POST /api/v1/auth/refresh":  true,
	"POST /api/v1/auth/token":    true,
	"GET /api/v1/auth/jwks.json": true,
	// The CapabilityStatement holds no data; SMART and FHIR clients read it
	// before they have a token to learn how to get one.
	"GET /fhir/R4/metadata": true,
	// Payers' messages through the HCX gateway: the gateway's signed bearer
	// token (not a careflow token) and the JWE addressed to careflow are
	// checked by payer/hcx's handler; an unauthenticated call is refused
	// there with the protocol's error.
	hcxRoute: true,
	// The clinical module's health says nothing of any patient; a load
	// balancer polls it like /healthz.
	"GET /api/v1/clinical-workflows/health": true,
}

// hcxRoute is where the gateway delivers payers' messages (Options.HCX).
const hcxRoute = "POST /hcx/v1/{entity}/{op}"

// credentialRoutes take secrets and get the stricter per-address rule.
var credentialRoutes = map[string]bool{
	"POST /api/v1/auth/login":   true,
	"POST /api/v1/auth/refresh": true,
	"POST /api/v1/auth/token":   true,
}

// probeRoutes are never rate limited: a load balancer polls them from one
// address and must not be locked out of seeing that the node is healthy.
var probeRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

func (s *Server) isPublic(pattern string) bool {
	if pattern == "GET /metrics" {
		return !s.opts.Identity.MetricsAuth
	}
	s.mu.Lock()
	extra := s.extraPublic[pattern]
	s.mu.Unlock()
	return publicRoutes[pattern] || extra
}

// handlePublicFunc registers a route that needs no token. Only the server's
// own tests use it; production public routes are the publicRoutes list.
func (s *Server) handlePublicFunc(pattern string, h http.HandlerFunc) {
	s.mu.Lock()
	if s.extraPublic == nil {
		s.extraPublic = map[string]bool{}
	}
	s.extraPublic[pattern] = true
	s.mu.Unlock()
	s.handle(pattern, h)
}

// guard wraps a route's handler with what runs before it: the client
// address, the per-address rate limit, authentication (unless the route is
// public) and the per-user rate limit. It is applied at registration, so
// there is no way to register a route that skips it.
func (s *Server) guard(pattern string, next http.Handler) http.Handler {
	public := s.isPublic(pattern)
	probe := probeRoutes[pattern]
	addrRule, addrClass := s.opts.Identity.Limits.PerAddr, "addr:"
	switch {
	case credentialRoutes[pattern]:
		addrRule, addrClass = s.opts.Identity.Limits.Credentials, "cred:"
	case pattern == hcxRoute:
		addrRule, addrClass = s.opts.Identity.Limits.Gateway, "hcx:"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, ctx := s.resolveClientAddr(r)
		ctx, _ = withRateCharge(ctx)
		if !probe && !s.allow(ctx, w, r, addrClass+rateKeyOf(addr), addrRule) {
			return
		}
		if public {
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		if s.opts.TestPrincipal != nil {
			// Tests of other handlers stand in for authentication (see
			// Options.TestPrincipal); production never sets it.
			p := s.opts.TestPrincipal(r)
			if p == nil {
				s.writeUnauthenticated(w, r, errs.E(errs.Unauthenticated, "this route requires a bearer token"), "")
				return
			}
			s.serveAs(w, r.WithContext(auth.WithPrincipal(ctx, p)), next)
			return
		}
		token, err := parseBearer(r.Header.Values("Authorization"))
		if err != nil {
			s.writeUnauthenticated(w, r, err, "invalid_request")
			return
		}
		if token == "" {
			s.writeUnauthenticated(w, r, errs.E(errs.Unauthenticated, "this route requires a bearer token"), "")
			return
		}
		authn := s.opts.Identity.Authenticator
		if authn == nil {
			s.writeUnauthenticated(w, r, errs.E(errs.Unauthenticated, "access token is invalid"), "invalid_token")
			return
		}
		p, err := authn.Authenticate(ctx, token)
		if err != nil {
			if errs.KindOf(err) == errs.Unauthenticated {
				s.writeUnauthenticated(w, r, err, "invalid_token")
				return
			}
			s.writeError(w, r, err)
			return
		}
		if !s.allow(ctx, w, r, "user:"+p.Issuer+"|"+p.Subject, s.opts.Identity.Limits.PerUser) {
			return
		}
		s.serveAs(w, r.WithContext(auth.WithPrincipal(ctx, p)), next)
	})
}

// serveAs runs an authenticated request, with its stated purpose of use
// (a malformed one is a 400).
func (s *Server) serveAs(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ctx, err := statedPurpose(r.Context(), r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	next.ServeHTTP(w, r.WithContext(ctx))
}

// writeUnauthenticated answers 401 with an RFC 6750 challenge naming the
// error class (none when no token was sent at all, as §3.1 asks).
func (s *Server) writeUnauthenticated(w http.ResponseWriter, r *http.Request, err error, class string) {
	challenge := `Bearer realm="careflow"`
	if class != "" {
		challenge += `, error="` + class + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	s.writeError(w, r, err)
}

// allow charges the request to a bucket: one token now, and guard remembers
// the bucket so a handler can charge the rest of a costly request
// (chargeMore).
func (s *Server) allow(ctx context.Context, w http.ResponseWriter, r *http.Request, key string, rule ratelimit.Rule) bool {
	if rule.Off() {
		return true
	}
	if c := rateChargeOf(ctx); c != nil {
		c.buckets = append(c.buckets, rateBucket{key: key, rule: rule})
	}
	return s.allowN(ctx, w, r, key, rule, 1)
}

// maxAuthorizationLen bounds the Authorization header we parse.
const maxAuthorizationLen = auth.MaxTokenBytes + len("Bearer ")

// parseBearer extracts an RFC 6750 bearer token from the Authorization
// header values. No header gives "" and no error; more than one header, a
// different scheme, or a token with characters outside token68 is an
// error. The error never quotes the header.
func parseBearer(values []string) (string, error) {
	if len(values) == 0 {
		return "", nil
	}
	bad := func(msg string) error { return errs.E(errs.Unauthenticated, "%s", msg) }
	if len(values) > 1 {
		return "", bad("send one Authorization header")
	}
	v := values[0]
	if len(v) > maxAuthorizationLen {
		return "", bad("Authorization header is too long")
	}
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", bad("Authorization must use the Bearer scheme")
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", bad("Authorization header has no token")
	}
	// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	i := 0
	for ; i < len(token); i++ {
		c := token[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return "", bad("bearer token is malformed")
	}
	for ; i < len(token); i++ {
		if token[i] != '=' {
			return "", bad("bearer token is malformed")
		}
	}
	return token, nil
}
