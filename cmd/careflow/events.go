package main

import (
	"log/slog"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/jobs"
	"github.com/careflow/careflow/internal/store"
)

// newPublisher makes the events publisher (internal/events) and registers
// its passes as periodic jobs on the process's River client registry, the
// one the engine registers with too: every node works them, and the lease
// in the database lets one node deliver at a time. sinks are registered
// under their names (tests' in-process sinks), then serve's own
// (events_wiring.go: NATS, and the webhooks as a source the lease holder
// asks every pass); events no sink takes are kept for the publisher's
// retention and then pruned. serve calls the publisher's Release after the
// client has stopped.
func newPublisher(db *store.DB, reg *jobs.Registry, sinks map[string]events.Sink, own *eventSinks, logger *slog.Logger) (*events.Publisher, error) {
	p := events.NewPublisher(db, events.Options{Logger: logger})
	for name, s := range sinks {
		p.Register(name, s)
	}
	if own != nil {
		own.register(p)
	}
	if err := p.RegisterJobs(reg); err != nil {
		return nil, err
	}
	return p, nil
}
