package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/store"
)

// HCXConfig is how careflow reaches payers: as a provider participant of an
// HCX gateway (internal/payer/hcx). With only Gateway set, careflow runs
// with a development identity generated into the data folder and registers
// itself with the gateway at start, which `careflow payer-sim` accepts: the
// two find each other with no key exchanged by hand. In production the
// participant code, the key and certificate files and the registry are set
// and registration is the exchange operator's business.
type HCXConfig struct {
	// Gateway is the gateway's base URL; empty: no payer is reachable and
	// journeys cannot start.
	Gateway string
	// GatewayCode is the gateway's participant code.
	GatewayCode string
	// Registry is the participant registry's base URL (Gateway when empty).
	Registry string
	// ParticipantCode and Name are careflow's own, as the registry lists it.
	ParticipantCode string
	Name            string
	// Keys are careflow's private key files, newest first (more than one
	// during a rotation); Cert certifies the newest. Both empty: the
	// development identity.
	Keys []string
	Cert string
	// CallbackURL is where the gateway reaches careflow's /hcx/v1 routes
	// (default: http(s)://<listen address>/hcx/v1).
	CallbackURL string
}

func defaultHCXConfig() HCXConfig {
	return HCXConfig{GatewayCode: hcx.DefaultGatewayCode, ParticipantCode: "careflow-provider", Name: "careflow"}
}

// dev reports whether careflow runs with its development identity.
func (c HCXConfig) dev() bool { return len(c.Keys) == 0 && c.Cert == "" }

func httpURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be an http(s) URL without credentials, query or fragment")
	}
	return nil
}

// hcxOptions are serve's payer settings.
func hcxOptions() []option {
	urlOption := func(name, usage string, field func(*HCXConfig) *string) option {
		return option{name: name, arg: "URL", commands: cmdsServe, usage: usage,
			def: func(c Config) string { return *field(&c.HCX) },
			set: func(c *Config, v string) error {
				if err := httpURL(v); err != nil {
					return err
				}
				*field(&c.HCX) = strings.TrimRight(v, "/")
				return nil
			}}
	}
	codeOption := func(name, usage string, field func(*HCXConfig) *string) option {
		return option{name: name, arg: "CODE", commands: cmdsServe, usage: usage,
			def: func(c Config) string { return *field(&c.HCX) },
			set: func(c *Config, v string) error {
				if v = strings.TrimSpace(v); v == "" || len(v) > 128 || strings.ContainsAny(v, " /\\\"") {
					return errors.New("must be a participant code: 1 to 128 characters, no spaces, slashes or quotes")
				}
				*field(&c.HCX) = v
				return nil
			}}
	}
	return []option{
		urlOption("hcx-gateway", "the HCX gateway's base URL payers are reached through (e.g. http://127.0.0.1:8090 for `careflow payer-sim`); empty: no payer is reachable and journeys are refused", func(h *HCXConfig) *string { return &h.Gateway }),
		urlOption("hcx-registry", "the participant registry's base URL (default: the gateway)", func(h *HCXConfig) *string { return &h.Registry }),
		urlOption("hcx-callback-url", "where the gateway reaches careflow's /hcx/v1 routes, as registered (default: http(s)://<listen address>/hcx/v1; set it behind a proxy)", func(h *HCXConfig) *string { return &h.CallbackURL }),
		codeOption("hcx-gateway-code", "the gateway's participant code", func(h *HCXConfig) *string { return &h.GatewayCode }),
		codeOption("hcx-participant-code", "careflow's own participant code, as the registry lists it", func(h *HCXConfig) *string { return &h.ParticipantCode }),
		{name: "hcx-name", arg: "NAME", commands: cmdsServe,
			usage: "careflow's participant name, registered with a development gateway and written as the provider Organization's name on claims",
			def:   func(c Config) string { return c.HCX.Name },
			set: func(c *Config, v string) error {
				if v = strings.TrimSpace(v); v == "" || len(v) > 200 {
					return errors.New("must be 1 to 200 characters")
				}
				c.HCX.Name = v
				return nil
			}},
		{name: "hcx-key", arg: "FILES", commands: cmdsServe,
			usage: "careflow's HCX private key files (PEM), comma-separated, newest first: the newest signs and is the one --hcx-cert certifies, the older ones still open messages sent before a rotation (default: a development key generated into the data folder, 0600)",
			def:   func(c Config) string { return strings.Join(c.HCX.Keys, ",") },
			set: func(c *Config, v string) error {
				var files []string
				for _, f := range strings.Split(v, ",") {
					if f = strings.TrimSpace(f); f != "" {
						files = append(files, f)
					}
				}
				if len(files) == 0 {
					return errors.New("must name at least one file")
				}
				c.HCX.Keys = files
				return nil
			}},
		{name: "hcx-cert", arg: "FILE", commands: cmdsServe,
			usage: "the certificate (PEM) of careflow's newest HCX key, as the registry publishes it; required with --hcx-key",
			def:   func(c Config) string { return c.HCX.Cert },
			set: func(c *Config, v string) error {
				if strings.TrimSpace(v) == "" {
					return errors.New("must not be empty")
				}
				c.HCX.Cert = v
				return nil
			}},
	}
}

