package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The test binary doubles as the careflow binary: with CAREFLOW_TEST_MAIN
// set it runs main's code instead of the tests, so process-level tests run
// the real command without a separate build.
func TestMain(m *testing.M) {
	switch os.Getenv("CAREFLOW_TEST_MAIN") {
	case "run":
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	case "serve-with-slow-route":
		cfg, _, err := parseConfig("serve", os.Args[2:], os.Getenv)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(serve(context.Background(), cfg, os.Stderr, serveHooks{wrap: slowRoute}))
	}
	os.Exit(m.Run())
}

// slowRoute adds GET /test/slow, which takes two seconds, in front of the
// real handler.
func slowRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/test/slow" {
			next.ServeHTTP(w, r)
			return
		}
		fmt.Fprintln(os.Stderr, `{"msg":"slow request started"}`)
		time.Sleep(2 * time.Second) // the slow work a real handler would do
		fmt.Fprint(w, "finished")
	})
}

// child is a careflow process under test.
type child struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []string
	seen chan struct{} // signalled on every new log line
	done chan struct{}
	err  error
}

func startChild(t testing.TB, dir string, mode string, env []string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CAREFLOW_TEST_MAIN="+mode), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, seen: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			c.mu.Lock()
			c.logs = append(c.logs, sc.Text())
			c.mu.Unlock()
			select {
			case c.seen <- struct{}{}:
			default:
			}
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("child logs:\n%s", strings.Join(c.snapshot(), "\n"))
		}
	})
	return c
}

func (c *child) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.logs...)
}

// waitLog waits for a log line containing s and returns it.
func (c *child) waitLog(t *testing.T, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, l := range c.snapshot() {
			if strings.Contains(l, s) {
				return l
			}
		}
		select {
		case <-c.seen:
		case <-c.done:
			for _, l := range c.snapshot() {
				if strings.Contains(l, s) {
					return l
				}
			}
			t.Fatalf("process exited (%v) before logging %q", c.err, s)
		case <-deadline:
			t.Fatalf("no log line containing %q within %v", s, timeout)
		}
	}
}

// addr waits for the listening line and returns the bound address.
func (c *child) addr(t *testing.T) string {
	t.Helper()
	line := c.waitLog(t, "careflow listening", 30*time.Second)
	var v struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil || v.Addr == "" {
		t.Fatalf("listening line %q: %v", line, err)
	}
	return v.Addr
}

// exitCode waits for the process and returns its exit code.
func (c *child) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v", timeout)
	}
	return c.cmd.ProcessState.ExitCode()
}

func getOK(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, b)
	}
}

// A new user's first run: no flags, no set-up. careflow answers /healthz
// within five seconds and makes its SQLite file in ./careflow-data.
func TestFirstRunNeedsNoSetUp(t *testing.T) {
	// Not parallel: it times the first start, which the package's other
	// children (each a race-instrumented careflow) would slow down.
	dir := t.TempDir()
	start := time.Now()
	// Port 0 only because tests run side by side; everything else is default.
	c := startChild(t, dir, "run", []string{"CAREFLOW_LISTEN=127.0.0.1:0"}, "serve")
	addr := c.addr(t)
	getOK(t, "http://"+addr+"/healthz")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("first /healthz answered after %v, want within 5s", took)
	}
	getOK(t, "http://"+addr+"/readyz")
	info, err := os.Stat(filepath.Join(dir, "careflow-data", store.DefaultSQLiteFile))
	if err != nil || info.Size() == 0 {
		t.Fatalf("SQLite file not created in the data dir: %v", err)
	}
	dinfo, err := os.Stat(filepath.Join(dir, "careflow-data"))
	if err != nil || dinfo.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v (%v), want 0700", dinfo.Mode().Perm(), err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

