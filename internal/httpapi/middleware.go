package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/careflow/careflow/internal/errs"
)

// requestInfo travels in the request context so that inner layers can tell
// outer ones which route matched (the mux sets it on a copy of the request
// the outer layers never see).
type requestInfo struct {
	id    string
	route string
}

type ctxKey int

const infoKey ctxKey = iota

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey).(*requestInfo)
	return info
}

// RequestID returns the request id of a request context, or "".
func RequestID(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// issuedRequestID reports whether id has the form careflow itself issues:
// a UUID of version 7 (or 4, the fallback when the clock source fails) in
// its canonical lower-case 36-character text. Only such an id is kept from
// an incoming X-Request-ID, so a retry or a proxy can correlate with an id
// careflow gave out, while anything a client made up (a name, a birth date
// like "victim-1961-07-13") never reaches the logs, the audit log or the
// response: request ids are written there verbatim and are not PHI only as
// long as they are opaque.
func issuedRequestID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	u, err := uuid.Parse(id)
	if err != nil || u.Variant() != uuid.RFC4122 {
		return false
	}
	return u.Version() == 7 || u.Version() == 4
}

// newRequestID makes a UUIDv7: time-ordered, so log lines sort by id.
func newRequestID() string {
	u, err := uuid.NewV7()
	if err != nil {
		u = uuid.New()
	}
	return u.String()
}

// requestID keeps an incoming X-Request-ID that careflow could have issued
// (see issuedRequestID) and otherwise makes a new one. A replaced id is
// noted at debug level without its value, which may be anything.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := r.Header.Get("X-Request-ID")
		id := in
		if !issuedRequestID(id) {
			id = newRequestID()
			if in != "" {
				s.logger.LogAttrs(r.Context(), slog.LevelDebug, "incoming X-Request-ID replaced: not an id careflow issues",
					slog.String("request_id", id))
			}
		}
		w.Header().Set("X-Request-ID", id)
		info := &requestInfo{id: id}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), infoKey, info)))
	})
}

// responseRecorder remembers the status and size of a response.
type responseRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *responseRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *responseRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type httpMetrics struct {
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "careflow_http_request_duration_seconds",
			Help:    "HTTP request duration by route pattern and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "status"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "careflow_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
	reg.MustRegister(m.duration, m.inFlight)
	return m
}

// accessLog writes one structured line per request and observes the
// duration histogram. The route is the matched pattern (never the raw path,
// which may hold ids, and never the query, which may hold PHI search terms).
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &responseRecorder{ResponseWriter: w}
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		elapsed := time.Since(start)
		info := infoFrom(r.Context())
		route := "unmatched"
		if info != nil && info.route != "" {
			route = info.route
		}
		s.metrics.duration.WithLabelValues(route, strconv.Itoa(rec.status)).Observe(elapsed.Seconds())
		level := slog.LevelInfo
		if route == "GET /healthz" || route == "GET /readyz" || route == "GET /metrics" {
			level = slog.LevelDebug // probes would drown the log
		}
		if rec.status >= 500 {
			level = slog.LevelWarn
		}
		s.logger.LogAttrs(r.Context(), level, "request",
			slog.String("request_id", RequestID(r.Context())),
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", rec.status),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		)
	})
}

// recoverPanics turns a handler panic into a 500 carrying only the request
// id; the stack goes to the log for the operator.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.logger.Error("handler panic",
				"request_id", RequestID(r.Context()),
				"panic", fmt.Sprint(p),
				"stack", string(debug.Stack()))
			s.writeError(w, r, errs.E(errs.Internal, "internal error"))
		}()
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets headers every response needs: responses may hold PHI,
// so nothing is cached by browsers or proxies, and content is never sniffed.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.TLS != nil {
			// Browsers that once reached us over TLS refuse plain HTTP for
			// two years; tokens must never travel in the clear.
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody rejects a declared body over the limit at once and caps any
// other body so that reading past the limit fails with 413.
func (s *Server) limitBody(next http.Handler) http.Handler {
	limit := s.opts.MaxBodyBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			// Do not read the body; close the connection after answering so
			// a client that keeps sending cannot hold it.
			w.Header().Set("Connection", "close")
			s.writeError(w, r, errTooLarge(limit))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

func errTooLarge(limit int64) *errs.Error {
	return errs.E(errs.TooLarge, "request body is larger than the limit of %d bytes", limit)
}

// bodyError classifies an error from reading a request body.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge(mbe.Limit)
	}
	return errs.Wrap(errs.Invalid, err, "request body could not be read")
}
