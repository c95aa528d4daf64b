package hcx

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// DefaultGatewayCode is the participant code of a development gateway
// (`careflow payer-sim`): the audience of careflow's tokens and the issuer
// the callbacks' tokens must name.
const DefaultGatewayCode = "hcx-gateway"

// RoleProvider is careflow's registry role.
const RoleProvider = "provider"

// Config is everything a participant needs; `careflow serve` builds it from
// its flags (--hcx-gateway, --hcx-participant-code, --hcx-key, --hcx-cert,
// --hcx-registry, --hcx-callback-url).
type Config struct {
	// Identity is careflow's own: participant code, private keys (newest
	// first), certificate of the newest.
	Identity Identity
	// Name is the participant name registered in development.
	Name string
	// GatewayURL is the gateway's base URL (actions are POSTed under it).
	GatewayURL string
	// GatewayCode is the gateway's participant code (DefaultGatewayCode
	// when empty).
	GatewayCode string
	// RegistryURL is the registry's base URL (GatewayURL when empty).
	RegistryURL string
	// Outbound is the client every call goes through; its allow-list must
	// hold the gateway's and the registry's host:port (AllowHosts lists
	// them).
	Outbound *outbound.Client
	DB       *store.DB
	Ring     *phi.Ring
	// Clock is the time source (time.Now when nil).
	Clock func() time.Time
	// CacheTTL is how long registry answers are kept (DefaultCacheTTL).
	CacheTTL time.Duration
	// MaxBody bounds an inbound call's body (DefaultMaxBody).
	MaxBody int64
	Logger  *slog.Logger
}

// AllowHosts returns the host:port entries the outbound client must allow
// for a gateway and registry URL.
func AllowHosts(urls ...string) ([]string, error) {
	var hosts []string
	for _, raw := range urls {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("hcx: the gateway and registry must be http(s) URLs")
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		hosts = append(hosts, strings.ToLower(u.Hostname())+":"+port)
	}
	return hosts, nil
}

// Participant is careflow as an HCX provider participant.
type Participant struct {
	cfg      Config
	registry *Registry
	log      *Log
	client   *Client
}

// NewParticipant checks cfg and builds the participant.
func NewParticipant(cfg Config) (*Participant, error) {
	if err := cfg.Identity.Validate(); err != nil {
		return nil, err
	}
	if cfg.GatewayURL == "" {
		return nil, errors.New("hcx: the gateway URL is not set")
	}
	if cfg.Outbound == nil || cfg.DB == nil || cfg.Ring == nil {
		return nil, errors.New("hcx: the outbound client, database and key ring are required")
	}
	cfg.GatewayURL = strings.TrimRight(cfg.GatewayURL, "/")
	if cfg.RegistryURL == "" {
		cfg.RegistryURL = cfg.GatewayURL
	}
	for _, u := range []string{cfg.GatewayURL, cfg.RegistryURL} {
		if err := cfg.Outbound.Allowed(u); err != nil {
			return nil, errors.New("hcx: the outbound client does not allow the gateway's or registry's host")
		}
	}
	if cfg.GatewayCode == "" {
		cfg.GatewayCode = DefaultGatewayCode
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Participant{cfg: cfg}
	p.registry = NewRegistry(cfg.RegistryURL, cfg.Identity, cfg.GatewayCode, cfg.Outbound, cfg.CacheTTL, cfg.Clock)
	p.log = NewLog(cfg.DB, cfg.Ring)
	p.client = &Client{self: cfg.Identity, gatewayURL: cfg.GatewayURL, gatewayCode: cfg.GatewayCode,
		http: cfg.Outbound, registry: p.registry, tokens: NewTokens(cfg.Identity.Code, cfg.Clock), log: p.log, now: cfg.Clock}
	return p, nil
}

// Client is the sending side (rcm.Payer).
func (p *Participant) Client() *Client { return p.client }

// Directory is the cached participant registry (rcm.Directory).
func (p *Participant) Directory() *Registry { return p.registry }

// Log is the exchange log.
func (p *Participant) Log() *Log { return p.log }

// Handler receives the gateway's calls under Path (POST
// /hcx/v1/{entity}/{op}) and hands accepted messages to inbox. serve mounts
// it as a public route: the gateway's bearer token is its authentication.
func (p *Participant) Handler(inbox Inbox) http.Handler {
	h := &handler{self: p.cfg.Identity, gatewayCode: p.cfg.GatewayCode, registry: p.registry, log: p.log,
		db: p.cfg.DB, inbox: inbox, maxBody: p.cfg.MaxBody, now: p.cfg.Clock, logger: p.cfg.Logger}
	return h.routes()
}

// RegisterDev registers careflow with a development gateway (`careflow
// payer-sim`), with callbackURL (where the gateway reaches Handler: the
// base that Path is under) as its endpoint and its certificate for both
// encryption and signing.
func (p *Participant) RegisterDev(ctx context.Context, callbackURL string) error {
	name := p.cfg.Name
	if name == "" {
		name = p.cfg.Identity.Code
	}
	certPEM := EncodeCertificatePEM(p.cfg.Identity.Cert)
	return p.registry.Register(ctx, payer.Participant{
		Code: p.cfg.Identity.Code, Name: name, Roles: []string{RoleProvider}, Status: StatusActive,
		EndpointURL: strings.TrimRight(callbackURL, "/"),
	}, certPEM, certPEM)
}
