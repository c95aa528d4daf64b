package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/httpapi"
	"github.com/careflow/careflow/internal/ratelimit"
	"github.com/careflow/careflow/internal/store"
)

// AuthConfig is the identity half of the configuration: tokens, identity
// providers, rate limits, proxies and TLS, plus the account commands' flags.
type AuthConfig struct {
	JWTKeyFile         string
	JWTPreviousKeyFile string
	AccessTokenTTL     time.Duration
	RefreshTokenTTL    time.Duration

	OIDCIssuer    string
	OIDCAudience  string
	OIDCRoleClaim string

	Redis          string
	RedisPrefix    string
	TrustedProxies []netip.Prefix
	RateLimitUser  ratelimit.Rule
	RateLimitAddr  ratelimit.Rule
	RateLimitLogin ratelimit.Rule
	RateLimitHCX   ratelimit.Rule
	MetricsAuth    bool

	TLSCert string
	TLSKey  string

	// careflow user / client.
	Role         string
	PasswordFile string
	Scopes       string
}

func defaultAuthConfig() AuthConfig {
	return AuthConfig{
		AccessTokenTTL:  auth.DefaultAccessTTL,
		RefreshTokenTTL: 12 * time.Hour,
		OIDCRoleClaim:   "roles",
		RedisPrefix:     "careflow:rl:",
		RateLimitUser:   ratelimit.Rule{Rate: 50, Burst: 50},
		RateLimitAddr:   ratelimit.Rule{Rate: 100, Burst: 100},
		RateLimitLogin:  ratelimit.Rule{Rate: 10.0 / 60, Burst: 10},
		// A claim costs the gateway's address about four callbacks; this
		// leaves room for several times the node's throughput.
		RateLimitHCX: ratelimit.Rule{Rate: 2000, Burst: 2000},
	}
}

var (
	cmdsUser   = []string{"user"}
	cmdsClient = []string{"client"}
	cmdsRole   = []string{"user", "client"}
)

func stringOption(name, arg, usage string, cmds []string, field func(*Config) *string, check func(string) error) option {
	return option{name: name, arg: arg, commands: cmds, usage: usage,
		def: func(c Config) string { return *field(&c) },
		set: func(c *Config, v string) error {
			if check != nil {
				if err := check(v); err != nil {
					return err
				}
			}
			*field(c) = v
			return nil
		}}
}

func ruleOption(name, usage string, field func(*Config) *ratelimit.Rule) option {
	return option{name: name, arg: "RATE", commands: cmdsServe, usage: usage + ` (N/s, N/m or N/h, or "off")`,
		def: func(c Config) string { return field(&c).String() },
		set: func(c *Config, v string) error {
			r, err := ratelimit.ParseRule(v)
			if err != nil {
				return err
			}
			*field(c) = r
			return nil
		}}
}

func ttlOption(name, usage string, field func(*Config) *time.Duration, lo, hi time.Duration) option {
	return option{name: name, arg: "DURATION", commands: cmdsServe, usage: usage,
		def: func(c Config) string { return field(&c).String() },
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < lo || d > hi {
				return fmt.Errorf("must be a duration from %v to %v", lo, hi)
			}
			*field(c) = d
			return nil
		}}
}

