// Package jobs is the process's one River client (riverqueue/river, on
// SQLite through riversqlite and on PostgreSQL through riverpgxv5): the
// workflow engine's step jobs and, with the events work, event delivery
// run on it, each in a queue of its own.
//
// It is configured once, in serve, in two phases:
//
//  1. NewRegistry; each component registers its workers (river's
//     AddWorkerSafely on Registry.Workers), declares its queue (AddQueue)
//     and the longest a job of it may run (RescueAfter);
//  2. Build makes the client from what was registered; Start starts it
//     once every component is ready to have its jobs worked (the engine
//     first rescues the jobs a killed predecessor left running), and Stop
//     drains it before the components stop.
//
// A component inserts jobs through the Client in its own store.Tx, so a
// job exists exactly when the transaction that asked for it commits.
// Client-wide choices every worker lives with: River's own job timeout is
// off (a worker bounds its jobs itself, or sets river.Worker's Timeout),
// completed jobs are kept a day, and producers fetch when told, not on a
// short timer: every insert of an available job notifies its queue after
// commit (on PostgreSQL through LISTEN/NOTIFY, on SQLite through the
// store's commit watch and the listener of sqlite_listener.go), and the
// fetch poll is only a fallback (fetchFallback). An idle process asks the
// database nothing more often than that.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/careflow/careflow/internal/store"
)

// Registry collects the workers and queues of the process's components
// until Build. It is safe for concurrent use.
type Registry struct {
	mu          sync.Mutex
	workers     *river.Workers
	queues      map[string]river.QueueConfig
	periodic    []*river.PeriodicJob
	rescueAfter time.Duration
	client      *Client
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{workers: river.NewWorkers(), queues: map[string]river.QueueConfig{}}
}

// Workers is River's worker registry; register with river.AddWorkerSafely
// before Build.
func (r *Registry) Workers() *river.Workers { return r.workers }

// AddQueue declares a queue the process works, with at most maxWorkers of
// its jobs at once. A name can be declared once.
func (r *Registry) AddQueue(name string, maxWorkers int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		return errors.New("jobs: queue declared after the client was built")
	}
	if _, dup := r.queues[name]; dup {
		return fmt.Errorf("jobs: queue %s is declared twice", name)
	}
	r.queues[name] = river.QueueConfig{MaxWorkers: maxWorkers}
	return nil
}

// AddPeriodic declares a job River inserts on a schedule. River's elected
// leader alone inserts periodic jobs, so across nodes there is one job per
// tick, worked by whichever node fetches it: a component whose work must
// stay on one node fences it itself (the events publisher's lease).
func (r *Registry) AddPeriodic(job *river.PeriodicJob) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		return errors.New("jobs: periodic job declared after the client was built")
	}
	r.periodic = append(r.periodic, job)
	return nil
}

// RescueAfter says that no job of the caller runs longer than d: River's
// stuck-job rescue, the backstop for a node that died unnoticed, waits
// for the longest d declared (River's default, an hour, when none is).
func (r *Registry) RescueAfter(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rescueAfter = max(r.rescueAfter, d)
}

// Client returns the built client, nil before Build.
func (r *Registry) Client() *Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.client
}

// Config configures the client.
type Config struct {
	DB *store.DB
	// ID names this node in River's attempted_by; the engine's rescue of a
	// dead node's jobs matches it, so it is the engine's node id.
	ID     string
	Logger *slog.Logger
	// FetchPollInterval overrides the fallback fetch poll; 0 keeps
	// fetchFallback.
	FetchPollInterval time.Duration
}

// fetchFallback is how often producers look for jobs nobody told them of:
// inserted by another process on SQLite (the command line), or whose
// notification was lost while a PostgreSQL listener reconnected.
const fetchFallback = 2 * time.Second

