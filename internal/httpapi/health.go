package httpapi

import (
	"context"
	"net/http"
	"time"
)

// healthz answers whether the process is alive; it touches nothing else so
// that a slow database does not get a live process restarted.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, "application/json", http.StatusOK, map[string]string{"status": "ok"})
}

// readinessTimeout bounds each readiness probe's checks.
const readinessTimeout = 2 * time.Second

type readyResult struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// readyz answers whether this node should receive traffic: the database
// answers, its schema is at least what this binary needs, and every
// registered check passes.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
	defer cancel()
	res := readyResult{Status: "ready", Checks: map[string]string{}}
	fail := func(name, why string) {
		res.Status = "not_ready"
		res.Checks[name] = why
	}
	if s.opts.DB == nil {
		fail("database", "not configured")
	} else if err := s.opts.DB.Ping(ctx); err != nil {
		fail("database", "unreachable")
		s.logger.Warn("readiness: database unreachable", "error", err.Error())
	} else {
		res.Checks["database"] = "ok"
		st, err := s.opts.DB.Status(ctx)
		switch {
		case err != nil:
			fail("migrations", "unknown")
			s.logger.Warn("readiness: migration status", "error", err.Error())
		case !st.Current():
			fail("migrations", "pending")
		default:
			res.Checks["migrations"] = "ok"
		}
	}
	for _, c := range s.opts.ReadyChecks {
		if err := c.Check(ctx); err != nil {
			fail(c.Name, err.Error())
		} else {
			res.Checks[c.Name] = "ok"
		}
	}
	status := http.StatusOK
	if res.Status != "ready" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, "application/json", status, res)
}
