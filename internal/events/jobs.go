package events

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/careflow/careflow/internal/jobs"
)

// Queue is the River queue of the publisher's passes.
const Queue = "events"

// PublishArgs is the River job of one publisher pass (PublishOnce). It
// carries nothing: a pass reads what is undelivered from the database.
type PublishArgs struct{}

// Kind implements river.JobArgs.
func (PublishArgs) Kind() string { return "events_publish" }

// InsertOpts implements river.JobArgsWithInsertOpts: a failed pass is not
// retried as a job, since the next tick runs a pass anyway.
func (PublishArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: 1}
}

// publishWorker runs a pass of its node's publisher.
type publishWorker struct {
	river.WorkerDefaults[PublishArgs]
	p *Publisher
}

// Work runs one pass. Its error is logged, not returned: the lease and the
// sink positions, not the job, say what is delivered, and the next tick's
// pass picks up where this one stopped.
func (w *publishWorker) Work(ctx context.Context, _ *river.Job[PublishArgs]) error {
	if _, err := w.p.PublishOnce(ctx); err != nil && ctx.Err() == nil {
		w.p.logger.Warn("events: publish pass failed", "error", err)
	}
	return nil
}

// Timeout bounds a pass by the lease it renews: River's own job timeout
// is off (internal/jobs), and a sink that hangs must not hold the worker.
func (w *publishWorker) Timeout(*river.Job[PublishArgs]) time.Duration { return w.p.opts.LeaseTTL }

// RegisterJobs makes the publisher's passes periodic jobs of the process's
// River client (the one serve builds, shared with the workflow engine)
// instead of a loop of its own: River's elected leader inserts one job
// every Interval, and whichever node works it runs PublishOnce with its own
// publisher. The lease stays the fence: a node that does not hold it (while
// another live node renews it) delivers nothing, so one node delivers at a
// time whichever node River hands the job to, and a dead holder's lease is
// taken over after LeaseTTL. One worker per node, so a node's passes do not
// overlap (PublishOnce serialises them anyway). Call Release once the
// client has stopped, so that another node takes over at once.
func (p *Publisher) RegisterJobs(reg *jobs.Registry) error {
	if err := river.AddWorkerSafely(reg.Workers(), &publishWorker{p: p}); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	if err := reg.AddQueue(Queue, 1); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	// A pass holds the lease for at most LeaseTTL without renewing it.
	reg.RescueAfter(p.opts.LeaseTTL)
	return reg.AddPeriodic(river.NewPeriodicJob(river.PeriodicInterval(p.opts.Interval),
		func() (river.JobArgs, *river.InsertOpts) { return PublishArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true}))
}

// Release gives the lease up if this node holds it: serve calls it after
// its River client stopped, so no pass of this node renews it again.
func (p *Publisher) Release() { p.release() }
