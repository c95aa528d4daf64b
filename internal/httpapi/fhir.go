package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

// The FHIR R4 REST surface over internal/record. Handlers are thin: check
// the format, authorize, call the record, write FHIR JSON. Every record
// goes through fhirGuard (the single point where the access policy and the
// audit log plug in) before it is read or written, and every record a
// response carries goes through recheckRecords (per-record decision and
// field redaction), so an _include or a history entry cannot leak.
//
// Query strings may hold PHI (search values): they are never logged, never
// put in an error message, and paging links carry a sealed token instead.

const fhirJSON = "application/fhir+json"

// fhirBase is where the FHIR surface lives.
const fhirBase = "/fhir/R4"

func (s *Server) fhirRoutes() {
	if s.opts.Record == nil {
		return
	}
	s.handleFunc("GET "+fhirBase+"/metadata", s.fhirPublic(s.fhirMetadata))
	s.handleFunc("POST "+fhirBase, s.fhirHandler(s.fhirBundle))
	s.handleFunc("POST "+fhirBase+"/{$}", s.fhirHandler(s.fhirBundle))
	s.handleFunc("GET "+fhirBase+"/{type}", s.fhirHandler(s.fhirSearch))
	s.handleFunc("POST "+fhirBase+"/{type}/_search", s.fhirHandler(s.fhirSearch))
	s.handleFunc("POST "+fhirBase+"/{type}", s.fhirHandler(s.fhirCreate))
	s.handleFunc("PUT "+fhirBase+"/{type}", s.fhirHandler(s.fhirConditionalUpdate))
	s.handleFunc("DELETE "+fhirBase+"/{type}", s.fhirHandler(s.fhirConditionalDelete))
	s.handleFunc("GET "+fhirBase+"/{type}/_history", s.fhirHandler(s.fhirHistory))
	s.handleFunc("GET "+fhirBase+"/{type}/{id}", s.fhirHandler(s.fhirRead))
	s.handleFunc("PUT "+fhirBase+"/{type}/{id}", s.fhirHandler(s.fhirUpdate))
	s.handleFunc("DELETE "+fhirBase+"/{type}/{id}", s.fhirHandler(s.fhirDelete))
	s.handleFunc("GET "+fhirBase+"/{type}/{id}/_history", s.fhirHandler(s.fhirHistory))
	s.handleFunc("GET "+fhirBase+"/{type}/{id}/_history/{vid}", s.fhirHandler(s.fhirVRead))
}

// fhirPublic checks the format only (the CapabilityStatement holds no PHI).
func (s *Server) fhirPublic(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fhirNegotiate(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r)
	}
}

// fhirHandler checks the format, then requires the access services and a
// principal (withAccess). The audit entries of the decisions the handler's
// guard made are appended before the first byte of the response.
func (s *Server) fhirHandler(h func(w http.ResponseWriter, r *http.Request, g *fhirGuard)) http.HandlerFunc {
	inner := s.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		g := newFHIRGuard(s, r, p)
		aw := &auditingWriter{ResponseWriter: w, g: g, s: s, r: r}
		h(aw, r, g)
	})
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fhirNegotiate(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		// An unsupported type is unsupported for everyone: answered before
		// anything about the caller is looked at (fhir_types.go).
		if !s.checkServedType(w, r) {
			return
		}
		inner(w, r)
	}
}

// fhirGuard is the FHIR surface's one call point into the access policy
// and the audit log: record.Service calls Allow for every record before
// opening or writing it, and Reach before it lists records across
// patients. Writes are audited inside their own transaction (AllowTx).
// Reads and denials may be decided inside a transaction too (a transaction
// Bundle's GETs), where Append would wait for the writer the transaction
// holds; their entries are kept until auditingWriter appends them, all in
// one commit, before the response leaves. A failed append turns the
// response into a 503 (fail closed).
//
// Listings (a search, its includes, a type history) are decided once as a
// search and confined in SQL to the caller's reach (auth.Reach), so their
// totals and pages count only what the caller may see; each record they
// return is then decided once, as a read, by visible, which redacts it and
// records in the audit log every patient whose data the response carries.
type fhirGuard struct {
	s *Server
	r *http.Request
	p *auth.Principal

	mu sync.Mutex
	// purpose is the purpose the last allowed decision was made for, used
	// to re-decide the records of the response.
	purpose auth.Purpose
	pending []audit.Entry
	// noted holds the entries kept or appended so far (action, type, id,
	// patient, outcome), so that one decision about one record (every
	// version of an instance history, say) is audited once per request;
	// shown holds the records and patients whose reading is audited.
	noted map[string]bool
	shown map[string]bool
	// reach caches the reach of each type this request listed.
	reach map[string]record.Reach
	// unconfined is set when a reach could not be computed (the policy's
	// sources cannot list patients): listings then run unconfined, every
	// record is still decided on the way out, and no total is reported.
	unconfined bool
}

