package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// Sink receives published events. Deliver is handed events in id order,
// each aggregate's in sequence order, and returns nil once it has taken
// all of them; an error means none counts as delivered and they are
// handed again later (so a sink may see an event twice: the event id
// tells it). A sink must not hold on to the slice.
type Sink interface {
	Deliver(ctx context.Context, events []Event) error
}

// DeadLetterSink is a Sink that gives up on events it keeps refusing:
// once an aggregate's events have failed Options.DeadLetterAfter times in
// a row, or for Options.DeadLetterAge since the first of those failures,
// the publisher calls DeadLetter with them in the transaction that moves
// the sink's position past them, so the dead letters and the move commit
// together and the aggregate's later events flow again. cause is the last
// refusal (its text never carries PHI: sinks see ids and states only).
type DeadLetterSink interface {
	Sink
	DeadLetter(ctx context.Context, tx store.Tx, events []Event, failures int, cause error) error
}

// NamedSink is a sink under the stable name its positions are kept under.
// After, when positive, is an event id: events with ids up to it count as
// delivered to this sink without being handed (a sink registered at a
// moment is sent what comes after it, not the retained past).
type NamedSink struct {
	Name  string
	Sink  Sink
	After int64
}

// SinkSource names sinks that come and go while the publisher runs (the
// webhooks an admin registers on any node): every pass asks it for the
// current set, so a sink it starts naming is delivered to from that pass
// on, under its own positions, and one it stops naming is left alone.
// Sinks must keep their names stable across passes.
type SinkSource interface {
	Sinks(ctx context.Context) ([]NamedSink, error)
}

// Options tune a Publisher; zero fields take their defaults.
type Options struct {
	// Node names this publisher as the lease holder; default a random id.
	Node string
	// Interval is the longest Run waits between passes when nothing wakes
	// it (default 30s): passes run when a transaction that wrote events
	// commits on any node (WakeTopic) and when a backed-off aggregate is
	// due; the interval covers a lease another node stopped renewing and a
	// wake-up lost while a listener reconnected.
	Interval time.Duration
	// LeaseTTL is how long a lease outlives its last renewal (default
	// 30s): a node that stopped renewing is taken over after it.
	LeaseTTL time.Duration
	// Batch is the most events read for a sink in one pass (default 500).
	Batch int
	// Retention keeps events after every sink has them (default 7 days).
	Retention time.Duration
	// MinBackoff and MaxBackoff bound the wait before an aggregate a sink
	// failed on is handed to it again (defaults 1s and 5m, doubling).
	MinBackoff, MaxBackoff time.Duration
	// DeadLetterAfter and DeadLetterAge bound how long a DeadLetterSink is
	// retried for an aggregate: after that many failures in a row
	// (default 12: about 20 minutes of doubling backoff at the defaults),
	// or that long since the first of them (default 1h), whichever comes
	// first, the events are dead-lettered. The count is this process's:
	// a restart or a lease moving to another node starts it again.
	DeadLetterAfter int
	DeadLetterAge   time.Duration
	// Parallel is how many sinks are delivered to at once in a pass
	// (default 4), so a slow sink does not hold up the others.
	Parallel int
	// Clock returns the current time; nil means time.Now.
	Clock  func() time.Time
	Logger *slog.Logger
}

// leaseName is the one publisher lease: every node contends for it.
const leaseName = "publisher"

// errLeaseLost stops a pass whose lease another node took over.
var errLeaseLost = errors.New("events: the publisher lease was lost")

type retryState struct {
	failures int
	first    time.Time // the first failure of this run of failures
	next     time.Time
}

// Publisher hands stored events to the registered sinks (see doc.go). Its
// passes are PublishOnce; serve runs them as periodic jobs of the shared
// River client (RegisterJobs), and Run is a loop of its own for a process
// without one.
type Publisher struct {
	db     *store.DB
	opts   Options
	now    func() time.Time
	logger *slog.Logger

	mu        sync.Mutex // serialises passes; guards the fields below
	sinks     []NamedSink
	sources   []SinkSource
	leader    bool
	lastPrune time.Time

	rmu   sync.Mutex // guards retry: a pass delivers to sinks in parallel
	retry map[string]retryState
}