// Build makes the one client from what was registered.
func (r *Registry) Build(cfg Config) (*Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		return nil, errors.New("jobs: the client is already built")
	}
	if cfg.DB == nil || cfg.ID == "" {
		return nil, errors.New("jobs: DB and ID are required")
	}
	if len(r.queues) == 0 {
		return nil, errors.New("jobs: no queue was declared")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	poll := cfg.FetchPollInterval
	if poll <= 0 {
		poll = fetchFallback
	}
	queues := make(map[string]river.QueueConfig, len(r.queues))
	for k, v := range r.queues {
		queues[k] = v
	}
	rc := &river.Config{
		ID:                          cfg.ID,
		Logger:                      logger,
		Queues:                      queues,
		Workers:                     r.workers,
		JobTimeout:                  -1,
		RescueStuckJobsAfter:        r.rescueAfter,
		FetchCooldown:               5 * time.Millisecond,
		FetchPollInterval:           poll,
		CompletedJobRetentionPeriod: 24 * time.Hour,
		PeriodicJobs:                slices.Clone(r.periodic),
	}
	c := &Client{}
	var err error
	if cfg.DB.Dialect() == store.SQLite {
		names := slices.Sorted(maps.Keys(queues))
		c.sqlite, err = river.NewClient[*sql.Tx](&sqliteDriver{Driver: riversqlite.New(cfg.DB.SQLiteWriter()), db: cfg.DB, queues: names}, rc)
	} else {
		c.pg, err = river.NewClient(riverpgxv5.New(cfg.DB.Pool()), rc)
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: river client: %w", err)
	}
	r.client = c
	return c, nil
}

// Client is the process's River client, for either driver: River's client
// is generic over the transaction type, careflow's store is not.
type Client struct {
	sqlite *river.Client[*sql.Tx]
	pg     *river.Client[pgx.Tx]
}

// InsertTx inserts a job in tx: it exists when tx commits.
func (c *Client) InsertTx(ctx context.Context, tx store.Tx, args river.JobArgs, opts *river.InsertOpts) error {
	_, err := c.InsertTxResult(ctx, tx, args, opts)
	return err
}

// InsertTxResult is InsertTx returning River's answer: the job's row, and
// whether an equal job (by the args' unique options) was already there and
// no new one was inserted.
func (c *Client) InsertTxResult(ctx context.Context, tx store.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	if c.sqlite != nil {
		stx, ok := store.SQLTx(tx)
		if !ok {
			return nil, errors.New("jobs: not a SQLite transaction")
		}
		return c.sqlite.InsertTx(ctx, stx, args, opts)
	}
	ptx, ok := store.PgxTx(tx)
	if !ok {
		return nil, errors.New("jobs: not a PostgreSQL transaction")
	}
	res, err := c.pg.InsertTx(ctx, ptx, args, opts)
	if err != nil || res.UniqueSkippedAsDuplicate || res.Job.State != rivertype.JobStateAvailable {
		return res, err
	}
	// River sends at most one insert notification per queue per
	// FetchCooldown; this one is sent for every insert (the server sends
	// a payload once per transaction), so that no job waits for the
	// fallback poll.
	_, err = ptx.Exec(ctx, `SELECT pg_notify(current_schema() || '.river_insert', $1)`, `{"queue": "`+res.Job.Queue+`"}`)
	return res, err
}

// DeleteTx deletes a job that is not running, in tx. A job already gone or
// running is left as it is, and that is not an error: the caller deletes a
// job it no longer needs, and a running one finishes on its own.
func (c *Client) DeleteTx(ctx context.Context, tx store.Tx, id int64) error {
	var err error
	if c.sqlite != nil {
		stx, ok := store.SQLTx(tx)
		if !ok {
			return errors.New("jobs: not a SQLite transaction")
		}
		_, err = c.sqlite.JobDeleteTx(ctx, stx, id)
	} else {
		ptx, ok := store.PgxTx(tx)
		if !ok {
			return errors.New("jobs: not a PostgreSQL transaction")
		}
		_, err = c.pg.JobDeleteTx(ctx, ptx, id)
	}
	if errors.Is(err, rivertype.ErrNotFound) || errors.Is(err, rivertype.ErrJobRunning) {
		return nil
	}
	return err
}

// Start starts working every declared queue. River cancels running jobs
// when ctx ends: pass a context that outlives the signal that stops the
// process, and call Stop to drain.
func (c *Client) Start(ctx context.Context) error {
	if c.sqlite != nil {
		return c.sqlite.Start(ctx)
	}
	return c.pg.Start(ctx)
}

// Stop stops fetching and waits for running jobs until ctx ends; then it
// cancels the rest (they run again later: River hands them back).
func (c *Client) Stop(ctx context.Context) error {
	var err error
	if c.sqlite != nil {
		err = c.sqlite.Stop(ctx)
	} else {
		err = c.pg.Stop(ctx)
	}
	if err != nil && ctx.Err() != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if c.sqlite != nil {
			err = errors.Join(err, c.sqlite.StopAndCancel(cctx))
		} else {
			err = errors.Join(err, c.pg.StopAndCancel(cctx))
		}
	}
	return err
}