func newFHIRGuard(s *Server, r *http.Request, p *auth.Principal) *fhirGuard {
	return &fhirGuard{s: s, r: r, p: p, noted: map[string]bool{}, shown: map[string]bool{}, reach: map[string]record.Reach{}}
}

// Allow implements record.Guard.
func (g *fhirGuard) Allow(_ context.Context, a record.Access) error {
	return g.allow(a)
}

func (g *fhirGuard) allow(a record.Access) error {
	if !g.s.servesType(a.Type) {
		return errUnsupportedType(a.Type)
	}
	if a.Action == record.ActSearch && a.ID != "" {
		// A record a listing returns: the listing was decided as a search
		// and confined to the caller's reach; visible decides the record
		// itself, as a read, before it leaves.
		return nil
	}
	acc := access{
		req:        auth.Request{Action: auth.Action(a.Action), ResourceType: a.Type, PatientID: a.PatientID},
		resourceID: a.ID,
	}
	d := g.s.opts.Access.Authorizer.Decide(g.r.Context(), g.p, acc.req)
	g.note(g.s.auditEntry(g.r, g.p, acc, d))
	if !d.Allowed {
		return fhirDenial(a, d)
	}
	g.markShown(a)
	g.setPurpose(d.Purpose)
	return nil
}

func (g *fhirGuard) setPurpose(p auth.Purpose) {
	g.mu.Lock()
	g.purpose = p
	g.mu.Unlock()
}

func (g *fhirGuard) decidedPurpose() auth.Purpose {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.purpose
}

// fhirDenial is the error for a refused record. A record out of reach
// (not_related) reads exactly like one that does not exist, with the
// record's own message, for a read and a delete (whose missing id is not
// known either: internal/record/existence.go). An update keeps "no such
// patient": an update of a record out of reach must read like a create
// for a patient out of reach, which is what the same request makes of an
// id that does not exist. A stored record of no patient that the caller's
// rules reach only in a patient's compartment (patient_required: an
// organisational Task for a physician) is out of reach in the same way.
func fhirDenial(a record.Access, d auth.Decision) error {
	outOfReach := d.Reason == auth.ReasonNotRelated || (d.Reason == auth.ReasonPatientRequired && a.PatientID == "")
	if outOfReach && a.ID != "" && (a.Action == record.ActRead || a.Action == record.ActDelete) {
		return notKnown(a.Type, a.ID)
	}
	if d.Reason == auth.ReasonFieldNotWritable && d.Field != "" {
		// The element's path, never its value.
		path := a.Type + "." + d.Field
		return errs.E(errs.Forbidden, "access denied (%s): this role may not write %s; leave it out and the stored value is kept", d.Reason, path).InField(path)
	}
	return denialError(d)
}

// notKnown is the record's answer for a resource that does not exist.
func notKnown(typ, id string) error {
	if !auth.ValidPatientID(id) { // the FHIR id syntax
		id = "(invalid id)"
	}
	return errs.E(errs.NotFound, "%s/%s is not known", typ, id)
}

// note keeps an audit entry for the response, unless the same one is
// kept already.
func (g *fhirGuard) note(e audit.Entry) {
	key := strings.Join([]string{string(e.Action), e.ResourceType, e.ResourceID, e.PatientID, string(e.Outcome)}, "\x00")
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.noted[key] {
		return
	}
	g.noted[key] = true
	g.pending = append(g.pending, e)
}

