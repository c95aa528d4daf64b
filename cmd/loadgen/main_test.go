package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadgenMeasuresALoopbackServer(t *testing.T) {
	t.Parallel()
	var hits int
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer x" {
			w.WriteHeader(401)
			return
		}
		hits++
		w.WriteHeader(200)
	}))
	defer ts.Close()
	var out, errOut strings.Builder
	code := run([]string{"-url", ts.URL, "-c", "1", "-n", "50", "-warmup", "0s", "-H", "Authorization: Bearer x"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if hits != 50 || !strings.Contains(out.String(), "requests    50 (50 ok") || !strings.Contains(out.String(), "p99") {
		t.Fatalf("hits %d, report:\n%s", hits, out.String())
	}
}

func TestLoadgenRefusesRemoteTargets(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://10.0.0.1/", "http://example.org/", "ftp://127.0.0.1/"} {
		var out, errOut strings.Builder
		if code := run([]string{"-url", u, "-n", "1"}, &out, &errOut); code != 2 {
			t.Fatalf("%s: exit %d, want 2", u, code)
		}
	}
}

func TestLoadgenSendsEachRequestAUniqueBody(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || !strings.HasPrefix(string(b), `{"id":"P-`) || strings.Contains(string(b), "{{n}}") || seen[string(b)] {
			w.WriteHeader(400)
			return
		}
		seen[string(b)] = true
		w.WriteHeader(201)
	}))
	defer ts.Close()
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte(`{"id":"P-{{n}}","mrn":"M-{{n}}"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	code := run([]string{"-url", ts.URL, "-method", "POST", "-body-file", body, "-unique", "{{n}}", "-c", "4", "-n", "40", "-warmup", "0s"}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "requests    40 (40 ok") {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	// A placeholder the body lacks is a mistake, not a run of identical bodies.
	if code := run([]string{"-url", ts.URL, "-method", "POST", "-body-file", body, "-unique", "{{id}}", "-n", "1"}, &out, &errOut); code != 2 {
		t.Fatalf("missing placeholder: exit %d", code)
	}
}
