// Package outbound is the server's one way to call another host over HTTP:
// a Client that reaches only the hosts its operator listed. The diagnostics
// workflow's effect step uses it, and the payer adapters will.
//
// Invariants:
//   - A request goes out only to an http(s) URL, without credentials in it,
//     whose host and port are on the client's list ("host:port", or "host"
//     for the scheme's default port). Nothing is implied: not loopback, not
//     localhost, not another port of a listed host. A URL often comes from
//     input (a run's effect_url, a payer's endpoint), and without the list
//     the server would be a way to reach whatever it can reach (loopback
//     services, cloud metadata, the intranet).
//   - Redirects are never followed: a redirect would carry the request (and
//     its idempotency key) to a host nobody listed. A 3xx is answered as an
//     Error of kind Redirected, with its status.
//   - Every call has a connect timeout and a total timeout, and a response
//     body larger than the limit is an Error of kind TooLarge, not a
//     truncated body taken for the whole.
//   - The client is its own http.Client and transport; never
//     http.DefaultClient, whose settings any package could change.
//   - Errors never repeat the URL (it may be input): a network error is
//     returned without the url.Error wrapper that names it.
package outbound
