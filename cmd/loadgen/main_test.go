package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
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
