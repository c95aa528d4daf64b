package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultTimeout        = 10 * time.Second
	DefaultMaxResponse    = 1 << 20
)

// Config configures a Client.
type Config struct {
	// Hosts are the only hosts the client calls: "host:port", "[v6]:port",
	// or "host" for the scheme's default port (80 for http, 443 for
	// https). Each must pass ValidHost. Empty allows nothing.
	Hosts []string
	// ConnectTimeout bounds the TCP connect and the TLS handshake (0:
	// DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// Timeout bounds the whole call, the response body's reading included
	// (0: DefaultTimeout).
	Timeout time.Duration
	// MaxResponse is the largest response body read, in bytes (0:
	// DefaultMaxResponse).
	MaxResponse int64
}

// Client makes HTTP calls to the hosts of its Config only. It is safe for
// concurrent use.
type Client struct {
	hosts []string
	max   int64
	hc    *http.Client
}

// New returns a client for cfg, or an error naming the first entry of
// cfg.Hosts that is not a host.
func New(cfg Config) (*Client, error) {
	for _, h := range cfg.Hosts {
		if err := ValidHost(h); err != nil {
			return nil, fmt.Errorf("outbound host %q: %w", h, err)
		}
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = DefaultMaxResponse
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = cfg.ConnectTimeout
	return &Client{
		hosts: slices.Clone(cfg.Hosts),
		max:   cfg.MaxResponse,
		hc: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// A 3xx is returned as it is and refused in Do.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Kind says why Do refused a call or its answer.
type Kind string

// The kinds of Error.
const (
	// NotAllowed: the URL is not an http(s) URL without credentials to a
	// listed host; nothing was sent.
	NotAllowed Kind = "not_allowed"
	// Redirected: the host answered a 3xx, which is not followed.
	Redirected Kind = "redirected"
	// TooLarge: the response body is over the client's limit.
	TooLarge Kind = "too_large"
)

// Error is a call Do refused, or an answer it would not take. Its message
// never repeats the URL.
type Error struct {
	Kind Kind
	// StatusCode is the answer's status for Redirected and TooLarge (the
	// call was made and answered); 0 for NotAllowed.
	StatusCode int
	msg        string
}

func (e *Error) Error() string { return e.msg }

// KindOf returns the Kind of an *Error in err's chain, or "" when there is
// none (a network error, a timeout, a cancelled context).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// Response is an answer Do took: its status, header and whole body.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// Allowed reports (nil) whether a call to raw would go out: an http(s) URL
// without credentials whose host and port are on the list. Callers check
// input with it before they keep it (a run's start); Do checks again.
func (c *Client) Allowed(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return &Error{Kind: NotAllowed, msg: "the URL must be an http(s) URL without credentials"}
	}
	return c.allowedURL(u)
}

func (c *Client) allowedURL(u *url.URL) error {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return &Error{Kind: NotAllowed, msg: "the URL must be an http(s) URL without credentials"}
	}
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	target := net.JoinHostPort(strings.ToLower(u.Hostname()), port)
	for _, h := range c.hosts {
		if hostMatches(h, target, u.Scheme) {
			return nil
		}
	}
	return &Error{Kind: NotAllowed, msg: "the URL's host is not one of the allowed hosts"}
}

// Do sends req (with ctx) if its URL is allowed, and reads the whole
// answer. A 3xx is an Error of kind Redirected; a body over the limit an
// Error of kind TooLarge; both carry the status. Any other status is the
// caller's to judge.
func (c *Client) Do(ctx context.Context, req *http.Request) (*Response, error) {
	if err := c.allowedURL(req.URL); err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req.WithContext(ctx))
	if err != nil {
		// url.Error names the URL, which may be input.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, &Error{Kind: Redirected, StatusCode: resp.StatusCode,
			msg: "answered " + strconv.Itoa(resp.StatusCode) + ", a redirect, which is not followed"}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(body)) > c.max {
		return nil, &Error{Kind: TooLarge, StatusCode: resp.StatusCode,
			msg: fmt.Sprintf("answered %d with a body over %d bytes", resp.StatusCode, c.max)}
	}
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// hostMatches reports whether an allow-list entry ("host:port", or "host"
// for the scheme's default port) admits target ("host:port", host in lower
// case).
func hostMatches(entry, target, scheme string) bool {
	entry = strings.ToLower(strings.TrimSpace(entry))
	if _, _, err := net.SplitHostPort(entry); err != nil {
		entry = net.JoinHostPort(strings.Trim(entry, "[]"), defaultPort(scheme))
	}
	return entry == target
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// ValidHost checks an allow-list entry: a host name or IP address,
// optionally with a port ("host:port", "[v6]:port").
func ValidHost(entry string) error {
	if strings.ContainsAny(entry, "/@?#") {
		return errors.New("must be a host or host:port, not a URL")
	}
	host, port := entry, ""
	if h, p, err := net.SplitHostPort(entry); err == nil {
		host, port = h, p
	}
	host = strings.Trim(host, "[]")
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return errors.New("port must be a number from 1 to 65535")
		}
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if !hostName.MatchString(host) || len(host) > 253 {
		return errors.New("must be a host name or IP address, optionally with :port")
	}
	return nil
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
