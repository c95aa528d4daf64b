package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/careflow/careflow/internal/jobs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Config configures an Engine.
type Config struct {
	DB       *store.DB
	Registry *Registry
	// Ring seals the workflow payloads (run input, step outputs, signal
	// payloads, task decisions and results) on the way into the database
	// and opens them on the way out; see payload.go.
	Ring *phi.Ring
	// Staff looks up the role of a user a task is reassigned to; nil
	// refuses reassignments to a user (see ReassignTask).
	Staff Staff
	// Records reads the patient of a record a run's input references; nil
	// refuses starts of definitions that declare RecordInputs.
	Records Records
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
	// HousekeepingInterval is how often the node checks its registration,
	// escalates due tasks and rescues the jobs of dead nodes (reads, unless
	// there is something to do); 0 means 2s.
	HousekeepingInterval time.Duration
	// DeadNodeAfter is, on SQLite, how old another node's row (a previous
	// process's) is before it is removed; 0 means 20s. PostgreSQL finds
	// dead nodes by their liveness locks.
	DeadNodeAfter time.Duration
	// FetchPollInterval overrides River's fallback poll of the engine's own
	// client; 0 keeps the default (see internal/jobs). Unused with Jobs.
	FetchPollInterval time.Duration
	// Jobs, when set, is the process's River client registry (serve's):
	// New registers the step worker and the engine's queue there, and the
	// owner builds, starts and stops the client (Start then Stop the engine
	// around it: the engine's Start rescues jobs before the client works
	// any, and the client drains before the engine's Stop). Its client's ID
	// must be NodeID. Nil gives the engine a client of its own, which Start
	// and Stop run.
	Jobs *jobs.Registry
	// RandSeed seeds the retry jitter; 0 seeds from the runtime.
	RandSeed uint64
	// TimerFallback is the longest a node goes without looking for due
	// timers and retries when nothing told it of one (another node's, if
	// that node died); 0 means 10s. Its own are promoted on time.
	TimerFallback time.Duration
}

