package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/httpapi"
	"github.com/careflow/careflow/internal/jobs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/terminology"
)

// serveHooks let tests observe and shape a serve run in-process; production
// passes the zero value.
type serveHooks struct {
	// listening receives the bound address once the server accepts.
	listening chan<- string
	// wrap, when set, wraps the root handler.
	wrap func(http.Handler) http.Handler
	// sinks, when set, are registered with the events publisher.
	sinks map[string]events.Sink
	// rcmWaits, when set, replaces how long journeys wait on payers (tests
	// of late and silent payers).
	rcmWaits *rcm.Waits
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, rest, code, ok := configOrExit("serve", args, stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "careflow serve: unexpected argument %q.\n", rest[0])
		return 2
	}
	return serve(ctx, cfg, stderr, serveHooks{})
}

// openDatabase creates the data folder, opens the database and migrates it.
func openDatabase(ctx context.Context, cfg Config, logger *slog.Logger) (*store.DB, error) {
	if err := ensureDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, store.Config{URL: cfg.Database, DataDir: cfg.DataDir, Logger: logger})
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// serve runs until SIGINT or SIGTERM, then stops accepting, lets in-flight
// requests finish (up to the shutdown timeout) and exits 0.
func serve(ctx context.Context, cfg Config, stderr io.Writer, hooks serveHooks) int {
	logger := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	started := time.Now()
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		logger.Error("cannot open the database", "error", err.Error())
		return 1
	}
	defer db.Close()
	instance, err := db.InstanceID(ctx)
	if err != nil {
		logger.Error("cannot read the instance id", "error", err.Error())
		return 1
	}

	fhirRecord, ring, stopKeys, err := openRecordRing(ctx, cfg, db, logger)
	if err != nil {
		logger.Error("cannot open the PHI key ring", "error", err.Error())
		return 1
	}
	defer stopKeys()

	// The access policy: the embedded default unless --access-policy names
	// a file (validated again here; config checked it at parse time).
	policy, err := loadPolicy(cfg)
	if err != nil {
		logger.Error("cannot load the access policy", "error", err.Error())
		return 1
	}

	identity, err := buildIdentity(ctx, cfg, db, policy, logger)
	if err != nil {
		logger.Error("cannot set up authentication", "error", err.Error())
		return 1
	}
	defer identity.close()

	// The audit log: every PHI access and every denial is appended (and
	// durable) before the response leaves. Closed after the HTTP drain and
	// before the database (deferred calls run in reverse order).
	auditLog, err := openAuditLog(ctx, cfg, db, logger)
	if err != nil {
		logger.Error("cannot open the audit log", "error", err.Error())
		return 1
	}
	defer func() {
		if err := auditLog.Close(context.WithoutCancel(ctx)); err != nil {
			logger.Error("closing the audit log", "error", err.Error())
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		db.Collector(),
	)

	// One access policy and its stores for the whole process: the API's
	// decisions and the workflow steps' (the revenue cycle's steps write
	// FHIR records for their runs through it).
	acc := auth.NewAccess(db, policy, nil)
	runRecords := access.RunRecords{Record: fhirRecord, Access: &access.Services{Authorizer: acc.Authorizer, Policy: policy, Audit: auditLog, Logger: logger}}
	var stepRecs engine.StepRecords
	if cfg.DiagnosticsRecordWrites {
		stepRecs = stepRecords{runRecords}
	}
	codes := terminology.NewService(db, terminology.Options{Logger: logger})

	// Payers: careflow as a participant of the HCX gateway, when one is
	// configured (rcm_wiring.go). Without one, journeys are refused.
	participant, err := openParticipant(cfg, db, ring, logger)
	if err != nil {
		logger.Error("cannot set up the payer gateway", "error", err.Error())
		return 1
	}
	fees := rcm.NewFees(db, nil)
	var revenue *rcm.Service
	withRevenue := func(e *engine.Engine, defs *engine.Registry) error {
		rc := rcm.Config{DB: db, Engine: e, Records: runRecords, Terms: codes, Fees: fees, Blind: ring,
			Provider: rcm.Provider{Code: cfg.HCX.ParticipantCode, Name: cfg.HCX.Name},
			Payer:    noGateway{}, Directory: noGateway{}}
		if hooks.rcmWaits != nil {
			rc.Waits = *hooks.rcmWaits
		}
		if participant != nil {
			rc.Payer, rc.Directory = participant.Client(), participant.Directory()
		}
		var err error
		if revenue, err = rcm.New(rc); err != nil {
			return err
		}
		return rcm.Register(defs, revenue)
	}

	// The process's one River client: the engine registers its steps, and
	// startEngine builds and starts it. Events written by record writes and
	// workflow transitions are handed to the sinks by the publisher's loop,
	// woken by their commits; it stops, giving its lease up, after the
	// engine (this defer runs after the engine's).
	jobsReg := jobs.NewRegistry()
	sinks, err := openEventSinks(ctx, cfg, db, ring, logger)
	if err != nil {
		logger.Error("cannot open the event sinks", "error", err.Error())
		return 1
	}
	defer sinks.close()
	stopPublisher := startPublisher(db, hooks.sinks, sinks, logger)
	defer stopPublisher()
	eng, stopEngine, err := startEngine(ctx, cfg, db, ring, auth.TaskStaff{Accounts: identity.http.Accounts}, fhirRecord, stepRecs, withRevenue, jobsReg, logger, reg)
	if err != nil {
		logger.Error("cannot start the workflow engine", "error", err.Error())
		return 1
	}
	// Stop the workers before the database closes, whichever way serve ends.
	engineStopped := false
	defer func() {
		if !engineStopped {
			_ = stopEngine(context.WithoutCancel(ctx))
		}
	}()

	// The clinical workflows: a run of the engine per workflow (its
	// definition registered by startEngine), FHIR Tasks written by the
	// run in its patient's record.
	exportKey, err := researchKey(cfg)
	if err != nil {
		logger.Error("cannot derive the research export key", "error", err.Error())
		return 1
	}
	clin, err := clinical.New(clinical.Config{DB: db, Engine: eng, Records: runRecords, Record: fhirRecord, Ring: ring, ExportKey: exportKey})
	if err != nil {
		logger.Error("cannot start the clinical workflows", "error", err.Error())
		return 1
	}
	// A database whose workflows predate the analytics rollup is converted
	// before the first request (once; other nodes starting wait for it).
	if err := clin.EnsureRollup(ctx); err != nil {
		logger.Error("cannot build the clinical analytics rollup", "error", err.Error())
		return 1
	}
	reg.MustRegister(clin.Collectors()...)

	api := httpapi.New(httpapi.Options{
		Access:       acc,
		Audit:        auditLog,
		Logger:       logger,
		DB:           db,
		Registry:     reg,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Version:      buildVersion(),
		Identity:     identity.http,
		Terminology:  codes,
		Record:       fhirRecord,
		Engine:       eng,
		RCM:          revenue,
		Webhooks:     sinks.webhooks,
		Clinical:     clin,
		Fees:         fees,
		Batches:      rcm.NewBatches(db, nil),
		Payers:       directory(participant),
		HCX:          hcxHandler(participant, revenue),
		ReadyChecks: []httpapi.ReadyCheck{
			{Name: "workers", Check: func(context.Context) error { return eng.Ready() }},
		},
	})
	handler := api.Handler()
	if hooks.wrap != nil {
		handler = hooks.wrap(handler)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		logger.Error("cannot listen", "addr", cfg.Listen, "error", err.Error())
		return 1
	}
	logger.Info("careflow listening",
		"addr", ln.Addr().String(),
		"database", string(db.Dialect()),
		"location", db.Location(),
		"instance", instance,
		"version", buildVersion(),
		"tls", cfg.Auth.TLSCert != "",
		"startup_ms", time.Since(started).Milliseconds())
	if hooks.listening != nil {
		hooks.listening <- ln.Addr().String()
	}
	if participant != nil && cfg.HCX.dev() {
		// A development gateway learns careflow's endpoint and certificate
		// from careflow itself (careflow payer-sim accepts it).
		go registerDev(ctx, participant, callbackURL(cfg, ln.Addr().String()), logger)
	}

	if cfg.DebugListen != "" {
		stopDebug, err := serveDebug(cfg.DebugListen, logger)
		if err != nil {
			logger.Error("cannot listen for profiles", "addr", cfg.DebugListen, "error", err.Error())
			return 1
		}
		defer stopDebug()
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- serveListener(srv, ln, cfg) }()

	select {
	case err := <-serveErr:
		logger.Error("server stopped", "error", err.Error())
		return 1
	case <-ctx.Done():
	}
	stop() // a second signal now kills the process the default way
	logger.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Error("shutdown did not finish in time", "error", err.Error())
		return 1
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("server stopped", "error", err.Error())
		return 1
	}
	// Steps in flight get what is left of the shutdown budget to commit;
	// any cut short run again on the next start with the same idempotency keys.
	engineStopped = true
	if err := stopEngine(shutdownCtx); err != nil {
		logger.Warn("workflow engine stopped with steps cut short; they resume at the next start", "error", err.Error())
	}
	logger.Info("stopped")
	return 0
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, rest, code, ok := configOrExit("migrate", args, stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "careflow migrate: unexpected argument %q.\n", rest[0])
		return 2
	}
	logger := newLogger(cfg, stderr)
	if err := ensureDataDir(cfg.DataDir); err != nil {
		logger.Error("cannot create the data folder", "error", err.Error())
		return 1
	}
	db, err := store.Open(ctx, store.Config{URL: cfg.Database, DataDir: cfg.DataDir, Logger: logger})
	if err != nil {
		logger.Error("cannot open the database", "error", err.Error())
		return 1
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		logger.Error("migration failed", "error", err.Error())
		return 1
	}
	st, err := db.Status(ctx)
	if err != nil {
		logger.Error("cannot read migration status", "error", err.Error())
		return 1
	}
	fmt.Fprintf(stdout, "applied %d migration(s); database is at version %d\n", len(applied), st.Applied)
	return 0
}

