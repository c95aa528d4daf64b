package sim

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Config configures a Simulator.
type Config struct {
	// Rules are the payers' rules; nil is DefaultRules.
	Rules *Rules
	// DataDir holds the participants' development keys (keys/<code>/,
	// generated once, 0600) and, when DB is nil, the simulator's own
	// SQLite database and master key.
	DataDir string
	// DB and Ring, when set, are the database (migrated) and key ring the
	// ledger uses (a test's storetest database); the caller closes DB.
	DB   *store.DB
	Ring *phi.Ring
	// Clock is the time source; nil is time.Now.
	Clock func() time.Time
	// Logger receives the simulator's events (ids and codes, never
	// payloads); nil discards.
	Logger *slog.Logger
	// PollInterval is how often the deliverer looks for due callbacks
	// (default 100ms); an accepted message wakes it at once.
	PollInterval time.Duration
	// CallbackTimeout bounds one callback delivery (default 10s).
	CallbackTimeout time.Duration
	// MaxBackoff caps the wait between failed deliveries of a callback
	// (default 30s; the first retry is after 250ms, doubling).
	MaxBackoff time.Duration
}

// identity is a participant the simulator plays: its key and certificate.
type identity struct {
	code string
	name string
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

// payerState is one simulated payer.
type payerState struct {
	identity
	rules *PayerRules
}

// Simulator is an HCX gateway with the payers behind it. Handler serves
// the gateway's and registry's HTTP surface; Start and Stop run the
// deliverer of callbacks.
type Simulator struct {
	rules   *Rules
	db      *store.DB
	ring    *phi.Ring
	ownDB   bool
	now     func() time.Time
	logger  *slog.Logger
	gateway identity
	tokens  *hcx.Tokens // the gateway's bearer tokens, one per provider for a few minutes
	payers  map[string]*payerState
	ledger  *Ledger
	reg     *registry
	dice    *dice
	del     *deliverer
	mux     *http.ServeMux

	// holding tracks requests held by the timeout fault, so Stop can let
	// them go.
	holdCtx    context.Context
	holdCancel context.CancelFunc
	closeOnce  sync.Once
}

// New opens (or creates) the simulator's identities and ledger and builds
// its handler. The deliverer does not run until Start.
func New(ctx context.Context, cfg Config) (*Simulator, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("payer-sim: a data directory is needed for the participants' keys")
	}
	rules := cfg.Rules
	if rules == nil {
		rules = DefaultRules()
	}
	s := &Simulator{rules: rules, db: cfg.DB, ring: cfg.Ring, now: cfg.Clock, logger: cfg.Logger, payers: map[string]*payerState{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.db == nil {
		if err := s.openOwnDB(ctx, cfg.DataDir); err != nil {
			return nil, err
		}
	} else if s.ring == nil {
		return nil, errors.New("payer-sim: a key ring is needed with a database")
	}
	fail := func(err error) (*Simulator, error) {
		if s.ownDB {
			_ = s.db.Close()
		}
		return nil, err
	}
	if err := migrate(ctx, s.db); err != nil {
		return fail(err)
	}
	keyDir := func(code string) string { return filepath.Join(cfg.DataDir, "keys", code) }
	now := s.now()
	key, cert, err := hcx.DevIdentity(keyDir(rules.Gateway.Code), rules.Gateway.Code, now)
	if err != nil {
		return fail(fmt.Errorf("payer-sim: gateway identity: %w", err))
	}
	s.gateway = identity{code: rules.Gateway.Code, name: rules.Gateway.Name, key: key, cert: cert}
	s.tokens = hcx.NewTokens(rules.Gateway.Code, s.now)
	for i := range rules.Payers {
		p := &rules.Payers[i]
		key, cert, err := hcx.DevIdentity(keyDir(p.Code), p.Code, now)
		if err != nil {
			return fail(fmt.Errorf("payer-sim: payer %s identity: %w", p.Code, err))
		}
		s.payers[p.Code] = &payerState{identity: identity{code: p.Code, name: p.Name, key: key, cert: cert}, rules: p}
	}
	s.ledger = &Ledger{db: s.db}
	s.dice = newDice(rules.Seed)
	s.del = newDeliverer(s, cfg)
	if s.reg, err = newRegistry(ctx, s); err != nil {
		return fail(err)
	}
	s.holdCtx, s.holdCancel = context.WithCancel(context.Background())
	s.routes()
	return s, nil
}

// openOwnDB opens the simulator's SQLite file and the development master
// key in dataDir.
func (s *Simulator) openOwnDB(ctx context.Context, dataDir string) error {
	db, err := store.Open(ctx, store.Config{URL: "sqlite:" + filepath.Join(dataDir, "payer-sim.db"), DataDir: dataDir, Logger: s.logger})
	if err != nil {
		return fmt.Errorf("payer-sim: open the ledger: %w", err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		_ = db.Close()
		return fmt.Errorf("payer-sim: migrate the ledger: %w", err)
	}
	master, err := phi.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("payer-sim: master key: %w", err)
	}
	ring, err := phi.OpenRing(ctx, db, master, phi.Options{Clock: s.now, Logger: s.logger})
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("payer-sim: key ring: %w", err)
	}
	s.db, s.ring, s.ownDB = db, ring, true
	return nil
}

// Handler is the gateway's HTTP surface: the HCX actions, the participant
// registry, and GET /sim/ledger.
func (s *Simulator) Handler() http.Handler { return s.mux }

// Ledger is the simulator's record of messages and claims.
func (s *Simulator) Ledger() *Ledger { return s.ledger }

// GatewayCode is the gateway's participant code (the audience of the
// providers' bearer tokens).
func (s *Simulator) GatewayCode() string { return s.gateway.code }

// Start runs the callback deliverer until Stop.
func (s *Simulator) Start(ctx context.Context) { s.del.start(ctx) }

// Stop stops the deliverer (a delivery in flight finishes or is cut
// short; undelivered callbacks stay in the ledger for the next start) and
// lets go of the requests the timeout fault holds, so an HTTP server's
// shutdown after it does not wait for them. Call Close after the HTTP
// server has shut down.
func (s *Simulator) Stop(ctx context.Context) error {
	s.holdCancel()
	return s.del.stop(ctx)
}

// Close closes the simulator's own database (not a Config.DB, which is the
// caller's). Stop first.
func (s *Simulator) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.ownDB {
			err = s.db.Close()
		}
	})
	return err
}

func (s *Simulator) routes() {
	mux := http.NewServeMux()
	for _, a := range inboundActions {
		mux.HandleFunc("POST /"+string(a), s.serveAction(a))
	}
	mux.HandleFunc("POST /participant/search", s.reg.serveSearch)
	mux.HandleFunc("POST /participant/create", s.reg.serveCreate)
	mux.HandleFunc("GET /sim/ledger", s.serveLedger)
	s.mux = mux
}
