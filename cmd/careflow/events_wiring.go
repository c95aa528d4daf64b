package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/events/natssink"
	"github.com/careflow/careflow/internal/events/webhook"
	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// EventsConfig is where serve sends the domain events (internal/events):
// the webhooks admins register, to the hosts the operator allows, and a
// NATS JetStream stream.
type EventsConfig struct {
	// WebhookAllow are the only hosts (host or host:port) a webhook may be
	// registered to: the operator's allow-list, which the outbound client
	// enforces on every call. Empty: no webhook can be registered.
	WebhookAllow []string
	// NATS is the NATS server's URL; empty: no stream.
	NATS string
	// NATSStream and NATSSubjectPrefix name the JetStream stream and the
	// prefix of its subjects.
	NATSStream        string
	NATSSubjectPrefix string
}

func defaultEventsConfig() EventsConfig {
	return EventsConfig{NATSStream: natssink.DefaultStream, NATSSubjectPrefix: natssink.DefaultSubjectPrefix}
}

// eventsOptions are serve's event-sink settings.
func eventsOptions() []option {
	return []option{
		{name: "webhook-allow", arg: "HOSTS", commands: cmdsServe,
			usage: "comma-separated host:port (or host, for port 443) list that webhooks may be registered to (/api/v1/webhooks); https, or plain http to a loopback or private address; none: webhooks cannot be registered",
			def:   func(c Config) string { return strings.Join(c.Events.WebhookAllow, ",") },
			set: func(c *Config, v string) error {
				hosts, err := hostList(v)
				if err != nil {
					return err
				}
				c.Events.WebhookAllow = hosts
				return nil
			}},
		{name: "nats", arg: "URL", commands: cmdsServe,
			usage: "a NATS server (nats://host:4222) whose JetStream stream receives every event; empty: none",
			def:   func(c Config) string { return c.Events.NATS },
			set: func(c *Config, v string) error {
				if v != "" && !strings.HasPrefix(v, "nats://") && !strings.HasPrefix(v, "tls://") {
					return errors.New("must be a nats:// or tls:// URL")
				}
				c.Events.NATS = v
				return nil
			}},
		{name: "nats-stream", arg: "NAME", commands: cmdsServe,
			usage: "the JetStream stream events go to, created with the prefix's subjects if missing",
			def:   func(c Config) string { return c.Events.NATSStream },
			set: func(c *Config, v string) error {
				if !natssink.ValidName(v) {
					return errors.New("must be a stream name: letters, digits, - and _")
				}
				c.Events.NATSStream = v
				return nil
			}},
		{name: "nats-subject-prefix", arg: "PREFIX", commands: cmdsServe,
			usage: "the subjects' prefix: an event is published on <prefix>.<aggregate_type>.<kind>",
			def:   func(c Config) string { return c.Events.NATSSubjectPrefix },
			set: func(c *Config, v string) error {
				if !natssink.ValidPrefix(v) {
					return errors.New("must be dot-separated tokens without spaces or wildcards")
				}
				c.Events.NATSSubjectPrefix = v
				return nil
			}},
	}
}

// hostList parses an outbound allow-list: comma-separated host or
// host:port entries, each checked by outbound.ValidHost; empty entries are
// skipped.
func hostList(v string) ([]string, error) {
	var hosts []string
	for _, h := range strings.Split(v, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if err := outbound.ValidHost(h); err != nil {
			return nil, fmt.Errorf("%q: %v", h, err)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// eventSinks are serve's sinks: the webhooks (always served, registrable
// once --webhook-allow names a host) and, with --nats, the JetStream
// stream, opened now so that a wrong URL or stream stops serve at start.
type eventSinks struct {
	webhooks *webhook.Service
	nats     *natssink.Sink
}

func openEventSinks(ctx context.Context, cfg Config, db *store.DB, ring *phi.Ring, logger *slog.Logger) (*eventSinks, error) {
	client, err := outbound.New(outbound.Config{Hosts: cfg.Events.WebhookAllow})
	if err != nil {
		return nil, err
	}
	s := &eventSinks{webhooks: webhook.New(db, ring, client, webhook.Options{})}
	if cfg.Events.NATS != "" {
		if s.nats, err = natssink.Open(ctx, natssink.Config{URL: cfg.Events.NATS, Stream: cfg.Events.NATSStream,
			SubjectPrefix: cfg.Events.NATSSubjectPrefix}); err != nil {
			return nil, err
		}
		logger.Info("events: publishing to NATS JetStream", "stream", cfg.Events.NATSStream, "subjects", s.nats.Subjects())
	}
	return s, nil
}

// register adds the sinks to the publisher: NATS under the name "nats"
// (its positions), the webhooks as a source asked every pass.
func (s *eventSinks) register(p *events.Publisher) {
	if s.nats != nil {
		p.Register("nats", s.nats)
	}
	p.RegisterSource(s.webhooks)
}

// close disconnects from NATS, after the publisher has stopped.
func (s *eventSinks) close() {
	if s.nats != nil {
		s.nats.Close()
	}
}