// checkHCX validates the settings together once they are all parsed.
func checkHCX(c HCXConfig) error {
	if (len(c.Keys) == 0) != (c.Cert == "") {
		return errors.New("--hcx-key and --hcx-cert are given together or not at all")
	}
	if !c.dev() && c.Gateway == "" {
		return errors.New("--hcx-key and --hcx-cert need --hcx-gateway")
	}
	return nil
}

// openParticipant builds careflow's HCX participant, or nil when no gateway
// is configured.
func openParticipant(cfg Config, db *store.DB, ring *phi.Ring, logger *slog.Logger) (*hcx.Participant, error) {
	h := cfg.HCX
	if h.Gateway == "" {
		return nil, nil
	}
	var (
		id  hcx.Identity
		err error
	)
	if h.dev() {
		id, err = hcx.LoadDevIdentity(cfg.DataDir, h.ParticipantCode, time.Now())
	} else {
		id, err = hcx.LoadIdentity(h.ParticipantCode, h.Keys, h.Cert)
	}
	if err != nil {
		return nil, fmt.Errorf("hcx identity: %w", err)
	}
	hosts, err := hcx.AllowHosts(h.Gateway, h.Registry)
	if err != nil {
		return nil, err
	}
	client, err := outbound.New(outbound.Config{Hosts: hosts})
	if err != nil {
		return nil, err
	}
	return hcx.NewParticipant(hcx.Config{Identity: id, Name: h.Name, GatewayURL: h.Gateway, GatewayCode: h.GatewayCode,
		RegistryURL: h.Registry, Outbound: client, DB: db, Ring: ring, Logger: logger.With("component", "hcx")})
}

// callbackURL is where the gateway reaches careflow: the setting, else the
// bound listen address (a wildcard address is reached on loopback).
func callbackURL(cfg Config, bound string) string {
	if cfg.HCX.CallbackURL != "" {
		return cfg.HCX.CallbackURL
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.Auth.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/hcx/v1"
}

// registerDev registers careflow with a development gateway, trying again
// every few seconds until it answers (the simulator may start after
// careflow) or ctx ends.
func registerDev(ctx context.Context, p *hcx.Participant, callback string, logger *slog.Logger) {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.RegisterDev(ctx, callback)
		if err == nil {
			logger.Info("hcx: registered with the development gateway", "callback", callback)
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			logger.Warn("hcx: cannot register with the development gateway yet; trying again", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// directory is the participant's registry as rcm.Directory, or nil (a nil
// *hcx.Registry in the interface would not compare equal to nil).
func directory(p *hcx.Participant) rcm.Directory {
	if p == nil {
		return nil
	}
	return p.Directory()
}

// hcxHandler is the gateway's way in, handing messages to the journeys; nil
// without a gateway.
func hcxHandler(p *hcx.Participant, inbox *rcm.Service) http.Handler {
	if p == nil || inbox == nil {
		return nil
	}
	return p.Handler(inbox)
}

// noGateway is the payers careflow reaches without --hcx-gateway: none.
// A journey names a payer the directory must know, so every start is
// refused as naming an unknown payer, and nothing is ever sent.
type noGateway struct{}

func (noGateway) Payers(context.Context) ([]payer.Participant, error) { return nil, nil }
func (noGateway) Lookup(context.Context, string) (payer.Participant, bool, error) {
	return payer.Participant{}, false, nil
}
func (noGateway) Send(context.Context, payer.Request) (payer.Ack, error) {
	return payer.Ack{}, &payer.Error{Code: "ERR_NO_GATEWAY", Message: "careflow is not connected to an HCX gateway (--hcx-gateway)"}
}