// Engine runs workflow runs. Its methods are safe for concurrent use.
type Engine struct {
	db       *store.DB
	reg      *Registry
	ring     *phi.Ring
	staff    Staff
	records  Records
	logger   *slog.Logger
	clock    func() time.Time
	nodeID   string
	q        jobQueue
	jobs     *jobs.Registry
	ownsJobs bool
	metrics  *metrics
	interval time.Duration
	deadAge  time.Duration

	// timerFallback bounds promoteLoop's sleep; nextLook is when it means
	// to look next and timerKick wakes it (see promoteLoop).
	timerFallback time.Duration
	nextLook      atomic.Int64
	timerKick     chan struct{}

	randMu sync.Mutex
	rand   *rand.Rand

	// acceptPlain: plain JSON payloads from before sealing are read as they
	// are, until Start has sealed them all (see Engine.open).
	acceptPlain atomic.Bool

	// liveness holds this node's advisory lock on PostgreSQL for as long
	// as the node lives; the server drops it the moment the process dies.
	liveness *pgxpool.Conn

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
	if cfg.DB == nil || cfg.Registry == nil || cfg.Ring == nil {
		return nil, errors.New("engine: DB, Registry and Ring are required")
	}
	e := &Engine{
		db:       cfg.DB,
		reg:      cfg.Registry,
		ring:     cfg.Ring,
		staff:    cfg.Staff,
		records:  cfg.Records,
		logger:   cfg.Logger,
		clock:    cfg.Clock,
		nodeID:   cfg.NodeID,
		interval: cfg.HousekeepingInterval,
		deadAge:  cfg.DeadNodeAfter,
	}
	e.acceptPlain.Store(true)
	e.timerKick = make(chan struct{}, 1)
	e.nextLook.Store(math.MaxInt64) // until the loop has looked
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
		e.interval = 2 * time.Second
	}
	if e.deadAge <= 0 {
		e.deadAge = 20 * time.Second
	}
	e.timerFallback = cfg.TimerFallback
	if e.timerFallback <= 0 {
		e.timerFallback = 10 * time.Second
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

	// The engine's jobs run on the process's River client when the caller
	// shares one (serve, Config.Jobs), else on a client of its own.
	e.jobs, e.ownsJobs = cfg.Jobs, cfg.Jobs == nil
	if e.ownsJobs {
		e.jobs = jobs.NewRegistry()
	}
	if err := river.AddWorkerSafely[stepArgs](e.jobs.Workers(), &stepWorker{e: e}); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	maxWorkers := cfg.Workers
	if maxWorkers <= 0 {
		if cfg.DB.Dialect() == store.SQLite {
			maxWorkers = 16
		} else {
			// A step holds a connection for its transaction and may need
			// another meanwhile (a read outside it, the audit log's
			// append), and the HTTP requests and River's own loops share
			// the pool: workers beyond half the pool starve it, and every
			// request then waits out its deadline (seen with ~20 journeys
			// on an 8-connection pool).
			maxWorkers = min(max(32, 8*runtime.GOMAXPROCS(0)), max(2, int(cfg.DB.Pool().Config().MaxConns)/2))
		}
	}
	if err := e.jobs.AddQueue(queueName, maxWorkers); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	// The engine completes jobs itself inside the step's transaction and
	// bounds each step's action with the step's timeout. River's stuck-job
	// rescue is the backstop for a node that died without being noticed by
	// the heartbeat rescue: no step may still be running by then.
	e.jobs.RescueAfter(cfg.Registry.maxTimeout() + time.Minute)
	if e.ownsJobs {
		if _, err := e.jobs.Build(jobs.Config{DB: cfg.DB, ID: e.nodeID, Logger: e.logger.With("component", "river"),
			FetchPollInterval: cfg.FetchPollInterval}); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	e.q = riverQueue{jobs: e.jobs}
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
	if e.db.Dialect() == store.Postgres {
		// Take the liveness lock before the node row exists, so that no
		// other node can see the row without the lock and take us for dead.
		conn, err := e.db.Pool().Acquire(ctx)
		if err != nil {
			return fmt.Errorf("engine: liveness connection: %w", err)
		}
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, livenessKey(e.nodeID)).Scan(&got); err != nil {
			conn.Release()
			return fmt.Errorf("engine: liveness lock: %w", err)
		}
		if !got {
			conn.Release()
			return fmt.Errorf("engine: node id %s is in use by a live node", e.nodeID)
		}
		e.liveness = conn
	}
	ok := false
	defer func() {
		if !ok && e.liveness != nil {
			_ = e.liveness.Conn().Close(context.WithoutCancel(ctx))
			e.liveness.Release()
			e.liveness = nil
		}
	}()
	// A node restarted under the same id (Config.NodeID) finds its old row
	// and jobs: they are a dead process's, since this one holds the id's
	// liveness lock (PostgreSQL) or is the file's only worker (SQLite).
	if _, err := e.rescueNode(ctx, e.nodeID); err != nil {
		return fmt.Errorf("engine: rescue jobs of a previous node %s: %w", e.nodeID, err)
	}
	if err := e.heartbeat(ctx, true); err != nil {
		return fmt.Errorf("engine: register node: %w", err)
	}
	// Before any step reads a payload: rows from before sealing are sealed
	// in place (a no-op read of an empty table on every later start).
	if n, err := SealLegacyPayloads(ctx, e.db, e.ring); err != nil {
		return err
	} else if n > 0 {
		e.logger.Info("engine: sealed workflow payloads stored in plain text before this version", "values", n)
	}
	e.acceptPlain.Store(false)
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
	if e.ownsJobs {
		if err := e.jobs.Client().Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("engine: start workers: %w", err)
		}
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.stopHouse = cancel
	e.houseDone = make(chan struct{})
	e.timerDone = make(chan struct{})
	go e.housekeeping(hctx, e.houseDone)
	go e.promoteLoop(hctx, e.timerDone)
	e.started = true
	ok = true
	return nil
}