// markShown records that an allowed decision about a record (or, for a
// search naming a patient, about that patient's records of the type)
// audited it, so that visible does not audit its reading twice.
func (g *fhirGuard) markShown(a record.Access) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a.ID != "" {
		g.shown[recordKey(a.Type+"/"+a.ID)] = true
	} else if a.PatientID != "" {
		g.shown[patientKey(audit.Action(a.Action), a.Type, a.PatientID)] = true
	}
}

func recordKey(ref string) string { return "rec\x00" + ref }

func patientKey(action audit.Action, typ, patient string) string {
	return "pat\x00" + string(action) + "\x00" + typ + "\x00" + patient
}

// Reach implements record.Reacher: the records of typ the caller may read
// for the purpose decided.
func (g *fhirGuard) Reach(ctx context.Context, typ string) (record.Reach, error) {
	return g.reachOf(ctx, typ, false)
}

// MatchReach implements record.Reacher: the records of typ whose patient
// the caller reaches, consent aside (see auth.ReachBeforeConsent).
func (g *fhirGuard) MatchReach(ctx context.Context, typ string) (record.Reach, error) {
	return g.reachOf(ctx, typ, true)
}

func (g *fhirGuard) reachOf(ctx context.Context, typ string, match bool) (record.Reach, error) {
	purpose := g.decidedPurpose()
	key := typ + "\x00" + string(purpose) + "\x00" + strconv.FormatBool(match)
	g.mu.Lock()
	r, ok := g.reach[key]
	g.mu.Unlock()
	if ok {
		return r, nil
	}
	req := auth.Request{Action: auth.ActionRead, ResourceType: typ, Purpose: purpose}
	reach := g.s.opts.Access.Authorizer.Reach
	if match {
		reach = g.s.opts.Access.Authorizer.ReachBeforeConsent
	}
	ar, err := reach(ctx, g.p, req)
	switch {
	case errors.Is(err, auth.ErrReachUnknown):
		g.mu.Lock()
		g.unconfined = true
		g.mu.Unlock()
		ar = auth.Reach{Every: true}
	case err != nil:
		return record.Reach{}, errs.Wrap(errs.Unavailable, err, "the access policy could not be evaluated; try again")
	}
	r = record.Reach(ar)
	g.mu.Lock()
	g.reach[key] = r
	g.mu.Unlock()
	return r, nil
}

// AllowTx implements record.TxGuard: an allowed write is audited inside
// the write's own transaction (audit.Log.AppendTx), so the record and its
// audit entry commit together and a rolled-back transaction leaves no
// entry for what did not happen. A denial is kept for the response, since
// the transaction it was decided in will roll back. The policy decides the
// elements a create or update sets too (a body setting one outside the
// allowing rule's fields is a field_not_writable denial), and the grant
// hands the record the elements the write may touch, so that it keeps the
// others from the stored version.
func (g *fhirGuard) AllowTx(ctx context.Context, tx store.Tx, a record.Access, elements []string) (record.Grant, error) {
	if !g.s.servesType(a.Type) {
		return record.Grant{}, errUnsupportedType(a.Type)
	}
	acc := access{
		req:        auth.Request{Action: auth.Action(a.Action), ResourceType: a.Type, PatientID: a.PatientID, Elements: elements},
		resourceID: a.ID,
	}
	d := g.s.opts.Access.Authorizer.Decide(g.r.Context(), g.p, acc.req)
	e := g.s.auditEntry(g.r, g.p, acc, d)
	if !d.Allowed {
		g.note(e)
		return record.Grant{}, fhirDenial(a, d)
	}
	if g.s.opts.Audit == nil {
		return record.Grant{}, errs.E(errs.Unavailable, "the audit log is not configured; access to audited records is refused")
	}
	if _, err := g.s.opts.Audit.AppendTx(ctx, tx, e); err != nil {
		return record.Grant{}, errs.Wrap(errs.Unavailable, err, "the audit log is unavailable; try again")
	}
	g.markShown(a)
	g.setPurpose(d.Purpose)
	return record.Grant{Fields: g.s.opts.Access.Policy.WritableFields(d.Fields)}, nil
}

// flush appends the pending audit entries, in one commit.
func (g *fhirGuard) flush() error {
	g.mu.Lock()
	pending := g.pending
	g.pending = nil
	g.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	if g.s.opts.Audit == nil {
		return errs.E(errs.Unavailable, "the audit log is not configured; access to audited records is refused")
	}
	if _, err := g.s.opts.Audit.AppendAll(g.r.Context(), pending); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the audit log is unavailable; try again")
	}
	return nil
}