// NewPublisher returns a publisher over a migrated database.
func NewPublisher(db *store.DB, opts Options) *Publisher {
	if opts.Node == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.Node = hex.EncodeToString(b[:])
	}
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 30 * time.Second
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Minute, opts.MinBackoff)
	}
	if opts.DeadLetterAfter <= 0 {
		opts.DeadLetterAfter = 12
	}
	if opts.DeadLetterAge <= 0 {
		opts.DeadLetterAge = time.Hour
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	p := &Publisher{db: db, opts: opts, now: opts.Clock, logger: opts.Logger, retry: map[string]retryState{}}
	if p.now == nil {
		p.now = time.Now
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	return p
}

// Register adds a sink under a stable name: its delivery positions are
// kept under that name, so renaming a sink hands it every retained event
// again.
func (p *Publisher) Register(name string, s Sink) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sinks = append(p.sinks, NamedSink{Name: name, Sink: s})
}

// RegisterSource adds a source of sinks the publisher asks on every pass.
func (p *Publisher) RegisterSource(src SinkSource) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sources = append(p.sources, src)
}

// WakeTopic is the wake-up (store.Notify) of a transaction that wrote
// events: every node's Run passes once it commits.
const WakeTopic = "events.written"

// Run publishes until ctx ends, then gives the lease up so another node
// (or the next start) takes over at once. A pass runs at start, when a
// transaction that wrote events commits (WakeTopic), when an aggregate's
// backoff ends, at once again after a pass that delivered (there may be
// more than a batch), and every Interval otherwise. A pass that finds
// nothing to deliver writes nothing, so an idle node only reads, once per
// Interval.
func (p *Publisher) Run(ctx context.Context) {
	sub := p.db.Subscribe(WakeTopic)
	defer sub.Close()
	defer p.release()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.C:
		case <-timer.C:
		}
		n, err := p.PublishOnce(ctx)
		if err != nil && ctx.Err() == nil {
			p.logger.Warn("events: publish pass failed", "error", err)
		}
		wait := p.opts.Interval
		switch {
		case err != nil:
			wait = min(wait, p.opts.MinBackoff)
		case n > 0:
			wait = 0
		}
		if next, ok := p.nextRetry(); ok {
			wait = min(wait, max(0, next.Sub(p.now())))
		}
		timer.Reset(wait) // discards an expiry not received (Go 1.23 timers)
	}
}

// nextRetry is when the earliest backed-off aggregate may be handed again.
func (p *Publisher) nextRetry() (time.Time, bool) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	var next time.Time
	for _, r := range p.retry {
		if next.IsZero() || r.next.Before(next) {
			next = r.next
		}
	}
	return next, !next.IsZero()
}

// PublishOnce runs one pass: take or renew the lease, hand each sink what
// it has not had, prune what every sink has had beyond the retention. It
// returns how many events sinks took; 0 without the lease.
func (p *Publisher) PublishOnce(ctx context.Context) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// The sources are asked each pass: a sink registered on any node is
	// picked up here. A source that cannot answer fails the pass (pruning
	// without it could drop what its sinks have not had).
	sinks := slices.Clone(p.sinks)
	for _, src := range p.sources {
		more, err := src.Sinks(ctx)
		if err != nil {
			return 0, fmt.Errorf("events: list sinks: %w", err)
		}
		sinks = append(sinks, more...)
	}
	p.forgetGone(sinks)
	// Nothing to hand and nothing to prune: the lease is neither taken
	// nor renewed, so an idle pass writes nothing. A holder that stops
	// renewing loses the lease after LeaseTTL, which costs only the next
	// pass a write to take it again.
	if busy, err := p.anyPending(ctx, sinks); err != nil || (!busy && p.now().Sub(p.lastPrune) < time.Hour) {
		return 0, err
	}
	held, err := p.acquire(ctx)
	if err != nil || !held {
		return 0, err
	}
	total, err := p.deliverAll(ctx, sinks)
	if err != nil {
		return total, err
	}
	if now := p.now(); now.Sub(p.lastPrune) >= time.Hour {
		if err := p.prune(ctx, now, sinks); err != nil {
			return total, err
		}
		p.lastPrune = now
	}
	return total, nil
}

// deliverAll hands every sink its pending events, up to Parallel sinks at
// once: each sink's positions are its own rows, so their deliveries do not
// touch each other. It returns the events delivered and the first error.
func (p *Publisher) deliverAll(ctx context.Context, sinks []NamedSink) (int, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		first error
		slots = make(chan struct{}, p.opts.Parallel)
	)
	for _, s := range sinks {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			n, err := p.deliver(ctx, s)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	return total, first
}

