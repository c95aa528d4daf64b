package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func openPostgres(ctx context.Context, rawURL string, maxConns int, logger *slog.Logger) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, errors.New("database: the PostgreSQL URL could not be parsed")
	}
	switch {
	case maxConns > 0:
		cfg.MaxConns = int32(maxConns)
	case !strings.Contains(rawURL, "pool_max_conns="):
		// pgx's default is a connection per core. The engine's workers get
		// half the pool (engine.New) and spend much of a step waiting on
		// the database or a payer; the requests and River's loops share
		// the rest. At 8 connections on 2 cores a batch of 4,000 claims
		// ran at 21.6 claims/s, at 16 at 27.3 (BENCHMARKS.md). The cap
		// keeps a few nodes inside PostgreSQL's default 100 connections.
		cfg.MaxConns = int32(min(64, max(16, 4*runtime.GOMAXPROCS(0))))
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "careflow"
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	location := fmt.Sprintf("postgres://%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: connect to %s: %w", location, redactPgErr(err))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database: connect to %s: %w", location, redactPgErr(err))
	}
	return &DB{dialect: Postgres, logger: logger, location: location, pool: pool}, nil
}

// redactPgErr keeps a connection error's meaning but not a DSN it may quote.
func redactPgErr(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return errors.New(ce.Unwrap().Error())
	}
	return err
}

func pgUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
