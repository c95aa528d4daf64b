package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// statusOf maps an error kind to its HTTP status. This is the only place
// the mapping lives.
func statusOf(k errs.Kind) int {
	switch k {
	case errs.Invalid, errs.NotSupported:
		return http.StatusBadRequest
	case errs.NotFound, errs.UnsupportedType:
		return http.StatusNotFound
	case errs.Conflict:
		return http.StatusConflict
	case errs.PreconditionFailed:
		return http.StatusPreconditionFailed
	case errs.Unauthenticated:
		return http.StatusUnauthorized
	case errs.Forbidden:
		return http.StatusForbidden
	case errs.RateLimited:
		return http.StatusTooManyRequests
	case errs.Unavailable:
		return http.StatusServiceUnavailable
	case errs.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errs.UnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case errs.MethodNotAllowed:
		return http.StatusMethodNotAllowed
	case errs.Unprocessable:
		return http.StatusUnprocessableEntity
	default:
		return http.StatusInternalServerError
	}
}

// fhirIssueCode maps a kind to the FHIR IssueType code.
func fhirIssueCode(k errs.Kind) string {
	switch k {
	case errs.Invalid:
		return "invalid"
	case errs.NotFound:
		return "not-found"
	case errs.Conflict, errs.PreconditionFailed:
		return "conflict"
	case errs.Unauthenticated:
		return "login"
	case errs.Forbidden:
		return "forbidden"
	case errs.RateLimited:
		return "throttled"
	case errs.Unavailable:
		return "transient"
	case errs.TooLarge:
		return "too-long"
	case errs.UnsupportedMedia, errs.MethodNotAllowed, errs.NotSupported, errs.UnsupportedType:
		return "not-supported"
	case errs.Unprocessable:
		return "processing"
	default:
		return "exception"
	}
}

// Problem is an RFC 9457 problem details body, with careflow's extension
// members request_id and field.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Field     string `json:"field,omitempty"`
}

// problemTypeBase prefixes each kind to make the problem type URI; a URN
// because the kinds are careflow's vocabulary, not web pages.
const problemTypeBase = "urn:careflow:problem:"

func errNoRoute() *errs.Error { return errs.E(errs.NotFound, "no such route") }

func errMethodNotAllowed(method string) *errs.Error {
	return errs.E(errs.MethodNotAllowed, "method %s is not allowed on this route", method)
}

// writeError answers with err in the shape of the surface the request is on.
// Internal errors are logged here (once) with the request id and answered
// with no detail beyond that id.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	kind := errs.KindOf(err)
	if clientGone(r, kind) {
		// The client hung up and the work stopped because of it (a query
		// interrupted, a transaction rolled back): nobody reads an answer,
		// and nothing went wrong on our side. The access log shows 499
		// (client closed request) at info, not an internal error.
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	status := statusOf(kind)
	reqID := RequestID(r.Context())
	detail := "internal error; quote request id " + reqID + " to the operator"
	field := ""
	if e, ok := errs.As(err); ok && kind != errs.Internal {
		detail = e.Message
		field = e.Field
		if e.RetryAfterSeconds > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
		}
	}
	if kind == errs.Internal {
		s.logger.Error("internal error", "request_id", reqID, "error", err.Error())
	}
	if kind == errs.Unauthenticated && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="careflow"`)
	}
	if isFHIR(r) {
		oo := fhir.NewOutcome("error", fhirIssueCode(kind), detail)
		if field != "" {
			oo.Issue[0].Expression = []string{field}
		}
		writeJSON(w, "application/fhir+json", status, oo)
		return
	}
	writeJSON(w, "application/problem+json", status, Problem{
		Type:      problemTypeBase + string(kind),
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		Instance:  r.URL.Path,
		RequestID: reqID,
		Field:     field,
	})
}

// StatusClientClosedRequest is the status the access log and the metrics
// record for a request its client abandoned (nginx's 499): never sent to a
// client, which is gone.
const StatusClientClosedRequest = 499

// clientGone reports whether a failure is the client's hanging up: the
// request's context was cancelled (the server cancels it when the
// connection closes) and the error is one a cancelled query or transaction
// surfaces as (internal or unavailable), whatever its wording (drivers
// wrap the cancellation differently, or not at all).
func clientGone(r *http.Request, kind errs.Kind) bool {
	return errors.Is(r.Context().Err(), context.Canceled) && (kind == errs.Internal || kind == errs.Unavailable)
}

// writeJSON encodes v with the content type and status.
func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a programming error (an unencodable type) gets here.
		http.Error(w, `{"title":"Internal Server Error","status":500}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