func nonEmpty(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// authOptions are the identity settings, added to options().
func authOptions() []option {
	return []option{
		stringOption("jwt-key-file", "PATH", "Ed25519 private key (PEM PKCS #8, mode 0600) that signs access tokens; without it a development key is generated in the data dir, which other nodes do not share",
			cmdsServe, func(c *Config) *string { return &c.Auth.JWTKeyFile }, nonEmpty),
		stringOption("jwt-previous-key-file", "PATH", "the previous signing key (PEM public or private key) during a rotation: tokens it signed still verify",
			cmdsServe, func(c *Config) *string { return &c.Auth.JWTPreviousKeyFile }, nonEmpty),
		ttlOption("access-token-ttl", "lifetime of access tokens", func(c *Config) *time.Duration { return &c.Auth.AccessTokenTTL }, time.Minute, time.Hour),
		ttlOption("refresh-token-ttl", "how long an unused refresh token stays valid (sessions end after 7 days regardless)", func(c *Config) *time.Duration { return &c.Auth.RefreshTokenTTL }, 5*time.Minute, 7*24*time.Hour),
		stringOption("oidc-issuer", "URL", "https issuer URL of an external OpenID Connect provider whose access tokens are accepted (discovery and JWKS are fetched from it)",
			cmdsServe, func(c *Config) *string { return &c.Auth.OIDCIssuer }, func(v string) error {
				u, err := url.Parse(v)
				if err != nil || u.Scheme != "https" || u.Host == "" {
					return errors.New("must be an https URL")
				}
				return nil
			}),
		stringOption("oidc-audience", "AUD", "audience the OIDC provider's tokens must carry (required with --oidc-issuer)",
			cmdsServe, func(c *Config) *string { return &c.Auth.OIDCAudience }, nonEmpty),
		stringOption("oidc-role-claim", "CLAIM", "claim (or dotted path, e.g. realm_access.roles) holding careflow role names in OIDC tokens",
			cmdsServe, func(c *Config) *string { return &c.Auth.OIDCRoleClaim }, nonEmpty),
		stringOption("redis", "URL", "redis://host:port/db holding rate-limit counters shared by all nodes (default: in memory, per node)",
			cmdsServe, func(c *Config) *string { return &c.Auth.Redis }, func(v string) error {
				if _, err := redis.ParseURL(v); err != nil {
					return errors.New("must be a redis:// or rediss:// URL")
				}
				return nil
			}),
		stringOption("redis-prefix", "PREFIX", "prefix of careflow's rate-limit keys in --redis (deployments sharing one Redis need different ones)",
			cmdsServe, func(c *Config) *string { return &c.Auth.RedisPrefix }, nonEmpty),
		{name: "trusted-proxy", arg: "CIDRS", commands: cmdsServe,
			usage: "comma-separated proxy networks (e.g. 10.0.0.0/8) whose X-Forwarded-For is believed; the right-most untrusted address is the client",
			def: func(c Config) string {
				var s []string
				for _, p := range c.Auth.TrustedProxies {
					s = append(s, p.String())
				}
				return strings.Join(s, ",")
			},
			set: func(c *Config, v string) error {
				var out []netip.Prefix
				for _, f := range strings.Split(v, ",") {
					f = strings.TrimSpace(f)
					if f == "" {
						continue
					}
					p, err := netip.ParsePrefix(f)
					if err != nil {
						a, err2 := netip.ParseAddr(f)
						if err2 != nil {
							return fmt.Errorf("%q is not a CIDR or an address", f)
						}
						p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
					}
					out = append(out, p.Masked())
				}
				c.Auth.TrustedProxies = out
				return nil
			}},
		ruleOption("rate-limit-user", "requests each authenticated user or client may make", func(c *Config) *ratelimit.Rule { return &c.Auth.RateLimitUser }),
		ruleOption("rate-limit-addr", "requests each client address may make (IPv6 by /64)", func(c *Config) *ratelimit.Rule { return &c.Auth.RateLimitAddr }),
		ruleOption("rate-limit-login", "login, refresh and token requests each client address may make", func(c *Config) *ratelimit.Rule { return &c.Auth.RateLimitLogin }),
		ruleOption("rate-limit-hcx", "HCX callbacks each address (the gateway's) may deliver to /hcx/v1", func(c *Config) *ratelimit.Rule { return &c.Auth.RateLimitHCX }),
		{name: "metrics-auth", arg: "BOOL", commands: cmdsServe,
			usage: "require a bearer token for /metrics (leave false only while listening on loopback or behind a private network)",
			def:   func(c Config) string { return fmt.Sprint(c.Auth.MetricsAuth) },
			set: func(c *Config, v string) error {
				switch strings.ToLower(v) {
				case "true", "1", "yes":
					c.Auth.MetricsAuth = true
				case "false", "0", "no":
					c.Auth.MetricsAuth = false
				default:
					return errors.New("must be true or false")
				}
				return nil
			}},
		stringOption("tls-cert", "PATH", "PEM certificate chain; with --tls-key, serve HTTPS only (TLS 1.2 or newer) and send HSTS",
			cmdsServe, func(c *Config) *string { return &c.Auth.TLSCert }, nonEmpty),
		stringOption("tls-key", "PATH", "PEM private key of --tls-cert",
			cmdsServe, func(c *Config) *string { return &c.Auth.TLSKey }, nonEmpty),
		stringOption("role", "ROLE", "role of the account or client: "+roleList(),
			cmdsRole, func(c *Config) *string { return &c.Auth.Role }, func(v string) error {
				if !auth.Role(v).Valid() {
					return fmt.Errorf("must be one of %s", roleList())
				}
				return nil
			}),
		stringOption("password-file", "PATH", "read the new password from the first line of this file (- for standard input) instead of prompting",
			cmdsUser, func(c *Config) *string { return &c.Auth.PasswordFile }, nonEmpty),
		stringOption("scopes", "SCOPES", "space- or comma-separated scopes the client may be granted (e.g. \"system/Claim.cruds system/Coverage.rs\")",
			cmdsClient, func(c *Config) *string { return &c.Auth.Scopes }, func(v string) error {
				_, err := auth.ParseScopes(v)
				return err
			}),
	}
}

// loadPolicy returns the access policy: the embedded default unless
// --access-policy names a file.
func loadPolicy(cfg Config) (*auth.Policy, error) {
	if cfg.AccessPolicy == "" {
		return auth.DefaultPolicy(), nil
	}
	return auth.LoadPolicyFile(cfg.AccessPolicy)
}

func roleList() string {
	var s []string
	for _, r := range auth.Roles() {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}

// identityServices is what serve builds for authentication.
type identityServices struct {
	http  httpapi.Identity
	close func()
}

// buildIdentity loads the signing keys, builds the account, token and OIDC
// services and the rate limiter.
func buildIdentity(ctx context.Context, cfg Config, db *store.DB, policy *auth.Policy, logger *slog.Logger) (identityServices, error) {
	out := identityServices{close: func() {}}
	a := cfg.Auth
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return out, errors.New("--tls-cert and --tls-key go together")
	}
	if (a.OIDCIssuer == "") != (a.OIDCAudience == "") {
		return out, errors.New("--oidc-issuer and --oidc-audience go together")
	}
	if a.TLSCert != "" {
		// Fail the start, not the first handshake, on a bad pair.
		if _, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey); err != nil {
			return out, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	}
	var (
		signing ed25519.PrivateKey
		err     error
	)
	if a.JWTKeyFile != "" {
		signing, err = auth.LoadSigningKeyFile(a.JWTKeyFile)
		if err != nil {
			return out, err
		}
	} else {
		var created bool
		signing, created, err = auth.LoadOrCreateDevSigningKey(cfg.DataDir)
		if err != nil {
			return out, err
		}
		logger.Warn("JWT signing key is in development mode: kept in the data dir and not shared with other nodes; use --jwt-key-file in production",
			"created", created)
	}
	var previous []ed25519.PublicKey
	if a.JWTPreviousKeyFile != "" {
		p, err := auth.LoadVerificationKeyFile(a.JWTPreviousKeyFile)
		if err != nil {
			return out, err
		}
		previous = append(previous, p)
	}
	keys, err := auth.NewKeySet(signing, previous...)
	if err != nil {
		return out, err
	}
	tokens := auth.NewTokens(keys, auth.TokenConfig{AccessTTL: a.AccessTokenTTL})
	accounts, err := auth.NewAccounts(db, auth.AccountsConfig{RefreshTTL: a.RefreshTokenTTL, Policy: policy})
	if err != nil {
		return out, err
	}
	// Accounts given a role the policy keeps for machine clients (before it
	// said so) cannot sign in; say so once at start, without names.
	if n, err := accounts.UsersWithRolesNotForPeople(ctx); err != nil {
		return out, err
	} else if n > 0 {
		logger.Warn("accounts have a role that is not for people and cannot sign in until careflow user set-role gives them another (careflow user list shows them)",
			"accounts", n)
	}
	var oidc *auth.OIDCProvider
	if a.OIDCIssuer != "" {
		oidc, err = auth.NewOIDCProvider(auth.OIDCConfig{Issuer: a.OIDCIssuer, Audience: a.OIDCAudience, RoleClaim: a.OIDCRoleClaim})
		if err != nil {
			return out, err
		}
		// Fetch now to report a misconfiguration at start; a provider that is
		// down now is retried when the first token arrives.
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := oidc.Discover(dctx); err != nil {
			logger.Warn("OIDC provider not reachable at start; will retry on first token", "error", err.Error())
		}
		cancel()
	}

	var limiter ratelimit.Limiter = ratelimit.NewMemory(0, nil)
	if a.Redis != "" {
		opts, err := redis.ParseURL(a.Redis)
		if err != nil {
			return out, errors.New("--redis is not a valid redis URL")
		}
		client := redis.NewClient(opts)
		out.close = func() { _ = client.Close() }
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := client.Ping(pctx).Err(); err != nil {
			logger.Warn("redis not reachable at start; rate limits are per node until it is", "error", err.Error())
		}
		cancel()
		var lastLog atomic.Int64
		limiter = ratelimit.NewFallback(ratelimit.NewRedis(client, a.RedisPrefix), limiter, func(err error) {
			// One line a minute at most: an outage must not flood the log.
			now := time.Now().Unix()
			if last := lastLog.Load(); now-last >= 60 && lastLog.CompareAndSwap(last, now) {
				logger.Warn("redis rate limiter failed; using per-node limits", "error", err.Error())
			}
		})
	}
	out.http = httpapi.Identity{
		// A revoked session (logout, disabled account) ends its access
		// tokens within five seconds rather than at their expiry.
		Authenticator:  auth.NewVerifier(tokens, oidc).WithSessionCheck(auth.NewSessionCache(accounts, 5*time.Second, 0)),
		Accounts:       accounts,
		Tokens:         tokens,
		Limiter:        limiter,
		Limits:         httpapi.RateLimits{PerUser: a.RateLimitUser, PerAddr: a.RateLimitAddr, Credentials: a.RateLimitLogin, Gateway: a.RateLimitHCX},
		TrustedProxies: a.TrustedProxies,
		MetricsAuth:    a.MetricsAuth,
	}
	return out, nil
}
