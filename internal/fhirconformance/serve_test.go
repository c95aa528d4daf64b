package fhirconformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The harness the end-to-end tests share: build careflow, run its
// commands, start `careflow serve` as a child process and call it over
// HTTP as a bearer of a token. Each test gets its own data folder (and
// PostgreSQL database), so nothing one test does is seen by another.

// request sends one HTTP request with a bearer token and returns the
// answer. A body is sent as JSON: FHIR JSON to /fhir/, plain JSON to /api/.
// Nothing here logs a body: answers may hold (synthetic) patient data.
func request(t *testing.T, method, u, token string, body []byte) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	media := "application/json"
	if strings.Contains(u, "/fhir/") {
		media = "application/fhir+json"
	}
	req.Header.Set("Accept", media)
	if body != nil {
		req.Header.Set("Content-Type", media)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, body: b}
}

// serveStorage is the flags that give careflow commands a fresh data folder
// of this test's and, on PostgreSQL, a fresh database: every command and
// the server of one test run take the same ones, so they share one store.
func serveStorage(t *testing.T, d store.Dialect) []string {
	t.Helper()
	flags := []string{"--data-dir", t.TempDir()}
	if d == store.Postgres {
		flags = append(flags, "--database", storetest.NewPostgresDatabase(t))
	}
	return flags
}

// get reads a FHIR URL as the token's bearer.
func get(t *testing.T, u, token string) reply {
	t.Helper()
	return request(t, "GET", u, token, nil)
}

// field reads "name: value" from the CLI's output.
func field(out, name string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// withoutEnv drops the named variables, and every CAREFLOW_ setting, which
// would otherwise change what the child process opens (a CAREFLOW_DATABASE
// in the developer's shell, say).
func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "CAREFLOW_") || slices.Contains(names, name) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// careflowBinary is cmd/careflow built for this test, or the prebuilt one
// CAREFLOW_E2E_BINARY names (CI may build it once for several jobs).
func careflowBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CAREFLOW_E2E_BINARY"); bin != "" {
		return bin
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on the PATH to build careflow (or set CAREFLOW_E2E_BINARY): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "careflow")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/careflow/careflow/cmd/careflow").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/careflow: %v\n%s", err, out)
	}
	return bin
}

// runCareflow runs a careflow command to completion and returns its
// standard output.
func runCareflow(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = withoutEnv(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("careflow %s: %v\n%s", args[0], err, stderr.Bytes())
	}
	return stdout.String()
}

// startServe starts `careflow serve` on a free port and returns its base
// URL once it logs that it listens. The process is stopped the way an
// operator stops it (an interrupt, then a wait) when the test ends.
func startServe(t *testing.T, bin string, common []string) string {
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json"}, common...)
	cmd := exec.Command(bin, args...)
	cmd.Env = withoutEnv(os.Environ())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		logs bytes.Buffer
	)
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mu.Lock()
			logs.Write(sc.Bytes())
			logs.WriteByte('\n')
			mu.Unlock()
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "careflow listening" {
				select {
				case addr <- line.Addr:
				default:
				}
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-scanned // Wait must not close the pipe before it is drained
		exited <- cmd.Wait()
	}()
	serverLog := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logs.String()
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("careflow serve did not stop within 30s of an interrupt\n%s", serverLog())
		}
		if t.Failed() {
			// The server's log holds routes, statuses and ids, never PHI.
			t.Logf("careflow serve log:\n%s", serverLog())
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case err := <-exited:
		exited <- err
		t.Fatalf("careflow serve exited before listening: %v\n%s", err, serverLog())
	case <-time.After(60 * time.Second):
		t.Fatalf("careflow serve did not listen within 60s\n%s", serverLog())
	}
	return ""
}