// auditingWriter appends the guard's pending audit entries when the
// response starts; if that fails, the client gets a 503 instead.
type auditingWriter struct {
	http.ResponseWriter
	g       *fhirGuard
	s       *Server
	r       *http.Request
	started bool
	failed  bool
}

func (w *auditingWriter) WriteHeader(code int) {
	if w.started {
		return
	}
	w.started = true
	if err := w.g.flush(); err != nil {
		w.failed = true
		for _, h := range []string{"ETag", "Location", "Last-Modified", "Content-Length"} {
			w.ResponseWriter.Header().Del(h)
		}
		w.s.writeError(w.ResponseWriter, w.r, err)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditingWriter) Write(b []byte) (int, error) {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *auditingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// visible is the response filter of the FHIR surface: it decides every
// record once (a read, for the purpose decided), drops those the caller
// may not see (each audited as a denial), and returns the others' JSON,
// redacted, in order (nil for a version that is a delete). The reading of
// every patient's data it lets through is audited as action (search for a
// search's matches, read otherwise): one entry per patient and type, with
// the record's id when there is one record, unless an allowed decision of
// this request (the read, the write, the search naming the patient)
// audited it already.
func (g *fhirGuard) visible(recs []record.Record, action audit.Action) ([]json.RawMessage, []record.Record, error) {
	type group struct {
		n     int
		id    string
		entry audit.Entry
	}
	purpose := g.decidedPurpose()
	patients := make([]string, 0, len(recs))
	for _, rec := range recs {
		patients = append(patients, rec.PatientID)
	}
	g.s.opts.Access.Authorizer.Prefetch(g.r.Context(), g.p, purpose, patients)
	var bodies []json.RawMessage
	var kept []record.Record
	groups := map[string]*group{}
	var order []string
	dropped := 0
	for _, rec := range recs {
		acc := access{req: auth.Request{Action: auth.ActionRead, ResourceType: rec.Type, PatientID: rec.PatientID, Purpose: purpose}, resourceID: rec.ID}
		d := g.s.opts.Access.Authorizer.Decide(g.r.Context(), g.p, acc.req)
		if !d.Allowed {
			dropped++
			g.note(g.s.auditEntry(g.r, g.p, acc, d))
			continue
		}
		var body json.RawMessage
		if rec.JSON != nil {
			var err error
			if body, err = g.s.opts.Access.Policy.RedactFields(d.Fields, rec.JSON); err != nil {
				// A record we cannot parse cannot be shown safely.
				return nil, nil, errs.Wrap(errs.Internal, err, "response filter")
			}
		}
		bodies = append(bodies, body)
		kept = append(kept, rec)
		if rec.PatientID == "" {
			continue
		}
		key := patientKey(action, rec.Type, rec.PatientID)
		g.mu.Lock()
		done := g.shown[recordKey(rec.Ref())] || g.shown[key]
		g.mu.Unlock()
		if done {
			continue
		}
		grp := groups[key]
		if grp == nil {
			acc.auditAction = action
			grp = &group{entry: g.s.auditEntry(g.r, g.p, acc, d)}
			grp.entry.ResourceID = ""
			groups[key] = grp
			order = append(order, key)
		}
		grp.n++
		grp.id = rec.ID
	}
	for _, key := range order {
		grp := groups[key]
		if grp.n == 1 {
			grp.entry.ResourceID = grp.id
		}
		g.note(grp.entry)
		g.mu.Lock()
		g.shown[key] = true
		g.mu.Unlock()
	}
	if dropped > 0 {
		// The listing's reach or a handler let through records the caller
		// may not see: a bug to fix (or a relationship that ended during
		// the request), caught here. Counts only, no ids.
		g.s.logger.Warn("response filter dropped records", "request_id", RequestID(g.r.Context()), "dropped", dropped, "kept", len(kept))
	}
	return bodies, kept, nil
}

// fhirNegotiate answers 415 for anything but JSON: the _format parameter,
// the Accept header and, for bodies, the Content-Type.
func fhirNegotiate(r *http.Request) error {
	unsupported := errs.E(errs.UnsupportedMedia, "this server speaks FHIR JSON only (application/fhir+json)")
	for _, f := range r.URL.Query()["_format"] {
		if !jsonFormat(f) {
			return unsupported
		}
	}
	if acc := r.Header.Values("Accept"); len(acc) > 0 {
		ok := false
		for _, v := range acc {
			for part := range strings.SplitSeq(v, ",") {
				mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
				if err == nil && (jsonFormat(mt) || mt == "*/*" || mt == "application/*") {
					ok = true
				}
			}
		}
		if !ok {
			return unsupported
		}
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			return nil
		}
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return unsupported
		}
		if jsonFormat(mt) {
			return nil
		}
		if mt == "application/x-www-form-urlencoded" && strings.HasSuffix(r.URL.Path, "/_search") {
			return nil
		}
		return unsupported
	}
	return nil
}

