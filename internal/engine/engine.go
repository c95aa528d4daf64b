package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/careflow/careflow/internal/store"
)

// Config configures an Engine.
type Config struct {
	DB       *store.DB
	Registry *Registry
	// Logger receives PHI-free operational logs; nil discards.
	Logger *slog.Logger
	// Registerer receives the engine's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Clock is the engine's time source for its own records and decisions
	// (wait deadlines, escalation, "stuck" queries); nil is time.Now. River
	// schedules jobs on the wall clock.
	Clock func() time.Time
	// Workers bounds the steps this node runs at once; 0 picks a default
	// (fewer on SQLite, where every commit shares one writer connection).
	Workers int
	// NodeID names this node in step records and in River's attempted_by;
	// empty generates one. It must be unique among live nodes.
	NodeID string
	// HousekeepingInterval is how often the node heartbeats, escalates due
	// tasks and rescues the jobs of dead nodes; 0 means 5s.
	HousekeepingInterval time.Duration
	// DeadNodeAfter is how long a node may miss heartbeats before its
	// running jobs are handed to others; 0 means 20s.
	DeadNodeAfter time.Duration
	// FetchPollInterval overrides River's fallback poll; 0 keeps the default.
	FetchPollInterval time.Duration
	// RandSeed seeds the retry jitter; 0 seeds from the runtime.
	RandSeed uint64
	// TimerPrecision is how often the node looks for due timers and retries;
	// 0 means 50ms. (River's own scheduler runs every 5s.)
	TimerPrecision time.Duration
}

// Engine runs workflow runs. Its methods are safe for concurrent use.
type Engine struct {
	db       *store.DB
	reg      *Registry
	logger   *slog.Logger
	clock    func() time.Time
	nodeID   string
	q        jobQueue
	metrics  *metrics
	interval time.Duration
	deadAge  time.Duration
	tick     time.Duration

	randMu sync.Mutex
	rand   *rand.Rand

	mu        sync.Mutex
	started   bool
	stopHouse context.CancelFunc
	houseDone chan struct{}
	timerDone chan struct{}
}

