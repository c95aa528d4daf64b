package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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

// Options tune a Publisher; zero fields take their defaults.
type Options struct {
	// Node names this publisher as the lease holder; default a random id.
	Node string
	// Interval between passes (default 1s).
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
	// Clock returns the current time; nil means time.Now.
	Clock  func() time.Time
	Logger *slog.Logger
}

// leaseName is the one publisher lease: every node contends for it.
const leaseName = "publisher"

// errLeaseLost stops a pass whose lease another node took over.
var errLeaseLost = errors.New("events: the publisher lease was lost")

type namedSink struct {
	name string
	sink Sink
}

type retryState struct {
	failures int
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
	sinks     []namedSink
	retry     map[string]retryState
	leader    bool
	lastPrune time.Time
}

// NewPublisher returns a publisher over a migrated database.
func NewPublisher(db *store.DB, opts Options) *Publisher {
	if opts.Node == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.Node = hex.EncodeToString(b[:])
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
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
	p.sinks = append(p.sinks, namedSink{name: name, sink: s})
}

// Run publishes every Interval until ctx ends, then gives the lease up so
// another node (or the next start) takes over at once.
func (p *Publisher) Run(ctx context.Context) {
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	defer p.release()
	for {
		if _, err := p.PublishOnce(ctx); err != nil && ctx.Err() == nil {
			p.logger.Warn("events: publish pass failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PublishOnce runs one pass: take or renew the lease, hand each sink what
// it has not had, prune what every sink has had beyond the retention. It
// returns how many events sinks took; 0 without the lease.
func (p *Publisher) PublishOnce(ctx context.Context) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	held, err := p.acquire(ctx)
	if err != nil || !held {
		return 0, err
	}
	total := 0
	for _, s := range p.sinks {
		n, err := p.deliver(ctx, s)
		total += n
		if err != nil {
			return total, err
		}
	}
	if now := p.now(); now.Sub(p.lastPrune) >= time.Minute {
		if err := p.prune(ctx, now); err != nil {
			return total, err
		}
		p.lastPrune = now
	}
	return total, nil
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

// pending reads up to Batch events the sink has not had, in id order.
func (p *Publisher) pending(ctx context.Context, sink string) ([]Event, error) {
	return scan(p.db.Reader().Query(ctx, `SELECT e.id, e.aggregate_type, e.aggregate_id, e.sequence, e.kind, e.payload, e.occurred_at
		FROM events e LEFT JOIN event_sink_positions s
			ON s.sink = $1 AND s.aggregate_type = e.aggregate_type AND s.aggregate_id = e.aggregate_id
		WHERE e.sequence > COALESCE(s.sequence, 0)
		ORDER BY e.id LIMIT $2`, sink, p.opts.Batch))
}

type aggregate struct {
	key    string
	events []Event
	ready  bool
}

// deliver hands one sink its pending events. The whole batch goes in one
// call; if the sink refuses it, each aggregate is handed on its own, so
// one aggregate the sink cannot take backs off alone while the others
// flow. Positions move in one transaction that also checks the lease.
func (p *Publisher) deliver(ctx context.Context, s namedSink) (int, error) {
	evs, err := p.pending(ctx, s.name)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	now := p.now()
	var (
		groups []*aggregate
		byKey  = map[string]*aggregate{}
		batch  []Event
	)
	for _, ev := range evs {
		key := s.name + "\x00" + ev.AggregateType + "\x00" + ev.AggregateID
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
	ready := groups
	if len(ready) == 0 {
		return 0, nil
	}
	delivered := ready
	if err := s.sink.Deliver(ctx, batch); err != nil {
		delivered = nil
		if len(ready) == 1 {
			p.failed(s.name, ready[0], now, err)
		} else {
			for _, g := range ready {
				if err := s.sink.Deliver(ctx, g.events); err != nil {
					p.failed(s.name, g, now, err)
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
			last := g.events[len(g.events)-1]
			if _, err := tx.Exec(rctx, `INSERT INTO event_sink_positions (sink, aggregate_type, aggregate_id, sequence) VALUES ($1, $2, $3, $4)
				ON CONFLICT (sink, aggregate_type, aggregate_id) DO UPDATE SET sequence = excluded.sequence
				WHERE event_sink_positions.sequence < excluded.sequence`,
				s.name, last.AggregateType, last.AggregateID, last.Sequence); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("events: record delivery to sink %s: %w", s.name, err)
	}
	for _, g := range delivered {
		delete(p.retry, g.key)
		n += len(g.events)
	}
	return n, nil
}

// failed backs an aggregate off for a sink: MinBackoff, doubling up to
// MaxBackoff. The log names the sink and the aggregate type, not its id.
func (p *Publisher) failed(sink string, g *aggregate, now time.Time, err error) {
	r := p.retry[g.key]
	r.failures++
	wait := p.opts.MinBackoff
	for i := 1; i < r.failures && wait < p.opts.MaxBackoff; i++ {
		wait *= 2
	}
	r.next = now.Add(min(wait, p.opts.MaxBackoff))
	p.retry[g.key] = r
	p.logger.Warn("events: sink refused events; retrying after backoff", "sink", sink,
		"aggregate_type", g.events[0].AggregateType, "failures", r.failures, "retry_in", wait.String(), "error", err)
}

// prune deletes events older than the retention that every registered
// sink has had (all of them when no sink is registered).
func (p *Publisher) prune(ctx context.Context, now time.Time) error {
	var (
		cond strings.Builder
		args = []any{now.Add(-p.opts.Retention)}
	)
	for _, s := range p.sinks {
		args = append(args, s.name)
		fmt.Fprintf(&cond, ` AND EXISTS (SELECT 1 FROM event_sink_positions s WHERE s.sink = $%d
			AND s.aggregate_type = events.aggregate_type AND s.aggregate_id = events.aggregate_id AND s.sequence >= events.sequence)`, len(args))
	}
	if _, err := p.db.Writer().Exec(ctx, `DELETE FROM events WHERE occurred_at < $1`+cond.String(), args...); err != nil {
		return fmt.Errorf("events: prune: %w", err)
	}
	return nil
}
