// Package errs holds careflow's one error type. Every error that crosses a
// package boundary towards a user carries a Kind; the HTTP layer maps kinds
// to status codes, RFC 9457 problem bodies and FHIR OperationOutcomes in one
// place, so a domain package never thinks about HTTP.
//
// Messages are written for the person who sent the request: they name the
// field or parameter at fault and never contain PHI. Wrapped causes are kept
// for logs (which are themselves PHI-free) but are never shown to clients
// unless the kind is a client error and the cause is another *Error.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies an error by what the caller should do about it.
type Kind string

// The kinds. Their order in this list carries no meaning.
const (
	Invalid            Kind = "invalid"             // the request is malformed or breaks a rule
	NotFound           Kind = "not_found"           // the thing does not exist (or the caller may not know it does)
	Conflict           Kind = "conflict"            // the state changed underneath the caller, or a duplicate
	PreconditionFailed Kind = "precondition_failed" // If-Match or a version check failed
	Unauthenticated    Kind = "unauthenticated"     // no valid credentials
	Forbidden          Kind = "forbidden"           // valid credentials, not allowed
	RateLimited        Kind = "rate_limited"        // slow down; see Retry-After
	Unavailable        Kind = "unavailable"         // a dependency is down; try again later
	Internal           Kind = "internal"            // a bug or an unexpected failure
	TooLarge           Kind = "too_large"           // the body is over the configured limit
	UnsupportedMedia   Kind = "unsupported_media"   // the body or Accept format is not one we speak
	MethodNotAllowed   Kind = "method_not_allowed"  // the route exists for other methods
	Unprocessable      Kind = "unprocessable"       // well-formed but semantically invalid (FHIR validation)
	NotSupported       Kind = "not_supported"       // well-formed, but not offered to this caller (a search over an element its role may not see)
	UnsupportedType    Kind = "unsupported_type"    // a resource type the server does not serve, to anyone (FHIR: 404 not-supported)
)

// Error is careflow's error value.
type Error struct {
	Kind Kind
	// Message is safe to show to the client: no PHI, no internals.
	Message string
	// Field optionally names the input element at fault (a JSON pointer, a
	// FHIR path or a flag name).
	Field string
	// Err is the wrapped cause, for logs and errors.Is/As.
	Err error
	// RetryAfterSeconds is set on RateLimited and Unavailable errors when the
	// caller should wait a known time.
	RetryAfterSeconds int
}

// E builds an *Error of a kind with a formatted message.
func E(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error of a kind around a cause. The message is what the
// client sees; the cause is only for logs.
func Wrap(kind Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...), Err: err}
}

// InField returns a copy of e naming the field at fault.
func (e *Error) InField(field string) *Error {
	c := *e
	c.Field = field
	return &c
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = string(e.Kind)
	}
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of the first *Error in err's chain, or Internal
// when there is none (an unclassified error is a bug until proven otherwise).
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Is reports whether err carries the given kind.
func Is(err error, kind Kind) bool { return err != nil && KindOf(err) == kind }

// As returns the first *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
