package httpapi

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/rcm"
)

// The revenue cycle's API under /api/v1/rcm (internal/rcm): the payers
// careflow can reach with their fee schedules, batches of journeys, and
// billing's worklist.
//
// Authorization:
//
//	Payer search          GET /payers: the payers and their schedules,
//	                      records of no patient (billing for payment, admin
//	                      for operations)
//	Journey create        POST /batches (decided once for the batch, then
//	                      for every entry as its own start, by rcm)
//	Journey search        GET /batches/{id}, GET /worklist (counts and
//	                      lists confined to the caller's reach)
//
// A batch is accepted with 202 and started entry by entry within the
// request, for at most batchBudget; entries left are pending, and the
// same POST again (the Idempotency-Key the answer names) continues where
// it stopped: a journey is never started twice, by its key.

const (
	// batchBudget is how long a POST of a batch starts entries before it
	// answers with the rest pending; well below the server's default write
	// timeout (60 s).
	batchBudget = 20 * time.Second
	// batchTimeout is that POST's deadline: the budget, the last chunk's
	// starts and the answer.
	batchTimeout = 45 * time.Second

	// payersType is the policy resource GET /payers is decided as: the
	// payers careflow knows, their settings and fee schedules.
	payersType = "Payer"
)

func errBatchNotFound() error { return errs.E(errs.NotFound, "batch not found") }

func (s *Server) rcmBillingRoutes() {
	s.handleFunc("GET /api/v1/rcm/payers", s.withRCMBilling(rcmTimeout, s.listPayers))
	s.handleFunc("POST /api/v1/rcm/batches", s.withRCMBilling(batchTimeout, s.postBatch))
	s.handleFunc("GET /api/v1/rcm/batches/{id}", s.withRCMBilling(rcmTimeout, s.getBatch))
	s.handleFunc("GET /api/v1/rcm/worklist", s.withRCMBilling(rcmTimeout, s.worklist))
}

// withRCMBilling is withAccess for these routes: they exist on every
// server (the API document is the same everywhere) and answer 503 where
// the revenue cycle is not wired. Each request gets its deadline.
func (s *Server) withRCMBilling(timeout time.Duration, h func(w http.ResponseWriter, r *http.Request, p *auth.Principal)) http.HandlerFunc {
	return s.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		if s.opts.RCM == nil || s.opts.Fees == nil || s.opts.Batches == nil {
			s.writeError(w, r, errs.E(errs.Unavailable, "the revenue cycle is not running on this server"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		h(w, r.WithContext(ctx), p)
	})
}

// payersPage is the body of GET /payers.
type payersPage struct {
	Payers []rcm.PayerListing `json:"payers"`
}

func (s *Server) listPayers(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	q, err := queryParams(r, "date")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	on := s.now()
	if v := q.Get("date"); v != "" {
		if on, err = time.Parse(time.DateOnly, v); err != nil {
			s.writeError(w, r, errs.E(errs.Invalid, "must be a date YYYY-MM-DD").InField("date"))
			return
		}
	}
	a := access{req: auth.Request{Action: auth.ActionSearch, ResourceType: payersType}}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ls, err := s.opts.Fees.Payers(r.Context(), s.opts.Payers, on)
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, payersPage{Payers: ls})
}

