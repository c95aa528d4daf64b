package main

import (
	"context"
	"log/slog"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
)

// startPublisher makes the events publisher (internal/events) and runs it
// until the returned stop is called: every node runs one, woken by the
// commits that write events on any node, and the lease in the database
// lets one node deliver at a time. sinks are registered under their names
// (tests' in-process sinks), then serve's own (events_wiring.go: NATS, and
// the webhooks as a source asked every pass); events no sink takes are
// kept for the publisher's retention and then pruned. stop ends the loop
// and gives the lease up, so another node takes over at once.
func startPublisher(db *store.DB, sinks map[string]events.Sink, own *eventSinks, logger *slog.Logger) (stop func()) {
	p := events.NewPublisher(db, events.Options{Logger: logger})
	for name, s := range sinks {
		p.Register(name, s)
	}
	if own != nil {
		own.register(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