// Stop stops taking new steps and waits for running ones to commit. When
// ctx ends first, running steps are cancelled (their jobs go back to River
// and run again later, with the same idempotency keys). With a shared
// River client (Config.Jobs) the owner stops the client first, which does
// that, and Stop only ends the engine's own loops and node row.
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
	var err error
	if e.ownsJobs {
		err = e.jobs.Client().Stop(ctx)
	}
	// A clean stop removes the node row so that nobody waits DeadNodeAfter
	// for it; its jobs are all finished or handed back.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, derr := e.db.Writer().Exec(dctx, `DELETE FROM engine_nodes WHERE id = $1`, e.nodeID); derr != nil {
		err = errors.Join(err, derr)
	}
	if e.liveness != nil {
		// Closing the session drops the lock; the connection is not reused.
		_ = e.liveness.Conn().Close(dctx)
		e.liveness.Release()
		e.liveness = nil
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

// heartbeat registers the node (first) or checks that its row is still
// there. A live node's row is not rewritten: liveness is the advisory
// lock on PostgreSQL and being the file's one process on SQLite, so an
// idle node writes nothing. seen_at is when the node registered or came
// back.
func (e *Engine) heartbeat(ctx context.Context, first bool) error {
	now := e.now()
	if !first {
		var one int
		err := e.db.Reader().QueryRow(ctx, `SELECT 1 FROM engine_nodes WHERE id = $1`, e.nodeID).Scan(&one)
		if !errors.Is(err, store.ErrNoRows) {
			return err
		}
		// Another node took us for dead (a long pause); come back.
	}
	_, err := e.db.Writer().Exec(ctx, `INSERT INTO engine_nodes (id, started_at, seen_at) VALUES ($1, $2, $3)`, e.nodeID, now, now)
	return err
}

// rescueAllRunning makes every running step job available again. Only
// sound where this process is the only worker (SQLite): the jobs can only be
// leftovers of a process that died.
func (e *Engine) rescueAllRunning(ctx context.Context) (int64, error) {
	n, err := e.db.Writer().Exec(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running' AND queue = $1`, queueName)
	if err != nil {
		return n, err
	}
	// The steps the previous process meant to run itself at once: their
	// standby jobs are due now rather than when they were scheduled.
	m, err := e.releaseStandby(ctx, e.db.Writer(), "")
	return n + m, err
}

// rescueDeadNodes hands the running jobs of dead nodes back to River and
// forgets those nodes. River's own stuck-job rescue would do it too, but
// only after the longest step timeout; a killed node's half-done steps
// should resume within seconds.
//
// On PostgreSQL a node is dead when its liveness advisory lock can be taken:
// the server releases a session's locks as soon as the session ends, which
// a killed process's does at once. On SQLite one process works the file
// and Start already rescued everything: another node's row is a previous
// process's, removed once it is DeadNodeAfter old.
func (e *Engine) rescueDeadNodes(ctx context.Context) (int64, error) {
	dead, err := e.deadNodes(ctx)
	if err != nil || len(dead) == 0 {
		return 0, err
	}
	var total int64
	for _, node := range dead {
		n, err := e.rescueNode(ctx, node)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// rescueNode makes the running jobs last taken by a dead node available
// again and removes the node's row.
func (e *Engine) rescueNode(ctx context.Context, node string) (int64, error) {
	lastAttempter := `json_extract(attempted_by, '$[#-1]')`
	if e.db.Dialect() == store.Postgres {
		lastAttempter = `attempted_by[array_length(attempted_by, 1)]`
	}
	var n int64
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.Exec(ctx, `UPDATE river_job SET state = 'available'
			WHERE state = 'running' AND queue = $1 AND `+lastAttempter+` = $2`, queueName, node)
		if err != nil {
			return err
		}
		m, err := e.releaseStandby(ctx, tx, node)
		n += m
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM engine_nodes WHERE id = $1`, node)
		return err
	})
	return n, err
}

func (e *Engine) deadNodes(ctx context.Context) ([]string, error) {
	var q string
	var args []any
	if e.db.Dialect() == store.Postgres {
		q, args = `SELECT id FROM engine_nodes WHERE id <> $1`, []any{e.nodeID}
	} else {
		q, args = `SELECT id FROM engine_nodes WHERE id <> $1 AND seen_at < $2`, []any{e.nodeID, e.now().Add(-e.deadAge)}
	}
	rows, err := e.db.Reader().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var nodes []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		nodes = append(nodes, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || e.db.Dialect() != store.Postgres || len(nodes) == 0 {
		return nodes, err
	}
	conn, err := e.db.Pool().Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	var dead []string
	for _, id := range nodes {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, livenessKey(id)).Scan(&got); err != nil {
			return nil, err
		}
		if got {
			dead = append(dead, id)
			if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, livenessKey(id)); err != nil {
				_ = conn.Conn().Close(ctx)
				return nil, err
			}
		}
	}
	return dead, nil
}

// livenessKey is a node's advisory lock key: a hash of its id in a range
// apart from the migration locks.
func livenessKey(nodeID string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("careflow-engine-node:" + nodeID))
	return int64(h.Sum64() & 0x3fffffffffffffff)
}

// promoteLoop makes due scheduled step jobs (timers, retry backoffs,
// released standby jobs) available as soon as they are due. River's
// scheduler does the same on its leader every 5 seconds, too coarse for a
// 300ms backoff or a timer someone waits on. The loop sleeps until the
// earliest scheduled job of the queue is due, and is kicked when this node
// commits a job scheduled earlier than that (planTimer) or makes one due
// (dueNow); every node promotes every due job of the queue, so a node that
// dies leaves its timers to the others, which find them within
// timerFallback at the latest. An idle node reads the database once per
// timerFallback and writes nothing.
//
// nextLook is when the loop will look next (unix nanoseconds); while it
// reads the database it is "never", so that a job committed meanwhile, which
// the read may have missed, kicks it. The decision is taken after the
// commit (store.AfterCommit): before it, the loop could read the database,
// miss the job and plan past it in between.
func (e *Engine) promoteLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	planned := false // the timer is set for a job's due time
	for {
		e.nextLook.Store(math.MaxInt64)
		wait, err := e.promoteDue(ctx, planned)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.logger.Warn("engine: promoting due jobs failed", "err", err)
			wait = time.Second
		}
		planned = wait < e.timerFallback
		wait = min(wait, e.timerFallback)
		e.nextLook.Store(time.Now().Add(wait).UnixNano())
		timer.Reset(wait) // discards an expiry not received (Go 1.23 timers)
		select {
		case <-ctx.Done():
			return
		case <-e.timerKick:
			planned = false
		case <-timer.C:
		}
	}
}

// kickTimers makes promoteLoop look again at once.
func (e *Engine) kickTimers() {
	select {
	case e.timerKick <- struct{}{}:
	default: // a kick is pending
	}
}

// planTimer has this node's promoteLoop look again, once tx has committed,
// if the job tx schedules at at is due before the loop means to look.
func (e *Engine) planTimer(tx store.Tx, at time.Time) error {
	return store.AfterCommit(tx, func() {
		if at.UnixNano() < e.nextLook.Load() {
			e.kickTimers()
		}
	})
}

// promoteDue moves due scheduled jobs of the engine's queue to available,
// tells the producers (through River's insert notification, on both
// drivers) so that they fetch at once, and returns how long until the next
// job is due (timerFallback when there is none).
//
// River's own scheduler, on its leader every 5 seconds, makes the jobs due
// within the next 5 seconds available ahead of their time, and tells no one
// when they fall due (River's producers would find them at their next fetch
// poll). Those count here too: the loop sleeps until the first falls due
// and calls again with due set, and the producers are told then.
func (e *Engine) promoteDue(ctx context.Context, due bool) (time.Duration, error) {
	d := e.db.Dialect()
	for {
		if due {
			if err := e.db.Tx(ctx, func(tx store.Tx) error {
				if _, err := tx.Exec(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'scheduled' AND queue = $1
					AND scheduled_at <= `+riverNow(d), queueName); err != nil {
					return err
				}
				payload := `{"queue": "` + queueName + `"}`
				var err error
				if d == store.SQLite {
					_, err = tx.Exec(ctx, `INSERT INTO river_notification (payload, topic) VALUES ($1, 'river_insert')`, payload)
				} else {
					_, err = tx.Exec(ctx, `SELECT pg_notify(current_schema() || '.river_insert', $1)`, payload)
				}
				return err
			}); err != nil {
				return 0, err
			}
		}
		var ms *float64
		err := e.db.Reader().QueryRow(ctx, `SELECT `+untilSQL(d, "min(at)")+` FROM (
			SELECT min(scheduled_at) AS at FROM river_job WHERE state = 'scheduled' AND queue = $1
			UNION ALL
			SELECT min(scheduled_at) FROM river_job WHERE state = 'available' AND queue = $1 AND scheduled_at > `+riverNow(d)+`
		) AS next`, queueName).Scan(&ms)
		switch {
		case err != nil:
			return 0, err
		case ms == nil:
			return e.timerFallback, nil
		case *ms > 0:
			// A millisecond late rather than early: the database's clock
			// must have passed the time when the producers fetch.
			return time.Duration(*ms*float64(time.Millisecond)) + time.Millisecond, nil
		}
		due = true
	}
}

// untilSQL is how many milliseconds, by the database's clock, until the
// time expr (NULL when expr is).
func untilSQL(d store.Dialect, expr string) string {
	if d == store.SQLite {
		return `(julianday(` + expr + `) - julianday('now', 'subsec')) * 86400000.0`
	}
	return `extract(epoch FROM ` + expr + ` - now()) * 1000`
}

// riverNow is the database's clock as River compares scheduled_at with it:
// River's SQLite driver writes scheduled_at in its own text format and
// compares it with datetime('now', 'subsec').
func riverNow(d store.Dialect) string {
	if d == store.SQLite {
		return "datetime('now', 'subsec')"
	}
	return "now()"
}

// Ready reports whether this node is working steps, for /readyz.
func (e *Engine) Ready() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		return errors.New("workflow engine is not running")
	}
	return nil
}