// forgetGone drops the backoff state of sinks no longer named (a deleted
// webhook), so it neither grows nor outlives them.
func (p *Publisher) forgetGone(sinks []NamedSink) {
	names := make(map[string]bool, len(sinks))
	for _, s := range sinks {
		names[s.Name] = true
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for key := range p.retry {
		if name, _, _ := strings.Cut(key, "\x00"); !names[name] {
			delete(p.retry, key)
		}
	}
}

// acquire takes the lease if it is free, expired or already ours, and
// renews it.
func (p *Publisher) acquire(ctx context.Context) (bool, error) {
	now := p.now()
	n, err := p.db.Writer().Exec(ctx, `INSERT INTO event_leases (name, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE event_leases.holder = excluded.holder OR event_leases.expires_at < $4`,
		leaseName, p.opts.Node, now.Add(p.opts.LeaseTTL), now)
	if err != nil {
		return false, fmt.Errorf("events: take the publisher lease: %w", err)
	}
	held := n == 1
	if held != p.leader {
		p.leader = held
		p.logger.Info("events: publisher lease", "node", p.opts.Node, "held", held)
	}
	return held, nil
}

// release gives the lease up if this node holds it.
func (p *Publisher) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.db.Writer().Exec(ctx, `DELETE FROM event_leases WHERE name = $1 AND holder = $2`, leaseName, p.opts.Node); err != nil {
		p.logger.Warn("events: give up the publisher lease", "error", err)
	}
	p.leader = false
}

// anyPending reports whether some sink has an event it has not had.
func (p *Publisher) anyPending(ctx context.Context, sinks []NamedSink) (bool, error) {
	for _, s := range sinks {
		var one int
		err := p.db.Reader().QueryRow(ctx, `SELECT 1 FROM events e LEFT JOIN event_sink_positions s
			ON s.sink = $1 AND s.aggregate_type = e.aggregate_type AND s.aggregate_id = e.aggregate_id
			WHERE e.sequence > COALESCE(s.sequence, 0) AND e.id > $2 LIMIT 1`, s.Name, max(s.After, 0)).Scan(&one)
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, store.ErrNoRows):
			return false, err
		}
	}
	return false, nil
}

// pending reads up to Batch events the sink has not had, in id order.
func (p *Publisher) pending(ctx context.Context, s NamedSink) ([]Event, error) {
	return scan(p.db.Reader().Query(ctx, `SELECT e.id, e.aggregate_type, e.aggregate_id, e.sequence, e.kind, e.payload, e.occurred_at
		FROM events e LEFT JOIN event_sink_positions s
			ON s.sink = $1 AND s.aggregate_type = e.aggregate_type AND s.aggregate_id = e.aggregate_id
		WHERE e.sequence > COALESCE(s.sequence, 0) AND e.id > $3
		ORDER BY e.id LIMIT $2`, s.Name, p.opts.Batch, max(s.After, 0)))
}

type aggregate struct {
	key    string
	events []Event
	ready  bool
	// cause is set on a group given up on (dead-lettered), with failures.
	cause    error
	failures int
}