func jsonFormat(f string) bool {
	switch strings.ToLower(f) {
	case "json", "application/json", "application/fhir+json", "application/json+fhir":
		return true
	}
	return false
}

// fhirError answers an error as an OperationOutcome: validation results
// with every issue, a deleted resource with 410.
func (s *Server) fhirError(w http.ResponseWriter, r *http.Request, err error) {
	var ie *record.IssuesError
	if errors.As(err, &ie) {
		writeJSON(w, fhirJSON, statusOf(errs.KindOf(err)), ie.Issues.Outcome())
		return
	}
	if errors.Is(err, record.ErrDeleted) {
		e, _ := errs.As(err)
		writeJSON(w, fhirJSON, http.StatusGone, fhir.NewOutcome("error", "deleted", e.Message))
		return
	}
	s.writeError(w, r, err)
}

// writeFHIR writes a resource body.
func writeFHIR(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", fhirJSON+"; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// versionHeaders sets ETag, Last-Modified and, when asked, Location.
func versionHeaders(w http.ResponseWriter, r *http.Request, rec record.Record, location bool) {
	w.Header().Set("ETag", rec.ETag())
	w.Header().Set("Last-Modified", rec.LastUpdated.UTC().Format(http.TimeFormat))
	if location {
		w.Header().Set("Location", baseURL(r)+"/"+rec.Type+"/"+rec.ID+"/_history/"+strconv.Itoa(rec.Version))
	}
}

// baseURL is the service base the client used.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + fhirBase
}