// New builds an engine. It inserts jobs at once (StartRun works without
// Start); it works jobs only after Start. River's tables must exist
// (MigrateRiver) as well as the engine's (store.Migrate).
func New(cfg Config) (*Engine, error) {
	if cfg.DB == nil || cfg.Registry == nil {
		return nil, errors.New("engine: DB and Registry are required")
	}
	e := &Engine{
		db:       cfg.DB,
		reg:      cfg.Registry,
		logger:   cfg.Logger,
		clock:    cfg.Clock,
		nodeID:   cfg.NodeID,
		interval: cfg.HousekeepingInterval,
		deadAge:  cfg.DeadNodeAfter,
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	if e.clock == nil {
		e.clock = time.Now
	}
	if e.nodeID == "" {
		e.nodeID = "node-" + uuid.NewString()
	}
	if e.interval <= 0 {
		e.interval = 5 * time.Second
	}
	if e.deadAge <= 0 {
		e.deadAge = 20 * time.Second
	}
	e.tick = cfg.TimerPrecision
	if e.tick <= 0 {
		e.tick = 50 * time.Millisecond
	}
	seed := cfg.RandSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	e.rand = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m, err := newMetrics(e, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	e.metrics = m

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely[stepArgs](workers, &stepWorker{e: e}); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	maxWorkers := cfg.Workers
	if maxWorkers <= 0 {
		if cfg.DB.Dialect() == store.SQLite {
			maxWorkers = 16
		} else {
			maxWorkers = max(32, 8*runtime.GOMAXPROCS(0))
		}
	}
	rc := &river.Config{
		ID:      e.nodeID,
		Logger:  e.logger.With("component", "river"),
		Queues:  map[string]river.QueueConfig{queueName: {MaxWorkers: maxWorkers}},
		Workers: workers,
		// The engine completes jobs itself inside the step's transaction and
		// bounds each step's action with the step's timeout; River's timeout
		// only has to leave room for that plus the commit.
		JobTimeout: -1,
		// Backstop for a node that died without being noticed by the
		// heartbeat rescue: no step may still be running by then.
		RescueStuckJobsAfter: cfg.Registry.maxTimeout() + time.Minute,
		FetchCooldown:        5 * time.Millisecond,
		FetchPollInterval:    cfg.FetchPollInterval,
		// Completed step jobs are history we keep in engine tables; River's
		// rows can go after a day.
		CompletedJobRetentionPeriod: 24 * time.Hour,
	}
	switch cfg.DB.Dialect() {
	case store.SQLite:
		c, err := river.NewClient(riversqlite.New(cfg.DB.SQLiteWriter()), rc)
		if err != nil {
			return nil, fmt.Errorf("engine: river client: %w", err)
		}
		e.q = sqliteQueue{c: c}
	default:
		c, err := river.NewClient(riverpgxv5.New(cfg.DB.Pool()), rc)
		if err != nil {
			return nil, fmt.Errorf("engine: river client: %w", err)
		}
		e.q = pgQueue{c: c}
	}
	return e, nil
}

// NodeID names this node.
func (e *Engine) NodeID() string { return e.nodeID }

// Registry returns the engine's definitions.
func (e *Engine) Registry() *Registry { return e.reg }

func (e *Engine) now() time.Time { return e.clock().UTC() }

func (e *Engine) jitterRand() *rand.Rand {
	// rand.Rand is not safe for concurrent use; callers hold randMu.
	return e.rand
}

func (e *Engine) backoff(p RetryPolicy, attempt int) time.Duration {
	e.randMu.Lock()
	defer e.randMu.Unlock()
	return p.Backoff(attempt, e.jitterRand())
}

// Start registers this node, hands back the jobs a crashed predecessor left
// running (on SQLite, where this process is the only worker, at once), and
// starts working steps and housekeeping.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return errors.New("engine: already started")
	}
	if err := e.heartbeat(ctx, true); err != nil {
		return fmt.Errorf("engine: register node: %w", err)
	}
	if e.db.Dialect() == store.SQLite {
		if n, err := e.rescueAllRunning(ctx); err != nil {
			return fmt.Errorf("engine: rescue jobs: %w", err)
		} else if n > 0 {
			e.logger.Info("engine: resumed steps interrupted by the previous process", "jobs", n)
		}
	}
	// River cancels running jobs when its start context ends; the caller's
	// context (often the signal context of serve) must not do that: Stop
	// drains instead.
	if err := e.q.start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("engine: start workers: %w", err)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.stopHouse = cancel
	e.houseDone = make(chan struct{})
	e.timerDone = make(chan struct{})
	go e.housekeeping(hctx, e.houseDone)
	go e.promoteLoop(hctx, e.timerDone)
	e.started = true
	return nil
}

// Stop stops taking new steps and waits for running ones to commit. When
// ctx ends first, running steps are cancelled (their jobs go back to River
// and run again later, with the same idempotency keys).
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		return nil
	}
	e.started = false
	e.stopHouse()
	<-e.houseDone
	<-e.timerDone
	err := e.q.stop(ctx)
	if err != nil && ctx.Err() != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err = errors.Join(err, e.q.stopAndCancel(cctx))
	}
	// A clean stop removes the node row so that nobody waits DeadNodeAfter
	// for it; its jobs are all finished or handed back.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, derr := e.db.Writer().Exec(dctx, `DELETE FROM engine_nodes WHERE id = $1`, e.nodeID); derr != nil {
		err = errors.Join(err, derr)
	}
	return err
}

func (e *Engine) housekeeping(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(e.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.heartbeat(ctx, false); err != nil && ctx.Err() == nil {
			e.logger.Warn("engine: heartbeat failed", "err", err)
		}
		if _, err := e.EscalateDueTasks(ctx); err != nil && ctx.Err() == nil {
			e.logger.Warn("engine: task escalation failed", "err", err)
		}
		if n, err := e.rescueDeadNodes(ctx); err != nil && ctx.Err() == nil {
			e.logger.Warn("engine: rescue of dead nodes' steps failed", "err", err)
		} else if n > 0 {
			e.logger.Info("engine: resumed steps of a dead node", "jobs", n)
		}
	}
}

