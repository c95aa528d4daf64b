package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/rcm"
)

// The revenue cycle's journeys (internal/rcm): start, read, list, appeal,
// cancel. Each handler decodes, makes one call into rcm.Service with the
// request's access guard (rcm decides and audits every access against the
// journey's patient, resource Journey) and encodes; the guard's kept
// entries (denials decided inside a transaction) are flushed before the
// answer leaves.
//
//	Journey create  start a journey (registering its patient: Patient create)
//	Journey read    a journey
//	Journey search  list journeys
//	Journey update  appeal, cancel

// rcmTimeout is each journey request's deadline.
const rcmTimeout = 30 * time.Second

func (s *Server) rcmRoutes() {
	s.handleFunc("POST /api/v1/rcm/journeys", s.withRCM(s.startJourney))
	s.handleFunc("GET /api/v1/rcm/journeys", s.withRCM(s.listJourneys))
	s.handleFunc("GET /api/v1/rcm/journeys/{id}", s.withRCM(s.getJourney))
	s.handleFunc("POST /api/v1/rcm/journeys/{id}/appeal", s.withRCM(s.appealJourney))
	s.handleFunc("POST /api/v1/rcm/journeys/{id}/cancel", s.withRCM(s.cancelJourney))
}

// withRCM is withAccess for the journey routes: they exist on every server
// and answer 503 where the revenue cycle is not wired. The handler gets
// the request's guard and a deadline.
func (s *Server) withRCM(h func(w http.ResponseWriter, r *http.Request, g *careaccess.Guard)) http.HandlerFunc {
	return s.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		if s.opts.RCM == nil {
			s.writeError(w, r, errs.E(errs.Unavailable, "the revenue cycle is not running on this server"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), rcmTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		h(w, r, s.accessFor(r, p))
	})
}

// answerGuarded flushes the guard's kept audit entries, then answers with
// v or err: nothing leaves that could not be recorded. Every JSON route
// that decides through a guard answers with it (journeys, clinical
// workflows).
func (s *Server) answerGuarded(w http.ResponseWriter, r *http.Request, g *careaccess.Guard, status int, v any, err error) {
	if ferr := g.Flush(r.Context()); ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, "application/json", status, v)
}

func (s *Server) startJourney(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	if _, err := queryParams(r); err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	var req rcm.JourneyRequest
	if err := readWorkflowBody(w, r, &req); err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	j, created, err := s.opts.RCM.StartJourney(r.Context(), g, req, rcm.StartOptions{IdempotencyKey: r.Header.Get("Idempotency-Key")})
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/v1/rcm/journeys/"+j.ID)
	}
	s.answerGuarded(w, r, g, status, j, err)
}

func (s *Server) getJourney(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	id, err := pathID(r)
	if err == nil {
		_, err = queryParams(r)
	}
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	j, err := s.opts.RCM.Journey(r.Context(), g, id)
	s.answerGuarded(w, r, g, http.StatusOK, j, err)
}

// ageParam reads an age filter: a Go duration ("72h") or a number of days.
func ageParam(q map[string][]string, name string) (time.Duration, error) {
	v := ""
	if vs := q[name]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errs.E(errs.Invalid, "must be a number of days or a duration such as 36h").InField(name)
	}
	return d, nil
}

func (s *Server) listJourneys(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	q, err := queryParams(r, "status", "outcome", "payer", "patient", "batch", "min_age", "max_age", "cursor", "limit")
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	f := rcm.JourneyFilter{Status: q.Get("status"), Outcome: q.Get("outcome"), Payer: q.Get("payer"), Patient: q.Get("patient"),
		BatchID: q.Get("batch"), Cursor: q.Get("cursor")}
	if f.MinAge, err = ageParam(q, "min_age"); err == nil {
		f.MaxAge, err = ageParam(q, "max_age")
	}
	if err == nil && q.Get("limit") != "" {
		f.Limit, err = strconv.Atoi(q.Get("limit"))
		if err != nil || f.Limit < 1 {
			err = errs.E(errs.Invalid, "must be a number from 1 to 200").InField("limit")
		}
	}
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	page, err := s.opts.RCM.Journeys(r.Context(), g, f)
	s.answerGuarded(w, r, g, http.StatusOK, page, err)
}

func (s *Server) appealJourney(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	id, err := pathID(r)
	if err == nil {
		_, err = queryParams(r)
	}
	var body rcm.AppealRequest
	if err == nil && r.ContentLength != 0 {
		err = readWorkflowBody(w, r, &body)
	}
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	j, err := s.opts.RCM.Appeal(r.Context(), g, id, body)
	if err == nil {
		w.Header().Set("Location", "/api/v1/rcm/journeys/"+j.ID)
	}
	s.answerGuarded(w, r, g, http.StatusCreated, j, err)
}

type cancelJourneyJSON struct {
	// Reason is a code (patient_withdrew, duplicate, ...), never free
	// text: it is kept in plain with the run's history.
	Reason string `json:"reason"`
}

func (s *Server) cancelJourney(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	id, err := pathID(r)
	if err == nil {
		_, err = queryParams(r)
	}
	var body cancelJourneyJSON
	if err == nil && r.ContentLength != 0 {
		err = readWorkflowBody(w, r, &body)
	}
	if err == nil && body.Reason != "" && !reasonCode.MatchString(body.Reason) {
		err = errs.E(errs.Invalid, "must be a code: lower-case letters, digits and _").InField("reason")
	}
	if err != nil {
		s.answerGuarded(w, r, g, 0, nil, err)
		return
	}
	j, err := s.opts.RCM.Cancel(r.Context(), g, id, body.Reason)
	s.answerGuarded(w, r, g, http.StatusOK, j, err)
}