// readFHIRBody reads the body of a write of typ ("Bundle" for a batch or
// transaction) through the record's limits, which refuse an over-limit
// resource before it is read whole.
func (s *Server) readFHIRBody(r *http.Request, typ string) ([]byte, error) {
	body, err := s.opts.Record.ReadBody(r.Body, typ)
	if errs.Is(err, errs.TooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, bodyError(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errs.E(errs.Invalid, "request body is empty; a FHIR resource is required")
	}
	return body, nil
}

// fhirMetadata answers the CapabilityStatement. It describes the binary,
// not the moment, so it is built once per server (dated at its start):
// clients fetch it first and often, and building it walks every R4 type.
func (s *Server) fhirMetadata(w http.ResponseWriter, r *http.Request) {
	s.capOnce.Do(func() { s.capDoc = s.capabilityStatement() })
	writeFHIR(w, http.StatusOK, s.capDoc)
}

// respondRecord writes one record as the response of a read or write,
// through the response filter. Prefer: return=minimal omits the body.
func (s *Server) respondRecord(w http.ResponseWriter, r *http.Request, g *fhirGuard, rec record.Record, status int, location bool) {
	bodies, _, err := g.visible([]record.Record{rec}, audit.ActionRead)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	versionHeaders(w, r, rec, location)
	if len(bodies) == 0 {
		// Allowed to write but not to read back: say so without the body.
		w.WriteHeader(status)
		return
	}
	if strings.Contains(r.Header.Get("Prefer"), "return=minimal") {
		w.WriteHeader(status)
		return
	}
	writeFHIR(w, status, bodies[0])
}

func (s *Server) fhirRead(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	if r.PathValue("type") == "AuditEvent" {
		s.fhirAuditRead(w, r, g)
		return
	}
	rec, err := s.opts.Record.Read(r.Context(), g, r.PathValue("type"), r.PathValue("id"))
	if err != nil {
		s.fhirError(w, r, asMissing(err, r.PathValue("type"), notKnown(r.PathValue("type"), r.PathValue("id"))))
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.TrimPrefix(inm, "W/") == strings.TrimPrefix(rec.ETag(), "W/") {
		versionHeaders(w, r, rec, false)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.respondRecord(w, r, g, rec, http.StatusOK, false)
}

func (s *Server) fhirVRead(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	typ, id, vid := r.PathValue("type"), r.PathValue("id"), r.PathValue("vid")
	rec, err := s.opts.Record.VRead(r.Context(), g, typ, id, vid)
	if err != nil {
		s.fhirError(w, r, asMissing(err, typ, noVersion(typ, id, vid)))
		return
	}
	s.respondRecord(w, r, g, rec, http.StatusOK, false)
}

// asMissing answers every "not found" of a read of a known type with one
// message, whichever layer said it: a record out of the caller's reach and
// one that does not exist must not differ even in their wording. A
// deleted record (410, after the access was allowed) keeps its answer.
func asMissing(err error, typ string, missing error) error {
	if errs.KindOf(err) != errs.NotFound || errors.Is(err, record.ErrDeleted) || !fhir.IsResourceType(typ) {
		return err
	}
	return missing
}

// noVersion is the record's answer for a version that does not exist.
func noVersion(typ, id, vid string) error {
	if !auth.ValidPatientID(id) {
		id = "(invalid id)"
	}
	if v, err := strconv.Atoi(vid); err == nil && v > 0 {
		return errs.E(errs.NotFound, "%s/%s has no version %d", typ, id, v)
	}
	return errs.E(errs.NotFound, "%s/%s has no such version", typ, id)
}

func (s *Server) fhirCreate(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	body, err := s.readFHIRBody(r, r.PathValue("type"))
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	ifNone := r.Header.Get("If-None-Exist")
	ifNone = strings.TrimPrefix(ifNone, r.PathValue("type")+"?")
	rec, created, err := s.opts.Record.Create(r.Context(), g, r.PathValue("type"), body, ifNone)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	s.respondRecord(w, r, g, rec, status, created)
}

func (s *Server) fhirUpdate(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	body, err := s.readFHIRBody(r, r.PathValue("type"))
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	rec, created, err := s.opts.Record.Update(r.Context(), g, r.PathValue("type"), r.PathValue("id"), body, r.Header.Get("If-Match"))
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.respondRecord(w, r, g, rec, status, created)
}

func (s *Server) fhirConditionalUpdate(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	if r.URL.RawQuery == "" {
		s.fhirError(w, r, errs.E(errs.MethodNotAllowed, "PUT on a type needs search criteria (conditional update) or an id in the path"))
		return
	}
	body, err := s.readFHIRBody(r, r.PathValue("type"))
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	rec, created, err := s.opts.Record.ConditionalUpdate(r.Context(), g, r.PathValue("type"), r.URL.RawQuery, body, r.Header.Get("If-Match"))
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.respondRecord(w, r, g, rec, status, created)
}

func (s *Server) fhirDelete(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	if err := s.opts.Record.Delete(r.Context(), g, r.PathValue("type"), r.PathValue("id")); err != nil {
		s.fhirError(w, r, asMissing(err, r.PathValue("type"), notKnown(r.PathValue("type"), r.PathValue("id"))))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) fhirConditionalDelete(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	if r.URL.RawQuery == "" {
		s.fhirError(w, r, errs.E(errs.MethodNotAllowed, "DELETE on a type needs search criteria (conditional delete)"))
		return
	}
	if err := s.opts.Record.ConditionalDelete(r.Context(), g, r.PathValue("type"), r.URL.RawQuery); err != nil {
		s.fhirError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// searchParams reads a search's parameters from the query string and, for
// POST _search, the form body; a _page token replaces them all.
func (s *Server) searchParams(r *http.Request, typ string) (url.Values, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errs.E(errs.Invalid, "the query string is malformed")
	}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, bodyError(err)
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errs.E(errs.Invalid, "the _search body is not a form")
		}
		for k, v := range form {
			vals[k] = append(vals[k], v...)
		}
	}
	if tok := vals.Get("_page"); tok != "" {
		t, paged, err := s.opts.Record.OpenPage(r.Context(), tok)
		if err != nil {
			return nil, err
		}
		if t != typ {
			return nil, errs.E(errs.Invalid, "the paging token belongs to another search")
		}
		return paged, nil
	}
	return vals, nil
}

func (s *Server) fhirSearch(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	typ := r.PathValue("type")
	if typ == "AuditEvent" && r.Method == http.MethodGet {
		s.fhirAuditSearch(w, r, g)
		return
	}
	vals, err := s.searchParams(r, typ)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	q, err := s.opts.Record.ParseQuery(typ, vals)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	// The record decides the search (for the patient it names, if one)
	// and confines it to the caller's reach (g.Reach).
	res, err := s.opts.Record.Search(r.Context(), g, q)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	b, err := s.searchBundle(r, g, res)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	writeJSON(w, fhirJSON, http.StatusOK, b)
}

// searchBundle builds a searchset Bundle from a result page. The total
// is the record's count of matches within the caller's reach; it is left
// out when the response filter had to drop a match (the count included
// it) or the search could not be confined: a total is exact or absent.
func (s *Server) searchBundle(r *http.Request, g *fhirGuard, res *record.Result) (*fhir.Bundle, error) {
	q := res.Query
	base := baseURL(r)
	b := fhir.NewBundle(fhir.BundleSearchset)
	b.ID = newBundleID()
	b.Meta = &fhir.Meta{LastUpdated: fhir.FormatInstant(time.Now())}
	link := func(rel string, offset int) error {
		tok, err := s.opts.Record.SealPage(q, offset)
		if err != nil {
			return err
		}
		b.Link = append(b.Link, fhir.BundleLink{Relation: rel, URL: base + "/" + q.Type + "?_page=" + tok})
		return nil
	}
	if err := link("self", q.Offset); err != nil {
		return nil, err
	}
	if !q.SummaryCount {
		if err := link("first", 0); err != nil {
			return nil, err
		}
		if res.HasNext {
			if err := link("next", q.Offset+q.Count); err != nil {
				return nil, err
			}
		}
		if q.Offset > 0 {
			if err := link("previous", max(0, q.Offset-q.Count)); err != nil {
				return nil, err
			}
		}
	}
	matches, kept, err := g.visible(res.Matches, audit.ActionSearch)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	exact := !g.unconfined
	g.mu.Unlock()
	if res.Total != nil && exact && len(kept) == len(res.Matches) {
		b.Total = res.Total
	}
	for i, body := range matches {
		b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + "/" + kept[i].Ref(), Resource: body, Search: &fhir.BundleEntrySearch{Mode: "match"}})
	}
	included, kept, err := g.visible(res.Included, audit.ActionRead)
	if err != nil {
		return nil, err
	}
	for i, body := range included {
		b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + "/" + kept[i].Ref(), Resource: body, Search: &fhir.BundleEntrySearch{Mode: "include"}})
	}
	return b, nil
}