func (e *Engine) heartbeat(ctx context.Context, first bool) error {
	now := e.now()
	if first {
		_, err := e.db.Writer().Exec(ctx, `INSERT INTO engine_nodes (id, started_at, seen_at) VALUES ($1, $2, $3)`, e.nodeID, now, now)
		return err
	}
	n, err := e.db.Writer().Exec(ctx, `UPDATE engine_nodes SET seen_at = $1 WHERE id = $2`, now, e.nodeID)
	if err == nil && n == 0 {
		// Another node took us for dead (a long pause); come back.
		_, err = e.db.Writer().Exec(ctx, `INSERT INTO engine_nodes (id, started_at, seen_at) VALUES ($1, $2, $3)`, e.nodeID, now, now)
	}
	return err
}

// rescueAllRunning makes every running step job available again. Only
// sound where this process is the only worker (SQLite): the jobs can only be
// leftovers of a process that died.
func (e *Engine) rescueAllRunning(ctx context.Context) (int64, error) {
	return e.db.Writer().Exec(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running' AND queue = $1`, queueName)
}

// rescueDeadNodes hands the running jobs of nodes that stopped heartbeating
// back to River and forgets those nodes. River's own stuck-job rescue would
// do it too, but only after the longest step timeout; a killed node's
// half-done steps should resume within seconds.
func (e *Engine) rescueDeadNodes(ctx context.Context) (int64, error) {
	cutoff := e.now().Add(-e.deadAge)
	lastAttempter := `json_extract(attempted_by, '$[#-1]')`
	if e.db.Dialect() == store.Postgres {
		lastAttempter = `attempted_by[array_length(attempted_by, 1)]`
	}
	var total int64
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		n, err := tx.Exec(ctx, `UPDATE river_job SET state = 'available'
			WHERE state = 'running' AND queue = $1
			AND `+lastAttempter+` IN (SELECT id FROM engine_nodes WHERE seen_at < $2 AND id <> $3)`,
			queueName, cutoff, e.nodeID)
		if err != nil {
			return err
		}
		total = n
		_, err = tx.Exec(ctx, `DELETE FROM engine_nodes WHERE seen_at < $1 AND id <> $2`, cutoff, e.nodeID)
		return err
	})
	return total, err
}

// promoteLoop makes due scheduled step jobs (timers, retry backoffs)
// available as soon as they are due. River's scheduler does the same on its
// leader every 5 seconds, too coarse for a 300ms backoff or a timer someone
// waits on; this is a cheap indexed read most of the time, and a write only
// when something is due.
func (e *Engine) promoteLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(e.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := e.promoteDue(ctx); err != nil && ctx.Err() == nil {
			e.logger.Warn("engine: promoting due jobs failed", "err", err)
		}
	}
}

// promoteDue moves due scheduled jobs of the engine's queue to available and
// tells the producers (through River's insert notification, on both
// drivers) so that they fetch at once.
func (e *Engine) promoteDue(ctx context.Context) (int64, error) {
	dbNow := "now()"
	if e.db.Dialect() == store.SQLite {
		// River's SQLite driver writes scheduled_at in its own text format
		// and compares it with datetime('now', 'subsec'); do the same.
		dbNow = "datetime('now', 'subsec')"
	}
	var due int
	err := e.db.Reader().QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM river_job WHERE state = 'scheduled' AND queue = $1
		AND scheduled_at <= `+dbNow+` LIMIT 1) AS due`, queueName).Scan(&due)
	if err != nil || due == 0 {
		return 0, err
	}
	var n int64
	err = e.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.Exec(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'scheduled' AND queue = $1
			AND scheduled_at <= `+dbNow, queueName)
		if err != nil || n == 0 {
			return err
		}
		payload := `{"queue": "` + queueName + `"}`
		if e.db.Dialect() == store.SQLite {
			_, err = tx.Exec(ctx, `INSERT INTO river_notification (payload, topic) VALUES ($1, 'river_insert')`, payload)
		} else {
			_, err = tx.Exec(ctx, `SELECT pg_notify(current_schema() || '.river_insert', $1)`, payload)
		}
		return err
	})
	return n, err
}