// deliver hands one sink its pending events. The whole batch goes in one
// call; if the sink refuses it, each aggregate is handed on its own, so
// one aggregate the sink cannot take backs off alone while the others
// flow. Positions move in one transaction that also checks the lease; an
// aggregate a DeadLetterSink has refused too long is dead-lettered in it.
func (p *Publisher) deliver(ctx context.Context, s NamedSink) (int, error) {
	evs, err := p.pending(ctx, s)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	now := p.now()
	var (
		groups []*aggregate
		byKey  = map[string]*aggregate{}
		batch  []Event
	)
	p.rmu.Lock()
	for _, ev := range evs {
		key := s.Name + "\x00" + ev.AggregateType + "\x00" + ev.AggregateID
		g := byKey[key]
		if g == nil {
			g = &aggregate{key: key}
			if r, ok := p.retry[key]; !ok || !now.Before(r.next) {
				g.ready = true
				groups = append(groups, g)
			}
			byKey[key] = g
		}
		if !g.ready {
			continue
		}
		if last := len(g.events); last > 0 && g.events[last-1].Sequence+1 != ev.Sequence {
			// Sequences are gapless and visible in order (doc.go); a gap
			// would mean the rest of this aggregate waits for a later pass.
			g.ready = false
			continue
		}
		g.events = append(g.events, ev)
		batch = append(batch, ev)
	}
	p.rmu.Unlock()
	ready := groups
	if len(ready) == 0 {
		return 0, nil
	}
	delivered := ready
	if err := s.Sink.Deliver(ctx, batch); err != nil {
		delivered = nil
		if len(ready) == 1 {
			if p.failed(s, ready[0], now, err) {
				delivered = ready
			}
		} else {
			for _, g := range ready {
				if err := s.Sink.Deliver(ctx, g.events); err != nil && !p.failed(s, g, now, err) {
					continue
				}
				delivered = append(delivered, g)
			}
		}
	}
	if len(delivered) == 0 {
		return 0, nil
	}
	// The sink has the events: recording that is what keeps the next pass
	// from handing them again, so a pass stopped now (its context ended)
	// still records it, bounded by a timeout of its own.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n := 0
	err = p.db.Tx(rctx, func(tx store.Tx) error {
		held, err := tx.Exec(rctx, `UPDATE event_leases SET expires_at = $1 WHERE name = $2 AND holder = $3 AND expires_at >= $4`,
			p.now().Add(p.opts.LeaseTTL), leaseName, p.opts.Node, p.now())
		if err != nil {
			return err
		}
		if held != 1 {
			return errLeaseLost
		}
		for _, g := range delivered {
			if g.cause != nil {
				if err := s.Sink.(DeadLetterSink).DeadLetter(rctx, tx, g.events, g.failures, g.cause); err != nil {
					return err
				}
			}
			last := g.events[len(g.events)-1]
			if _, err := tx.Exec(rctx, `INSERT INTO event_sink_positions (sink, aggregate_type, aggregate_id, sequence) VALUES ($1, $2, $3, $4)
				ON CONFLICT (sink, aggregate_type, aggregate_id) DO UPDATE SET sequence = excluded.sequence
				WHERE event_sink_positions.sequence < excluded.sequence`,
				s.Name, last.AggregateType, last.AggregateID, last.Sequence); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("events: record delivery to sink %s: %w", s.Name, err)
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for _, g := range delivered {
		delete(p.retry, g.key)
		if g.cause == nil {
			n += len(g.events)
		}
	}
	return n, nil
}

// failed backs an aggregate off for a sink: MinBackoff, doubling up to
// MaxBackoff. For a DeadLetterSink refused DeadLetterAfter times in a row,
// or for DeadLetterAge since the first refusal, it marks the group to be
// dead-lettered instead and reports true. The log names the sink and the
// aggregate type, not its id.
func (p *Publisher) failed(s NamedSink, g *aggregate, now time.Time, err error) (deadLetter bool) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	r := p.retry[g.key]
	r.failures++
	if r.failures == 1 {
		r.first = now
	}
	if _, ok := s.Sink.(DeadLetterSink); ok && (r.failures >= p.opts.DeadLetterAfter || now.Sub(r.first) >= p.opts.DeadLetterAge) {
		g.cause, g.failures = err, r.failures
		p.logger.Warn("events: sink refused events too often; dead-lettering them", "sink", s.Name,
			"aggregate_type", g.events[0].AggregateType, "events", len(g.events), "failures", r.failures, "error", err)
		return true
	}
	wait := p.opts.MinBackoff
	for i := 1; i < r.failures && wait < p.opts.MaxBackoff; i++ {
		wait *= 2
	}
	r.next = now.Add(min(wait, p.opts.MaxBackoff))
	p.retry[g.key] = r
	p.logger.Warn("events: sink refused events; retrying after backoff", "sink", s.Name,
		"aggregate_type", g.events[0].AggregateType, "failures", r.failures, "retry_in", wait.String(), "error", err)
	return false
}

// prune deletes events older than the retention that every current sink
// has had (all of them when there is no sink): a sink has had an event
// when its position is at or past it, or the event is at or before the
// sink's After.
func (p *Publisher) prune(ctx context.Context, now time.Time, sinks []NamedSink) error {
	var (
		cond strings.Builder
		args = []any{now.Add(-p.opts.Retention)}
	)
	for _, s := range sinks {
		args = append(args, s.Name, max(s.After, 0))
		fmt.Fprintf(&cond, ` AND (events.id <= $%d OR EXISTS (SELECT 1 FROM event_sink_positions s WHERE s.sink = $%d
			AND s.aggregate_type = events.aggregate_type AND s.aggregate_id = events.aggregate_id AND s.sequence >= events.sequence))`, len(args), len(args)-1)
	}
	if _, err := p.db.Writer().Exec(ctx, `DELETE FROM events WHERE occurred_at < $1`+cond.String(), args...); err != nil {
		return fmt.Errorf("events: prune: %w", err)
	}
	return nil
}