func newBundleID() string { return uuid.NewString() }

func (s *Server) fhirHistory(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.fhirError(w, r, errs.E(errs.Invalid, "the query string is malformed"))
		return
	}
	// An instance history decides each version as a read; a type history
	// is decided as a search and confined to the caller's reach (g.Reach).
	page, err := s.opts.Record.History(r.Context(), g, typ, id, vals)
	if err != nil {
		if id != "" {
			err = asMissing(err, typ, notKnown(typ, id))
		}
		s.fhirError(w, r, err)
		return
	}
	base := baseURL(r)
	b := fhir.NewBundle(fhir.BundleHistory)
	b.ID = newBundleID()
	self := base + "/" + typ
	if id != "" {
		self += "/" + id
	}
	self += "/_history"
	pageURL := func(offset int) string {
		v := url.Values{}
		for k, vs := range page.Params {
			v[k] = vs
		}
		v.Set("_offset", strconv.Itoa(offset))
		return self + "?" + v.Encode()
	}
	b.Link = append(b.Link, fhir.BundleLink{Relation: "self", URL: pageURL(page.Offset)})
	if page.HasNext {
		b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: pageURL(page.Offset + page.Count)})
	}
	if page.Offset > 0 {
		b.Link = append(b.Link, fhir.BundleLink{Relation: "previous", URL: pageURL(max(0, page.Offset-page.Count))})
	}
	// Every version is decided, deletes too: a delete names its record.
	bodies, kept, err := g.visible(page.Entries, audit.ActionRead)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	for i, rec := range kept {
		e := fhir.BundleEntry{
			FullURL:  base + "/" + rec.Ref(),
			Resource: bodies[i],
			Request:  &fhir.BundleEntryRequest{Method: rec.Method, URL: rec.Type + "/" + rec.ID},
			Response: &fhir.BundleEntryResponse{
				Status: historyStatus(rec), Etag: rec.ETag(),
				LastModified: fhir.FormatInstant(rec.LastUpdated),
			},
		}
		if rec.Method == "POST" {
			e.Request.URL = rec.Type
		}
		b.Entry = append(b.Entry, e)
	}
	writeJSON(w, fhirJSON, http.StatusOK, b)
}

