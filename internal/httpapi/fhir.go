package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/record"
)

// The FHIR R4 REST surface over internal/record. Handlers are thin: check
// the format, authorize, call the record, write FHIR JSON. Every record
// goes through the request's access.Guard (the single point where the
// access policy and the audit log plug in) before it is read or written,
// and every record a response carries goes through the guard's Visible
// (per-record decision and field redaction), so an _include or a history
// entry cannot leak.
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
func (s *Server) fhirHandler(h func(w http.ResponseWriter, r *http.Request, g *careaccess.Guard)) http.HandlerFunc {
	inner := s.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		g := s.accessFor(r, p)
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

// auditingWriter appends the guard's pending audit entries when the
// response starts; if that fails, the client gets a 503 instead.
type auditingWriter struct {
	http.ResponseWriter
	g       *careaccess.Guard
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
	if err := w.g.Flush(w.r.Context()); err != nil {
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
func (s *Server) respondRecord(w http.ResponseWriter, r *http.Request, g *careaccess.Guard, rec record.Record, status int, location bool) {
	bodies, _, err := g.Visible(r.Context(), []record.Record{rec}, audit.ActionRead)
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

func (s *Server) fhirRead(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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

func (s *Server) fhirVRead(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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
// notKnown is the record's answer for a resource that does not exist.
func notKnown(typ, id string) error { return careaccess.NotKnown(typ, id) }

func noVersion(typ, id, vid string) error {
	if !auth.ValidPatientID(id) {
		id = "(invalid id)"
	}
	if v, err := strconv.Atoi(vid); err == nil && v > 0 {
		return errs.E(errs.NotFound, "%s/%s has no version %d", typ, id, v)
	}
	return errs.E(errs.NotFound, "%s/%s has no such version", typ, id)
}

func (s *Server) fhirCreate(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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

func (s *Server) fhirUpdate(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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

func (s *Server) fhirConditionalUpdate(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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

func (s *Server) fhirDelete(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	if err := s.opts.Record.Delete(r.Context(), g, r.PathValue("type"), r.PathValue("id")); err != nil {
		s.fhirError(w, r, asMissing(err, r.PathValue("type"), notKnown(r.PathValue("type"), r.PathValue("id"))))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) fhirConditionalDelete(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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

func (s *Server) fhirSearch(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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
func (s *Server) searchBundle(r *http.Request, g *careaccess.Guard, res *record.Result) (*fhir.Bundle, error) {
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
	matches, kept, err := g.Visible(r.Context(), res.Matches, audit.ActionSearch)
	if err != nil {
		return nil, err
	}
	exact := !g.Unconfined()
	if res.Total != nil && exact && len(kept) == len(res.Matches) {
		b.Total = res.Total
	}
	for i, body := range matches {
		b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + "/" + kept[i].Ref(), Resource: body, Search: &fhir.BundleEntrySearch{Mode: "match"}})
	}
	included, kept, err := g.Visible(r.Context(), res.Included, audit.ActionRead)
	if err != nil {
		return nil, err
	}
	for i, body := range included {
		b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + "/" + kept[i].Ref(), Resource: body, Search: &fhir.BundleEntrySearch{Mode: "include"}})
	}
	return b, nil
}

func newBundleID() string { return uuid.NewString() }

func (s *Server) fhirHistory(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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
	bodies, kept, err := g.Visible(r.Context(), page.Entries, audit.ActionRead)
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

func (s *Server) fhirBundle(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
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
			bodies, _, err := g.Visible(r.Context(), []record.Record{rec}, audit.ActionRead)
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
