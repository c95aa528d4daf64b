package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/terminology"
)

// The terminology operations of the FHIR surface: CodeSystem/$validate-code
// and CodeSystem/$lookup at type level, by GET (inputs in the query string)
// or POST (inputs in a Parameters body). Handlers are decode → call the
// terminology service → encode; what an input means is the terminology
// package's business, so both forms go through its Parse* functions and
// cannot drift apart.
//
// Answers hold code-system content, never patient data, so any
// authenticated principal may ask, whatever its role; the route guard
// (authn.go) has already required a token. Nothing here is audited for the
// same reason. The one input that is PHI, an Egyptian national ID checked
// through $validate-code, is refused in a URL (query strings end up in
// proxy and browser logs) and never echoed by the service.

// The operation paths. In a ServeMux pattern "$" is an ordinary character
// (only "{$}" is special), so these are literal segments; they are more
// specific than the record's "/fhir/R4/{type}/{id}" and win over it.
const (
	validateCodePath = "/fhir/R4/CodeSystem/$validate-code"
	lookupPath       = "/fhir/R4/CodeSystem/$lookup"
)

// maxParametersBytes bounds a Parameters body. The inputs are a handful of
// short strings; anything near the server-wide limit is not a terminology
// request.
const maxParametersBytes = 64 << 10

// terminologyTimeout is the deadline of one operation: two indexed reads.
const terminologyTimeout = 10 * time.Second

// fhirJSONUTF8 is the content type of every terminology answer.
const fhirJSONUTF8 = "application/fhir+json; charset=utf-8"

func (s *Server) terminologyRoutes() {
	if s.opts.Terminology == nil {
		return
	}
	validate := terminologyHandler(s, validateCodeQuery, validateCodeBody, (*terminology.Service).ValidateCodeOperation)
	lookup := terminologyHandler(s, terminology.ParseLookupQuery, terminology.ParseLookupParameters, (*terminology.Service).LookupOperation)
	s.handleFunc("GET "+validateCodePath, validate)
	s.handleFunc("POST "+validateCodePath, validate)
	s.handleFunc("GET "+lookupPath, lookup)
	s.handleFunc("POST "+lookupPath, lookup)
}

// terminologyHandler builds one operation's handler from how to read its
// inputs from a query string and from a Parameters body, and how to run it.
func terminologyHandler[In any](
	s *Server,
	fromQuery func(url.Values) (In, error),
	fromBody func(*terminology.Parameters) (In, error),
	run func(*terminology.Service, context.Context, In) (*terminology.Parameters, error),
) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The guard has authenticated the request; checking again here
		// keeps the handler closed if it is ever mounted without the guard.
		if _, ok := auth.PrincipalFrom(r.Context()); !ok {
			s.writeError(w, r, errs.E(errs.Unauthenticated, "this route requires a bearer token"))
			return
		}
		in, err := terminologyInput(r, fromQuery, fromBody)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), terminologyTimeout)
		defer cancel()
		out, err := run(s.opts.Terminology, ctx, in)
		if err != nil {
			if ctx.Err() != nil && errs.KindOf(err) == errs.Internal {
				// A slow database is a reason to retry, not a bug.
				err = errs.Wrap(errs.Unavailable, err, "the terminology look-up did not finish in time; try again")
			}
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, fhirJSONUTF8, http.StatusOK, out)
	}
}

// terminologyInput checks the formats the client asked for and sent, then
// reads the inputs from the query string (GET) or the body (POST).
func terminologyInput[In any](r *http.Request, fromQuery func(url.Values) (In, error), fromBody func(*terminology.Parameters) (In, error)) (In, error) {
	var zero In
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return zero, errs.E(errs.Invalid, "the query string is malformed")
	}
	if err := acceptsFHIRJSON(r); err != nil {
		return zero, err
	}
	if r.Method != http.MethodPost {
		return fromQuery(q)
	}
	for name := range q {
		// Inputs in both places would leave one of them ignored.
		if !strings.HasPrefix(name, "_") {
			return zero, errs.E(errs.Invalid, "with POST, send the inputs in the Parameters body, not the query string (found %s)", name).InField(name)
		}
	}
	p, err := readParameters(r)
	if err != nil {
		return zero, err
	}
	return fromBody(p)
}

