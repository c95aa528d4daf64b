package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/ratelimit"
	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/terminology"
)

// DefaultMaxBodyBytes bounds request bodies unless configured otherwise. A
// large FHIR transaction Bundle (a Synthea patient) is a few megabytes.
const DefaultMaxBodyBytes = 16 << 20

// ReadyCheck is a named readiness condition beyond the database (workers
// running, a key ring loaded).
type ReadyCheck struct {
	Name  string
	Check func(context.Context) error
}

// Options are the server's dependencies.
type Options struct {
	Logger *slog.Logger
	DB     *store.DB
	// Registry receives the HTTP metrics and is served at /metrics.
	Registry     *prometheus.Registry
	MaxBodyBytes int64
	Version      string
	ReadyChecks  []ReadyCheck
	// Access is the access policy and its stores (internal/auth). Without
	// it, routes that need authorization answer 503.
	Access *auth.Access
	// Audit receives an entry for every authorization decision before the
	// response leaves (an *audit.Log). Without it, audited accesses answer
	// 503: nothing is served that could not be recorded.
	Audit AuditLog
	// TestPrincipal is for tests only; production wiring never sets it.
	// When set, it replaces authentication: the principal it returns for a
	// request (nil: unauthenticated) is who the request acts for.
	TestPrincipal func(*http.Request) *auth.Principal
	// Identity authenticates requests, rate-limits them and serves
	// /api/v1/auth (see authn.go). Its zero value denies every protected
	// route.
	Identity Identity
	// Record is the FHIR record served at /fhir/R4 (internal/record); nil
	// leaves the FHIR routes unregistered.
	Record *record.Service
	// Terminology answers CodeSystem/$validate-code and $lookup on the FHIR
	// surface (fhir_terminology.go); nil leaves those routes unregistered.
	Terminology *terminology.Service
	// Engine is the workflow engine served at /api/v1/workflow-runs and
	// /api/v1/tasks (workflows*.go); nil answers those routes with 503.
	Engine *engine.Engine
	// RCM is the revenue cycle served at /api/v1/rcm (rcm_journeys.go); nil
	// answers those routes with 503.
	RCM *rcm.Service
	// Clinical is the clinical workflows module served at
	// /api/v1/clinical-workflows (clinical.go); nil answers 503.
	Clinical *clinical.Service
	// Fees are the payers' settings and fee schedules (GET
	// /api/v1/rcm/payers), Batches the batches of journeys, Payers the
	// participant registry (payer/hcx's; nil lists every payer careflow
	// knows as unreachable). The payers, batches and worklist routes
	// (rcm.go) answer 503 without RCM, Fees and Batches.
	Fees    *rcm.Fees
	Batches *rcm.Batches
	Payers  rcm.Directory
	// HCX receives the payers' calls through the gateway (payer/hcx's
	// Participant.Handler) at POST /hcx/v1/{entity}/{op}: a public route,
	// since the gateway's bearer token and the message's encryption are its
	// authentication, checked by the handler. Nil leaves it unregistered.
	HCX http.Handler
	// Webhooks are the event sinks' registrations served at
	// /api/v1/webhooks (webhooks.go); nil answers those routes with 503.
	Webhooks Webhooks
	// Clock is the time (nil: time.Now).
	Clock func() time.Time
}

// Server holds the routes and their dependencies.
type Server struct {
	opts    Options
	logger  *slog.Logger
	mux     *http.ServeMux
	metrics *httpMetrics
	handler http.Handler

	mu       sync.Mutex
	patterns []string
	// extraPublic holds routes tests registered with handlePublicFunc.
	extraPublic map[string]bool
	limiter     ratelimit.Limiter

	// capOnce builds the CapabilityStatement (capDoc) on first request.
	capOnce sync.Once
	capDoc  []byte
}

// New builds a server with the operational routes registered.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s := &Server{
		opts:    opts,
		logger:  opts.Logger,
		mux:     http.NewServeMux(),
		metrics: newHTTPMetrics(opts.Registry),
		limiter: opts.Identity.Limiter,
	}
	if s.limiter == nil {
		s.limiter = ratelimit.NewMemory(0, nil)
	}
	s.routes()
	s.identityRoutes()
	s.handler = s.requestID(s.accessLog(s.recoverPanics(securityHeaders(s.limitBody(http.HandlerFunc(s.dispatch))))))
	return s
}

// Handler is the server's root handler with all middleware.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() {
	s.handleFunc("GET /healthz", s.healthz)
	s.handleFunc("GET /readyz", s.readyz)
	s.handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelError),
		EnableOpenMetrics: true,
	}))
	s.handleFunc("GET /api/v1/openapi.json", s.openAPI)
	s.accessRoutes()
	s.fhirRoutes()
	s.workflowRoutes()
	s.rcmRoutes()
	s.clinicalRoutes()
	s.rcmBillingRoutes()
	s.terminologyRoutes()
	s.webhookRoutes()
	if s.opts.HCX != nil {
		s.handle(hcxRoute, s.opts.HCX)
	}
}

// now is the server's clock.
func (s *Server) now() time.Time {
	if s.opts.Clock != nil {
		return s.opts.Clock()
	}
	return time.Now()
}

// handle registers h under a Go 1.22 method pattern and records the pattern
// for the access log, the metrics and the OpenAPI completeness test.
func (s *Server) handle(pattern string, h http.Handler) {
	s.mu.Lock()
	s.patterns = append(s.patterns, pattern)
	s.mu.Unlock()
	h = s.guard(pattern, h)
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := infoFrom(r.Context()); info != nil {
			info.route = pattern
		}
		h.ServeHTTP(w, r)
	}))
}

func (s *Server) handleFunc(pattern string, h http.HandlerFunc) { s.handle(pattern, h) }

// Patterns lists the registered route patterns, sorted.
func (s *Server) Patterns() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.patterns...)
	sort.Strings(out)
	return out
}

// dispatch routes a request. Requests that match no route get our own 404
// or 405 in the right error shape rather than the mux's plain text.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	// The mux's fallback handler tells 404 from 405 (and sets Allow); run it
	// against a recorder and answer in our shape.
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusMethodNotAllowed:
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		s.writeError(w, r, errMethodNotAllowed(r.Method))
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// Path cleaning redirects (double slashes, trailing slash on a
		// subtree) are safe to pass on.
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
	default:
		s.writeError(w, r, errNoRoute())
	}
}

// statusRecorder captures what the mux's fallback handler would answer.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}
func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

// isFHIR reports whether a request is on the FHIR surface, which answers
// errors as OperationOutcome.
func isFHIR(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/fhir/") }