func (s *Server) postBatch(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if _, err := queryParams(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	ndjson := false
	switch mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt {
	case "application/json":
	case "application/x-ndjson", "application/ndjson":
		ndjson = true
	default:
		s.writeError(w, r, errs.E(errs.UnsupportedMedia, "send a JSON array (application/json) or NDJSON (application/x-ndjson) of journey requests"))
		return
	}
	// The type question (may the caller start journeys at all): a batch
	// names no patient; each entry's start decides on its own patient.
	a := access{req: auth.Request{Action: auth.ActionCreate, ResourceType: rcm.JourneyType}, auditAction: "batch"}
	d, err := s.authorizeType(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	fail := func(err error) { s.failAfterAuthorize(w, r, p, a, d, err) }
	batch, err := rcm.DecodeBatch(r.Body, ndjson)
	if err != nil {
		fail(err)
		return
	}
	g := s.accessFor(r, p)
	journeys := s.opts.RCM.BatchJourneys(g)
	key := r.Header.Get("Idempotency-Key")
	id, created, err := s.opts.Batches.Submit(r.Context(), rcm.BatchSubmission{
		CreatedBy: p.Subject, IdempotencyKey: key, Batch: batch, StopAfter: s.now().Add(batchBudget),
	}, journeys)
	if err != nil {
		fail(err)
		return
	}
	st, err := s.opts.Batches.Status(r.Context(), id, journeys)
	if err != nil {
		fail(err)
		return
	}
	if key == "" {
		key = id
	}
	w.Header().Set("Location", "/api/v1/rcm/batches/"+id)
	// The key to send the same body with to continue a batch left pending
	// (the client's own, or the batch's id).
	w.Header().Set("Idempotency-Key", key)
	status := http.StatusAccepted
	if !created && st.Pending == 0 {
		status = http.StatusOK
	}
	writeJSON(w, "application/json", status, st)
}

// authorizeType decides the type question for an access that names no
// record (access.Guard.CheckType) and audits the decision before anything
// is read or written; an allowed access whose entry cannot be appended is
// refused.
func (s *Server) authorizeType(r *http.Request, p *auth.Principal, a access) (auth.Decision, error) {
	g := s.accessFor(r, p)
	d := g.CheckType(r.Context(), a.req)
	if err := g.AuditDecision(r.Context(), a.action(), d); err != nil && d.Allowed {
		return d, err
	}
	if !d.Allowed {
		return d, denialError(d)
	}
	return d, nil
}

func (s *Server) getBatch(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if _, err := queryParams(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	a := access{req: auth.Request{Action: auth.ActionSearch, ResourceType: rcm.JourneyType}, resourceID: id, auditAction: "batch_read"}
	d, err := s.authorize(r, p, a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !canonicalUUID(id) {
		s.failAfterAuthorize(w, r, p, a, d, errBatchNotFound())
		return
	}
	st, err := s.opts.Batches.Status(r.Context(), id, s.opts.RCM.BatchJourneys(s.accessFor(r, p)))
	if err != nil {
		s.failAfterAuthorize(w, r, p, a, d, err)
		return
	}
	writeJSON(w, "application/json", http.StatusOK, st)
}

// worklistKinds maps the kind parameter to rcm's queues.
var worklistKinds = map[string]string{
	"denied":        rcm.QueueDenied,
	"short_paid":    rcm.QueueShortPaid,
	"waiting":       rcm.QueueWaiting,
	"needs_info":    rcm.QueueNeedsInfo,
	"invalid_codes": rcm.QueueInvalidCodes,
	"attention":     rcm.QueueAttention,
}

// worklistPage is the body of GET /worklist.
type worklistPage struct {
	Journeys []json.RawMessage `json:"journeys"`
	// Next is the cursor of the following page (pass it as cursor=).
	Next string `json:"next_cursor,omitempty"`
}

func (s *Server) worklist(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	q, err := queryParams(r, "kind", "older_than", "payer", "cursor", "limit")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := worklistFilter(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// rcm decides (and audits) the search and confines it to the reach.
	page, err := s.opts.RCM.Worklist(r.Context(), s.accessFor(r, p), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	recs := make([]patientRecord, 0, len(page.Journeys))
	for _, j := range page.Journeys {
		b, err := json.Marshal(j)
		if err != nil {
			s.writeError(w, r, errs.Wrap(errs.Internal, err, "encode journey"))
			return
		}
		recs = append(recs, patientRecord{ResourceType: rcm.JourneyType, ResourceID: j.ID, PatientID: j.Patient, JSON: b})
	}
	out, err := s.recheckRecords(r, p, "", recs)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if out == nil {
		out = []json.RawMessage{}
	}
	writeJSON(w, "application/json", http.StatusOK, worklistPage{Journeys: out, Next: page.NextCursor})
}

func worklistFilter(q url.Values) (rcm.WorklistFilter, error) {
	var f rcm.WorklistFilter
	kind := q.Get("kind")
	queue, ok := worklistKinds[kind]
	if !ok {
		return f, errs.E(errs.Invalid, "must be denied, short_paid, waiting, needs_info, invalid_codes or attention").InField("kind")
	}
	f.Queue = queue
	if v := q.Get("older_than"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute || d > 366*24*time.Hour {
			return f, errs.E(errs.Invalid, "must be a duration from 1m to 8784h, such as 72h").InField("older_than")
		}
		if queue != rcm.QueueWaiting {
			return f, errs.E(errs.Invalid, "applies to kind=waiting only").InField("older_than")
		}
		f.WaitingLonger = d
	}
	if v := q.Get("payer"); v != "" {
		if !rcm.ValidPayerCode(v) {
			return f, errs.E(errs.Invalid, "must be a payer's participant code").InField("payer")
		}
		f.Payer = v
	}
	if v := q.Get("limit"); v != "" {
		n, err := queryLimit(q)
		if err != nil || n > 200 {
			return f, errs.E(errs.Invalid, "must be a whole number from 1 to 200").InField("limit")
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		if len(v) > 200 {
			return f, errs.E(errs.Invalid, "is not a cursor this server gave").InField("cursor")
		}
		f.Cursor = v
	}
	return f, nil
}