// acceptsFHIRJSON is the FHIR surface's format check (fhirNegotiate) made
// stricter for a Parameters body: a POST must declare a JSON Content-Type
// (the body is a FHIR resource and must say so) in UTF-8.
func acceptsFHIRJSON(r *http.Request) error {
	if err := fhirNegotiate(r); err != nil {
		return err
	}
	if r.Method != http.MethodPost {
		return nil
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !jsonFormat(mt) {
		return errs.E(errs.UnsupportedMedia, "send the Parameters body as application/fhir+json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return errs.E(errs.UnsupportedMedia, "FHIR JSON is UTF-8; charset %s is not accepted", cs)
	}
	return nil
}

// parametersBody is a Parameters resource as it arrives. The resource
// elements every FHIR resource may carry are accepted and ignored; any
// other unknown member is refused, so an input careflow does not read (a
// valueInteger, a part) cannot pass unnoticed.
type parametersBody struct {
	terminology.Parameters
	ID            json.RawMessage `json:"id"`
	Meta          json.RawMessage `json:"meta"`
	ImplicitRules json.RawMessage `json:"implicitRules"`
	Language      json.RawMessage `json:"language"`
}

func readParameters(r *http.Request) (*terminology.Parameters, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxParametersBytes+1))
	if err != nil {
		return nil, bodyError(err)
	}
	if len(body) > maxParametersBytes {
		return nil, errTooLarge(maxParametersBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errs.E(errs.Invalid, "request body is empty; a Parameters resource is required")
	}
	var p parametersBody
	if err := decodeStrict(body, &p); err != nil {
		return nil, err
	}
	return &p.Parameters, nil
}

// validateCodeQuery reads $validate-code inputs from a query string. R4
// names the code system "url" here but "system" in $lookup and in
// ValueSet/$validate-code, and clients send either; "system" is taken as
// "url" rather than refused. An Egyptian national ID is refused: it is PHI
// and must not travel in a URL.
func validateCodeQuery(q url.Values) (terminology.ValidateCodeInput, error) {
	if sys, ok := q["system"]; ok {
		if _, both := q["url"]; both {
			return terminology.ValidateCodeInput{}, errs.E(errs.Invalid, "give the code system as url or as system, not both").InField("system")
		}
		q = cloneValues(q)
		delete(q, "system")
		q["url"] = sys
	}
	in, err := terminology.ParseValidateCodeQuery(q)
	if err != nil {
		return in, err
	}
	if in.URL == terminology.SystemEgyptNationalID {
		return terminology.ValidateCodeInput{}, errs.E(errs.Invalid,
			"a national ID is personal data and must not be sent in a URL; POST a Parameters body instead").InField("url")
	}
	return in, nil
}

// validateCodeBody reads $validate-code inputs from a Parameters body,
// taking a "system" parameter as "url" as validateCodeQuery does.
func validateCodeBody(p *terminology.Parameters) (terminology.ValidateCodeInput, error) {
	hasURL, hasSystem := false, false
	for _, prm := range p.Parameter {
		hasURL = hasURL || prm.Name == "url"
		hasSystem = hasSystem || prm.Name == "system"
	}
	if hasSystem {
		if hasURL {
			return terminology.ValidateCodeInput{}, errs.E(errs.Invalid, "give the code system as url or as system, not both").InField("system")
		}
		renamed := *p
		renamed.Parameter = append([]terminology.Parameter(nil), p.Parameter...)
		for i := range renamed.Parameter {
			if renamed.Parameter[i].Name == "system" {
				renamed.Parameter[i].Name = "url"
			}
		}
		p = &renamed
	}
	return terminology.ParseValidateCodeParameters(p)
}

func cloneValues(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = v
	}
	return out
}