func TestServeOnPostgres(t *testing.T) {
	t.Parallel()
	url := storetest.NewPostgresDatabase(t)
	c := startChild(t, t.TempDir(), "run", nil, "serve", "--listen", "127.0.0.1:0", "--database", url)
	addr := c.addr(t)
	getOK(t, "http://"+addr+"/healthz")
	getOK(t, "http://"+addr+"/readyz")
	if line := c.waitLog(t, "careflow listening", time.Second); !strings.Contains(line, `"database":"postgres"`) || strings.Contains(line, "postgres@") {
		t.Fatalf("listening line %s: want the postgres dialect and no credentials", line)
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

// Two `careflow migrate` started at the same moment against one database
// both succeed, and each migration is applied once.
func TestConcurrentMigrateCommands(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			dir := t.TempDir()
			url := filepath.Join(dir, "shared.db")
			if d == store.Postgres {
				url = storetest.NewPostgresDatabase(t)
			}
			a := startChild(t, dir, "run", nil, "migrate", "--database", url)
			b := startChild(t, dir, "run", nil, "migrate", "--database", url)
			if ca, cb := a.exitCode(t, 60*time.Second), b.exitCode(t, 60*time.Second); ca != 0 || cb != 0 {
				t.Fatalf("exit codes %d and %d, want 0 and 0", ca, cb)
			}
			db, err := store.Open(context.Background(), store.Config{URL: url})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			all, _ := store.Migrations(d)
			var rows, distinct int
			if err := db.Reader().QueryRow(context.Background(), `SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&rows, &distinct); err != nil {
				t.Fatal(err)
			}
			if rows != len(all) || distinct != len(all) {
				t.Fatalf("schema_migrations has %d rows (%d distinct), want %d", rows, distinct, len(all))
			}
			applied := 0
			for _, c := range []*child{a, b} {
				for _, l := range c.snapshot() {
					if strings.Contains(l, "migration applied") {
						applied++
					}
				}
			}
			if applied != len(all) {
				t.Fatalf("the two processes logged %d applied migrations, want %d", applied, len(all))
			}
		})
	}
}

// SIGTERM while a slow request is in flight: the request finishes with its
// response, new connections are refused, and the process exits 0.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	c := startChild(t, t.TempDir(), "serve-with-slow-route", nil, "serve", "--listen", "127.0.0.1:0")
	addr := c.addr(t)
	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/test/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	c.waitLog(t, "slow request started", 10*time.Second)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "shutting down", 10*time.Second)
	// The listener closes just after that log line: within a moment a new
	// connection is refused, while the slow request is still running.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	refused := false
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			refused = true
			break
		}
		resp.Body.Close()
	}
	if !refused {
		t.Fatal("new connections were still accepted a second after SIGTERM")
	}
	select {
	case r := <-got:
		t.Fatalf("the slow request ended (%d %q %v) before new connections were refused", r.status, r.body, r.err)
	default:
	}
	r := <-got
	if r.err != nil || r.status != 200 || r.body != "finished" {
		t.Fatalf("slow request: %d %q %v; want 200 finished", r.status, r.body, r.err)
	}
	if code := c.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
}

func TestBadConfigurationExits2WithOneSentence(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown flag", nil, []string{"serve", "--colour", "red"}, "unknown flag --colour"},
		{"bad listen", nil, []string{"serve", "--listen", "nowhere"}, "--listen=nowhere is invalid"},
		{"bad port", nil, []string{"serve", "--listen", "127.0.0.1:99999"}, "port"},
		{"bad duration", nil, []string{"serve", "--write-timeout", "-1s"}, "--write-timeout=-1s is invalid"},
		{"bad database scheme", nil, []string{"migrate", "--database", "mysql://h/db"}, "unsupported scheme"},
		{"bad env", []string{"CAREFLOW_LOG_FORMAT=xml"}, []string{"serve"}, "CAREFLOW_LOG_FORMAT"},
		{"unknown command", nil, []string{"serf"}, `unknown command "serf"`},
		{"stray argument", nil, []string{"migrate", "now"}, `unexpected argument "now"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr strings.Builder
			getenv := func(k string) string {
				for _, kv := range c.env {
					if name, v, _ := strings.Cut(kv, "="); name == k {
						return v
					}
				}
				return ""
			}
			code := run(context.Background(), c.args, &stdout, &stderr, getenv)
			if code != 2 {
				t.Fatalf("exit code %d, want 2 (stderr %q)", code, stderr.String())
			}
			msg := stderr.String()
			if !strings.Contains(msg, c.want) {
				t.Fatalf("stderr %q does not name %q", msg, c.want)
			}
			if strings.Count(strings.TrimSpace(msg), "\n") != 0 || !strings.HasSuffix(strings.TrimSpace(msg), ".") {
				t.Fatalf("stderr %q is not one sentence on one line", msg)
			}
		})
	}
}

func TestFlagsBeatEnvironmentWhichBeatsDefaults(t *testing.T) {
	t.Parallel()
	env := map[string]string{"CAREFLOW_LISTEN": "127.0.0.1:9000", "CAREFLOW_DATA_DIR": "/srv/cf"}
	cfg, _, err := parseConfig("serve", []string{"--listen", "127.0.0.1:9001"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9001" || cfg.DataDir != "/srv/cf" || cfg.LogFormat != "json" {
		t.Fatalf("config %+v", cfg)
	}
}

func TestHelpListsEveryCommandAndFlag(t *testing.T) {
	t.Parallel()
	var out, errOut strings.Builder
	if code := run(context.Background(), []string{"help"}, &out, &errOut, func(string) string { return "" }); code != 0 {
		t.Fatalf("help exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out.String(), "  "+c.name+" ") {
			t.Errorf("help does not list %s", c.name)
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"serve", "--help"}, &out, &errOut, func(string) string { return "" }); code != 0 {
		t.Fatalf("serve --help exit %d", code)
	}
	for _, o := range optionsFor("serve") {
		if !strings.Contains(out.String(), "--"+o.name+" ") || !strings.Contains(out.String(), envName(o.name)) {
			t.Errorf("serve help lacks --%s or %s", o.name, envName(o.name))
		}
	}
}

// The README is the front door: every command and every flag careflow
// takes is in it, with its environment variable.
func TestREADMENamesEveryCommandAndFlag(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, c := range commands() {
		if !strings.Contains(readme, "careflow "+c.name) {
			t.Errorf("README does not mention `careflow %s`", c.name)
		}
	}
	for _, o := range options() {
		if !strings.Contains(readme, "`--"+o.name+"`") || !strings.Contains(readme, envName(o.name)) {
			t.Errorf("README lacks the flag --%s or its variable %s", o.name, envName(o.name))
		}
	}
}
