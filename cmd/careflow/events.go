package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
)

// startPublisher runs the events publisher (internal/events) until the
// returned stop is called: every node runs one, and the lease in the
// database lets one of them deliver at a time. sinks are registered under
// their names; serve has none yet (webhooks and NATS come with the
// clinical workflows), so events are kept for the publisher's retention
// and then pruned. stop gives the lease up and waits.
func startPublisher(ctx context.Context, db *store.DB, sinks map[string]events.Sink, logger *slog.Logger) (stop func()) {
	p := events.NewPublisher(db, events.Options{Logger: logger})
	for name, s := range sinks {
		p.Register(name, s)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(bg) }()
	return func() { cancel(); wg.Wait() }
}
