package outbound

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		entry string
		ok    bool
	}{
		{"payer.example", true},
		{"payer.example:8443", true},
		{"127.0.0.1:9000", true},
		{"[::1]:9000", true},
		{"::1", true},
		{"payer.example:0", false},
		{"payer.example:http", false},
		{"http://payer.example", false},
		{"payer example", false},
		{"-payer.example", false},
	} {
		if err := ValidHost(tc.entry); (err == nil) != tc.ok {
			t.Errorf("ValidHost(%q) = %v, want ok %v", tc.entry, err, tc.ok)
		}
	}
	if _, err := New(Config{Hosts: []string{"payer.example", "http://payer.example"}}); err == nil {
		t.Error("New took a URL as a host")
	}
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAllowedNamesAListedHostAndPort(t *testing.T) {
	t.Parallel()
	c := newClient(t, Config{Hosts: []string{"127.0.0.1:9000", "payer.example", "[::1]:9001"}})
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:9000/effect", true},
		{"http://payer.example/effect", true},
		{"http://PAYER.example:80/effect", true},
		{"https://payer.example/effect", true},
		{"http://[::1]:9001/x", true},
		{"http://127.0.0.1:9001/effect", false},        // another port
		{"http://127.0.0.1/effect", false},             // loopback is not implied
		{"http://localhost:9000/effect", false},        // nor is localhost
		{"http://payer.example:8080/effect", false},    // a bare host is its scheme's port only
		{"http://169.254.169.254/latest", false},       // cloud metadata
		{"http://user:pw@payer.example/effect", false}, // credentials
		{"ftp://payer.example/effect", false},
		{"payer.example/effect", false},
	} {
		err := c.Allowed(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("Allowed(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
		if err != nil && KindOf(err) != NotAllowed {
			t.Errorf("Allowed(%q) = %v, want kind %s", tc.url, err, NotAllowed)
		}
		if err != nil && strings.Contains(err.Error(), "example") {
			t.Errorf("the error repeats the URL: %v", err)
		}
	}
	if err := newClient(t, Config{}).Allowed("http://127.0.0.1:9000/effect"); KindOf(err) != NotAllowed {
		t.Errorf("a client with no hosts allowed a call: %v", err)
	}
}

// counting is a test server counting its calls.
func counting(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func get(t *testing.T, c *Client, url string) (*Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	return c.Do(context.Background(), req)
}

func hostOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

// A loopback server is reached only when it is listed, and an unlisted one
// gets nothing: the check comes before the request is sent.
func TestDoSendsNothingToAHostOffTheList(t *testing.T) {
	t.Parallel()
	listed, listedCalls := counting(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	other, otherCalls := counting(t, nil)
	c := newClient(t, Config{Hosts: []string{hostOf(listed)}})

	resp, err := get(t, c, listed.URL+"/x")
	if err != nil || resp.StatusCode != 200 || string(resp.Body) != "ok" {
		t.Fatalf("listed host: %+v, %v", resp, err)
	}
	_, err = get(t, c, other.URL+"/x")
	if KindOf(err) != NotAllowed || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("unlisted host: %v, want %s without the URL", err, NotAllowed)
	}
	if listedCalls.Load() != 1 || otherCalls.Load() != 0 {
		t.Fatalf("calls: listed %d, other %d; want 1, 0", listedCalls.Load(), otherCalls.Load())
	}
}

// A redirect from a listed host to another one (listed or not) is not
// followed: the caller sees Redirected with the status.
func TestDoFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	elsewhere, elsewhereCalls := counting(t, nil)
	listed, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/stolen", http.StatusTemporaryRedirect)
	})
	c := newClient(t, Config{Hosts: []string{hostOf(listed), hostOf(elsewhere)}})
	_, err := get(t, c, listed.URL+"/redirect")
	var oe *Error
	if KindOf(err) != Redirected || !errors.As(err, &oe) || oe.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("redirect: %v, want %s with 307", err, Redirected)
	}
	if elsewhereCalls.Load() != 0 {
		t.Fatalf("the redirect was followed: the other host got %d calls", elsewhereCalls.Load())
	}
}

// A body over the limit is refused, not truncated; one at the limit is
// taken whole.
func TestDoLimitsTheResponseBody(t *testing.T) {
	t.Parallel()
	const limit = 1024
	srv, _ := counting(t, func(w http.ResponseWriter, r *http.Request) {
		n := limit
		if r.URL.Path == "/big" {
			n = limit + 1
		}
		_, _ = w.Write([]byte(strings.Repeat("x", n)))
	})
	c := newClient(t, Config{Hosts: []string{hostOf(srv)}, MaxResponse: limit})
	resp, err := get(t, c, srv.URL+"/fits")
	if err != nil || len(resp.Body) != limit {
		t.Fatalf("a body at the limit: %v", err)
	}
	_, err = get(t, c, srv.URL+"/big")
	var oe *Error
	if KindOf(err) != TooLarge || !errors.As(err, &oe) || oe.StatusCode != 200 {
		t.Fatalf("a body over the limit: %v, want %s with 200", err, TooLarge)
	}
}

// The total timeout ends a call whose host does not answer.
func TestDoTimesOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv, _ := counting(t, func(http.ResponseWriter, *http.Request) { <-release })
	t.Cleanup(func() { close(release) })
	c := newClient(t, Config{Hosts: []string{hostOf(srv)}, Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := get(t, c, srv.URL+"/slow")
	if err == nil || KindOf(err) != "" {
		t.Fatalf("a host that does not answer: %v, want a timeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the call took %s", took)
	}
	if strings.Contains(err.Error(), "/slow") {
		t.Fatalf("the error repeats the URL: %v", err)
	}
}
