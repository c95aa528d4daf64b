package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/jobs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// startEngine brings up the workflow engine on an opened, migrated database
// and the process's PHI key ring (which seals the workflow payloads): it
// applies River's migrations (under a lock, so nodes starting together all
// succeed), registers the built-in definitions (the diagnostics effect step
// may call only cfg.DiagnosticsEffectHosts), and starts this node's workers,
// which first seal any payloads a database from before sealing still holds
// in plain text. The returned stop function stops taking new steps and
// waits for running ones to commit until its context ends, then cancels the
// rest (they run again elsewhere or on the next start, with the same
// idempotency keys).
//
// The engine checks two things against the rest of careflow through
// interfaces it declares: the role a user holds now, when a task is
// reassigned to them (staff: the local accounts), and the patient of each
// record a run's input references (records: the FHIR record's plain
// patient_id column). stepRecs, when not nil, is how a step's Apply writes
// FHIR resources in its own transaction (stepRecords: record.CreateTx under
// the access guard of the step acting for its run, access.WorkflowStep,
// step_records.go); it registers the diagnostics.record definition.
//
// serve calls it after openDatabase, openRecordRing and buildIdentity and
// before it starts listening, and calls stop after the HTTP server has
// drained and before the database is closed.
func startEngine(ctx context.Context, cfg Config, db *store.DB, ring *phi.Ring, staff engine.Staff, records engine.Records, stepRecs engine.StepRecords, more func(*engine.Engine, *engine.Registry) error, jobsReg *jobs.Registry, logger *slog.Logger, reg prometheus.Registerer) (*engine.Engine, func(context.Context) error, error) {
	applied, err := engine.MigrateRiver(ctx, db, logger.With("component", "rivermigrate"))
	if err != nil {
		return nil, nil, fmt.Errorf("engine: %w", err)
	}
	if len(applied) > 0 {
		logger.Info("river migrations applied", "versions", applied)
	}
	defs := engine.NewRegistry()
	if err := engine.RegisterBuiltins(defs, engine.BuiltinOptions{EffectHosts: cfg.DiagnosticsEffectHosts, Records: stepRecs}); err != nil {
		return nil, nil, fmt.Errorf("engine: %w", err)
	}
	if err := clinical.Register(defs, clinical.Deps{}); err != nil {
		return nil, nil, fmt.Errorf("clinical: %w", err)
	}
	// The process's one River client, jobsReg (serve's): event delivery
	// has registered with it, the engine registers its worker and queue,
	// then the client is built and, once the engine has rescued what a
	// killed predecessor left running, started.
	e, err := engine.New(engine.Config{DB: db, Registry: defs, Ring: ring, Staff: staff, Records: records, Jobs: jobsReg,
		Logger: logger.With("component", "engine"), Registerer: reg})
	if err != nil {
		return nil, nil, err
	}
	// Definitions that need the engine itself (the revenue cycle's journeys
	// start and signal runs) register now, before any worker takes a step.
	if more != nil {
		if err := more(e, defs); err != nil {
			return nil, nil, err
		}
	}
	client, err := jobsReg.Build(jobs.Config{DB: db, ID: e.NodeID(), Logger: logger.With("component", "river")})
	if err != nil {
		return nil, nil, err
	}
	if err := e.Start(ctx); err != nil {
		return nil, nil, err
	}
	// River cancels running jobs when its start context ends; serve's
	// context ends at SIGTERM, and stop drains instead.
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		_ = e.Stop(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("engine: start workers: %w", err)
	}
	logger.Info("workflow engine started", "node", e.NodeID(), "definitions", len(defs.List()),
		"diagnostics_effect_hosts", len(cfg.DiagnosticsEffectHosts))
	stop := func(ctx context.Context) error {
		// The client drains first (running steps commit), then the engine
		// stops its housekeeping and removes its node row.
		return errors.Join(client.Stop(ctx), e.Stop(ctx))
	}
	return e, stop, nil
}