func historyStatus(rec record.Record) string {
	switch {
	case rec.Deleted:
		return "204 No Content"
	case rec.Version == 1:
		return "201 Created"
	default:
		return "200 OK"
	}
}

func (s *Server) fhirBundle(w http.ResponseWriter, r *http.Request, g *fhirGuard) {
	body, err := s.readFHIRBody(r, "Bundle")
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	// Each entry is a request's worth of work: the request paid for one,
	// the other entries are charged before any of them runs.
	if !s.chargeMore(w, r, fhir.BundleEntryCount(body)-1) {
		return
	}
	res, err := s.opts.Record.ProcessBundle(r.Context(), g, body)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	base := baseURL(r)
	b := fhir.NewBundle(res.Type)
	b.ID = newBundleID()
	for _, er := range res.Entries {
		var e fhir.BundleEntry
		switch {
		case er.Err != nil:
			status, oo := s.entryOutcome(r, er.Err)
			e.Response = &fhir.BundleEntryResponse{Status: status, Outcome: oo}
		case er.Deleted:
			e.Response = &fhir.BundleEntryResponse{Status: "204 No Content"}
		case er.Search != nil:
			sb, err := s.searchBundle(r, g, er.Search)
			if err != nil {
				s.fhirError(w, r, err)
				return
			}
			raw, _ := json.Marshal(sb)
			e.Resource = raw
			e.Response = &fhir.BundleEntryResponse{Status: "200 OK"}
		case er.Record != nil:
			rec := *er.Record
			status := "200 OK"
			if er.Created {
				status = "201 Created"
			}
			e.FullURL = base + "/" + rec.Ref()
			e.Response = &fhir.BundleEntryResponse{
				Status: status, Location: rec.Type + "/" + rec.ID + "/_history/" + strconv.Itoa(rec.Version),
				Etag: rec.ETag(), LastModified: fhir.FormatInstant(rec.LastUpdated),
			}
			bodies, _, err := g.visible([]record.Record{rec}, audit.ActionRead)
			if err != nil {
				s.fhirError(w, r, err)
				return
			}
			if len(bodies) == 1 {
				e.Resource = bodies[0]
			}
		}
		b.Entry = append(b.Entry, e)
	}
	writeJSON(w, fhirJSON, http.StatusOK, b)
}

// entryOutcome is a batch entry's status line and OperationOutcome.
func (s *Server) entryOutcome(r *http.Request, err error) (string, json.RawMessage) {
	kind := errs.KindOf(err)
	status := statusOf(kind)
	var oo *fhir.OperationOutcome
	var ie *record.IssuesError
	switch {
	case errors.As(err, &ie):
		oo = ie.Issues.Outcome()
	case errors.Is(err, record.ErrDeleted):
		status = http.StatusGone
		oo = fhir.NewOutcome("error", "deleted", "the resource was deleted")
	default:
		msg := "internal error; quote request id " + RequestID(r.Context()) + " to the operator"
		field := ""
		if e, ok := errs.As(err); ok && kind != errs.Internal {
			msg, field = e.Message, e.Field
		} else {
			s.logger.Error("internal error in a batch entry", "request_id", RequestID(r.Context()), "error", err.Error())
		}
		oo = fhir.NewOutcome("error", fhirIssueCode(kind), msg)
		if field != "" {
			oo.Issue[0].Expression = []string{field}
		}
	}
	raw, _ := json.Marshal(oo)
	return strconv.Itoa(status) + " " + http.StatusText(status), raw
}
