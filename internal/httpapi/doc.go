// Package httpapi is careflow's HTTP surface: /api/v1 (JSON), /fhir/R4 (FHIR
// REST) and the operational endpoints (/healthz, /readyz, /metrics).
//
// Handlers are thin: decode and validate the input, call the domain, encode
// the result. Every error goes through one function (writeError) that maps
// an errs.Kind to a status code and to an RFC 9457 problem+json body on
// /api/... or a FHIR OperationOutcome on /fhir/..., so clients see one
// consistent shape and internals never leak: an internal error's body holds
// only the request id.
//
// Middleware order, outermost first: request id → access log and metrics →
// panic recovery → security headers → body size limit → routing. Every
// route is registered through Server.handle, which puts its guard in front
// of the handler: client address (X-Forwarded-For only from trusted
// proxies) → per-address rate limit → bearer-token authentication unless the
// route is on the public list (authn.go) → per-user rate limit. A route is
// therefore protected unless it is listed as public on purpose. The guard
// remembers the buckets it charged, so a handler whose request turns out to
// be many (a FHIR batch of N entries) charges the rest before doing any of
// it (ratecharge.go). An incoming X-Request-ID is kept only in the form
// careflow issues, as request ids are written verbatim into logs and audit
// entries. JSON bodies are checked by fhir.CheckJSON before encoding/json
// decodes them (decode.go): no duplicate keys, no lone surrogates, no
// control characters. A FHIR route naming a type the access policy does
// not serve answers 404 not-supported before the caller's rules are looked
// at (fhir_types.go), so the answer is the same for everyone.
// The access log records method, route pattern, status, bytes and duration;
// never query strings, bodies or headers, which may carry PHI.
package httpapi