// openRecord is openRecordRing for the commands that need only the record.
func openRecord(ctx context.Context, cfg Config, db *store.DB, logger *slog.Logger) (*record.Service, func(), error) {
	rec, _, stop, err := openRecordRing(ctx, cfg, db, logger)
	return rec, stop, err
}

// openRecordRing opens the PHI key ring (the master key from
// CAREFLOW_MASTER_KEY, else the development key in the data folder, with a
// warning at every start) and the FHIR record over db, and starts the
// ring's refresh and the re-encryptor for every registered ciphertext
// column (phiColumns); before it returns, clinical codes stored in plain
// text before migration 0011 are blind-indexed (record.BlindLegacyCodes)
// and the types whose search parameters changed are re-indexed
// (record.ReindexChangedParams).
// It returns the ring too, for the workflow engine.
// stop ends both and waits for them.
func openRecordRing(ctx context.Context, cfg Config, db *store.DB, logger *slog.Logger) (*record.Service, *phi.Ring, func(), error) {
	ring, err := openKeyRing(ctx, cfg, db, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	columns, err := phiColumns()
	if err != nil {
		return nil, nil, nil, err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ring.RefreshEvery(bg, time.Minute) }()
	go func() {
		defer wg.Done()
		phi.NewReencryptor(ring, columns, phi.ReencryptOptions{Logger: logger}).Run(bg, 10*time.Minute)
	}()
	stop := func() { cancel(); wg.Wait() }
	// Claims and Conditions are checked against the code systems careflow
	// knows on every write, from the API or an import.
	codes := terminology.NewService(db, terminology.Options{Logger: logger})
	// FHIR Consent resources of scope patient-privacy are enforced: their
	// decisions reach the consent store in the record's own transaction.
	hooks := []record.WriteHook{auth.ConsentHook{Consents: auth.NewConsents(db, nil)}}
	// Every create, update and delete writes its event (internal/events)
	// in its own transaction, whichever command made it (serve, import):
	// the publisher in serve delivers them.
	changes := []record.ChangeHook{record.EventHook{}}
	rec := record.New(db, ring, record.Options{Codes: codes, Hooks: hooks, Changes: changes, Limits: cfg.Limits})
	// Before the record takes a request: clinical codes a database from
	// before migration 0011 holds in plain text are blind-indexed in place
	// (a no-op read on every later start), so searches by code find them.
	if n, err := rec.BlindLegacyCodes(ctx); err != nil {
		stop()
		return nil, nil, nil, err
	} else if n > 0 {
		logger.Info("record: blind-indexed the clinical codes of resources stored before this version", "resources", n)
	}
	// Then the types whose search parameters changed since their rows were
	// written (all stored types, once, on a database from before migration
	// 0013) are re-indexed, so that their new parameters find them.
	if n, err := rec.ReindexChangedParams(ctx); err != nil {
		stop()
		return nil, nil, nil, err
	} else if n > 0 {
		logger.Info("record: re-indexed resources for this version's search parameters", "resources", n)
	}
	return rec, ring, stop, nil
}
