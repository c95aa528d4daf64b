package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/careflow/careflow/internal/jobs"
	"github.com/careflow/careflow/internal/store"
)

// queueName is the River queue the engine's jobs live in, apart from any
// other River use in the binary.
const queueName = "engine"

// stepArgs is the River job of one step delivery. A job acts only if the run
// is still at (Epoch, Step, Visit, Attempt); Wake distinguishes the first
// delivery of a wait step (0) from its timer or deadline wake-up (1), which
// would otherwise have the same arguments as the job that scheduled it.
type stepArgs struct {
	RunID   string `json:"run_id"`
	Epoch   int    `json:"epoch"`
	Step    string `json:"step"`
	Visit   int    `json:"visit"`
	Attempt int    `json:"attempt"`
	Wake    int    `json:"wake,omitempty"`
	// Standby names the node whose worker runs this step itself, at once,
	// after the transaction that inserted the job (see handoff.go); the
	// job is scheduled late and only runs if that worker did not.
	Standby string `json:"standby,omitempty"`
}

func (stepArgs) Kind() string { return "careflow.engine.step" }

// uniqueStates leaves out completed (and the other final states): a job
// with the same arguments may be inserted again once the first is done, but
// never while one is pending or running.
var uniqueStates = []rivertype.JobState{
	rivertype.JobStateAvailable,
	rivertype.JobStatePending,
	rivertype.JobStateRetryable,
	rivertype.JobStateRunning,
	rivertype.JobStateScheduled,
}

func (stepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue: queueName,
		// River's own retries only cover failures of the engine itself (the
		// database was unreachable at commit); step failures are retried by
		// the engine with the step's policy.
		MaxAttempts: 50,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByState: uniqueStates},
	}
}

// jobQueue is the part of the River client the engine uses.
type jobQueue interface {
	insertTx(ctx context.Context, tx store.Tx, args stepArgs, at time.Time) error
	// insertStandbyTx inserts a job scheduled at at and returns its id;
	// inserted is false when an equal job was already there.
	insertStandbyTx(ctx context.Context, tx store.Tx, args stepArgs, at time.Time) (id int64, inserted bool, err error)
	// deleteTx deletes a job that is not running (one that is, or is gone,
	// is left alone).
	deleteTx(ctx context.Context, tx store.Tx, id int64) error
	completeTx(ctx context.Context, tx store.Tx, job *river.Job[stepArgs]) error
}

func insertOpts(at time.Time) *river.InsertOpts {
	if at.IsZero() {
		return nil
	}
	return &river.InsertOpts{ScheduledAt: at}
}

// riverQueue inserts through the process's one River client (internal/jobs)
// and completes step jobs in the step's transaction.
type riverQueue struct{ jobs *jobs.Registry }

func (q riverQueue) insertTx(ctx context.Context, tx store.Tx, args stepArgs, at time.Time) error {
	c := q.jobs.Client()
	if c == nil {
		return errors.New("engine: the River client is not built yet")
	}
	return c.InsertTx(ctx, tx, args, insertOpts(at))
}

func (q riverQueue) insertStandbyTx(ctx context.Context, tx store.Tx, args stepArgs, at time.Time) (int64, bool, error) {
	c := q.jobs.Client()
	if c == nil {
		return 0, false, errors.New("engine: the River client is not built yet")
	}
	res, err := c.InsertTxResult(ctx, tx, args, insertOpts(at))
	if err != nil {
		return 0, false, err
	}
	return res.Job.ID, !res.UniqueSkippedAsDuplicate, nil
}

func (q riverQueue) deleteTx(ctx context.Context, tx store.Tx, id int64) error {
	c := q.jobs.Client()
	if c == nil {
		return errors.New("engine: the River client is not built yet")
	}
	return c.DeleteTx(ctx, tx, id)
}

// completeTx on SQLite leaves completion to River's completer, which runs
// in this same process right after the worker returns: River completes the
// job again there anyway (its completer does not know the job was completed
// in a transaction), and on SQLite, where every statement is prepared anew,
// that second, large UPDATE cost a fifth of a step's time. A crash between
// the step's commit and the completer's re-delivers the job, which finds
// its run moved on and is dropped (the at() guard), so the step still
// commits once. PostgreSQL completes in the step's transaction.
func (q riverQueue) completeTx(ctx context.Context, tx store.Tx, job *river.Job[stepArgs]) error {
	if _, ok := store.SQLTx(tx); ok {
		return nil
	}
	ptx, ok := store.PgxTx(tx)
	if !ok {
		return errors.New("engine: not a PostgreSQL transaction")
	}
	_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, ptx, job)
	return err
}

// riverMigrateLockKey serialises River's migrations across nodes: River's
// migrator reads the applied versions and then applies the rest, so two
// nodes starting together would otherwise both try version 1. A different
// key from internal/store's, so the two locks never wait on each other.
const riverMigrateLockKey int64 = 0x63666c7772697672 // "cflwrivr"

// MigrateRiver applies River's own schema migrations for the database's
// dialect, under the same guarantee as store.Migrate: concurrent callers on
// one database all succeed and each migration is applied once.
//
// On PostgreSQL a session advisory lock on a dedicated connection is held
// while River's migrator runs through the pool, so that each River
// migration keeps its own transaction (some cannot share one). On SQLite the
// whole migration runs inside one write transaction (BEGIN IMMEDIATE takes
// the file's write lock first), which other processes wait for.
func MigrateRiver(ctx context.Context, db *store.DB, logger *slog.Logger) ([]int, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	versions := func(res *rivermigrate.MigrateResult) []int {
		var out []int
		for _, v := range res.Versions {
			out = append(out, v.Version)
		}
		return out
	}
	if db.Dialect() == store.SQLite {
		m, err := rivermigrate.New(riversqlite.New(db.SQLiteWriter()), &rivermigrate.Config{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("river migrations: %w", err)
		}
		var applied []int
		err = db.Tx(ctx, func(tx store.Tx) error {
			stx, _ := store.SQLTx(tx)
			//lint:ignore SA1019 the one-transaction form is what gives SQLite its lock; River's SQLite migrations are plain DDL that SQLite runs transactionally.
			res, err := m.MigrateTx(ctx, stx, rivermigrate.DirectionUp, nil)
			if err != nil {
				return err
			}
			applied = versions(res)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("river migrations: %w", err)
		}
		return applied, nil
	}
	pool := db.Pool()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("river migrations: acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, riverMigrateLockKey); err != nil {
		return nil, fmt.Errorf("river migrations: take advisory lock: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, riverMigrateLockKey); err != nil {
			// A connection that may still hold the lock must not go back to
			// the pool.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("river migrations: %w", err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("river migrations: %w", err)
	}
	return versions(res), nil
}
