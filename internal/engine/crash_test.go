package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The crash tests kill `careflow serve` child processes, built from
// cmd/careflow (or given prebuilt).
const (
	envSoak   = "CAREFLOW_SOAK"         // "1": full-size crash and two-node tests
	envBinary = "CAREFLOW_CRASH_BINARY" // a careflow binary to crash instead of building cmd/careflow
	readyLine = "workflow engine started"
	// listeningLine is what serve logs once it accepts requests, which it
	// does only after the engine has started.
	listeningLine = "careflow listening"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if serveBinaryOnce.dir != "" {
		_ = os.RemoveAll(serveBinaryOnce.dir)
	}
	os.Exit(code)
}

// effectReceiver is the outside world of the crash tests: it applies an
// effect once per Idempotency-Key and counts every call.
type effectReceiver struct {
	mu     sync.Mutex
	byKey  map[string]int
	calls  int
	server *httptest.Server
}

func newEffectReceiver(t *testing.T) *effectReceiver {
	r := &effectReceiver{byKey: map[string]int{}}
	r.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		key := req.Header.Get("Idempotency-Key")
		if key == "" {
			http.Error(w, "no key", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.calls++
		r.byKey[key]++
		r.mu.Unlock()
		// The effect is applied; the answer takes a moment, as a payer's
		// does, which widens the window in which a crash loses it.
		<-time.After(time.Duration(rand.IntN(5)) * time.Millisecond)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.server.Close)
	return r
}

func (r *effectReceiver) snapshot() (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int, len(r.byKey))
	for k, v := range r.byKey {
		m[k] = v
	}
	return m, r.calls
}

// crashChild starts and kills `careflow serve` processes.
type crashChild struct {
	t      *testing.T
	dbURL  string
	binary string // the careflow binary (serveBinary)
	dir    string
	// effectHosts is the serve's --diagnostics-effect-hosts.
	effectHosts string
	// args are more serve flags.
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// serveBinaryOnce holds the careflow binary the crash tests run, built once
// per test process.
var serveBinaryOnce struct {
	sync.Once
	path string
	err  string
	dir  string
}

// serveBinary returns a careflow binary built from cmd/careflow (or the one
// CAREFLOW_CRASH_BINARY names). A binary that cannot be built fails the
// test: the crash tests exist to crash the real server.
func serveBinary(t *testing.T) string {
	t.Helper()
	serveBinaryOnce.Do(func() {
		if bin := os.Getenv(envBinary); bin != "" {
			// A prebuilt careflow binary, e.g. a release candidate.
			serveBinaryOnce.path = bin
			return
		}
		dir, err := os.MkdirTemp("", "careflow-bin-")
		if err != nil {
			serveBinaryOnce.err = err.Error()
			return
		}
		serveBinaryOnce.dir = dir
		bin := filepath.Join(dir, "careflow")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/careflow")
		cmd.Dir = moduleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			serveBinaryOnce.err = "go build ./cmd/careflow failed: " + strings.TrimSpace(string(out))
			return
		}
		serveBinaryOnce.path = bin
	})
	if serveBinaryOnce.path == "" {
		t.Fatalf("crash child: no careflow binary: %s", serveBinaryOnce.err)
	}
	return serveBinaryOnce.path
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

func (c *crashChild) start() {
	c.t.Helper()
	args := []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", c.dir, "--log-level", "info"}
	if strings.HasPrefix(c.dbURL, "postgres") {
		args = append(args, "--database", c.dbURL)
	}
	if c.effectHosts != "" {
		args = append(args, "--diagnostics-effect-hosts", c.effectHosts)
	}
	args = append(args, c.args...)
	cmd := exec.Command(c.binary, args...)
	// The same master key as this process's key ring, so both open the
	// payloads the other sealed.
	cmd.Env = append(os.Environ(), phi.MasterKeyEnv+"="+testMasterKeyBase64())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	// ready receives true once the engine has started and the server
	// listens, false if it listens without having started the engine.
	ready := make(chan bool, 1)
	var tail strings.Builder
	var tailMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		engineUp, signalled := false, false
		for sc.Scan() {
			line := sc.Text()
			tailMu.Lock()
			if tail.Len() < 8<<10 {
				tail.WriteString(line + "\n")
			}
			tailMu.Unlock()
			if strings.Contains(line, readyLine) {
				engineUp = true
			}
			if !signalled && strings.Contains(line, listeningLine) {
				ready <- engineUp
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Process.Kill()
			<-exited
			tailMu.Lock()
			defer tailMu.Unlock()
			c.t.Fatalf("careflow serve listens without having logged %q: it no longer starts the workflow engine:\n%s", readyLine, tail.String())
		}
	case <-exited:
		tailMu.Lock()
		defer tailMu.Unlock()
		c.t.Fatalf("careflow serve exited before it was ready:\n%s", tail.String())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		c.t.Fatal("careflow serve not ready within 60s")
	}
	c.cmd, c.exited = cmd, exited
}

func (c *crashChild) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

func (c *crashChild) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.kill()
	}
}

func soak() bool { return os.Getenv(envSoak) == "1" }

// TestCrashRecoveryAppliesEveryEffectOnce starts diagnostics runs (four
// action steps, one of which POSTs to a receiver with its idempotency key,
// and a durable timer in every fourth run), kills the node process with
// SIGKILL at random moments several times, restarts it, and checks that
// every run completed, every effect was applied exactly once by key, and
// nothing is left in the queue.
func TestCrashRecoveryAppliesEveryEffectOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	runs, kills := 150, 3
	if soak() {
		runs, kills = 1000, 5
	}
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			var dbURL string
			if d == store.Postgres {
				dbURL = storetest.NewPostgresDatabase(t)
			} else {
				dbURL = filepath.Join(dir, store.DefaultSQLiteFile)
			}
			db, err := store.Open(ctx, store.Config{URL: dbURL})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			// Enqueue only: this process starts runs and reads results; the
			// child, a real careflow serve, does all the work.
			recv := newEffectReceiver(t)
			hosts := []string{strings.TrimPrefix(recv.server.URL, "http://")}
			starter := newNode(t, db, nodeOpts{noStart: true, effectHosts: hosts})
			child := &crashChild{t: t, dbURL: dbURL, dir: dir, binary: serveBinary(t), effectHosts: hosts[0]}
			child.start()

			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			ids := make([]string, 0, runs)
			startAll := make(chan error, 1)
			go func() {
				for i := 0; i < runs; i++ {
					in := DiagnosticsInput{EffectURL: recv.server.URL + "/effect"}
					if i%4 == 0 {
						in.TimerMS = 300
					}
					r, _, err := starter.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: in})
					if err != nil {
						startAll <- err
						return
					}
					ids = append(ids, r.ID)
				}
				startAll <- nil
			}()
			began := time.Now()
			for k := 0; k < kills; k++ {
				// A random moment while work is in flight: once a random
				// share of the runs (spread over the kills) has completed.
				target := int64(runs) * int64(k*10+3+rng.IntN(7)) / int64(kills*10+10)
				waitFor(t, 5*time.Minute, fmt.Sprintf("%d runs to complete before kill %d", target, k+1), func() (bool, error) {
					c, err := starter.CountRuns(ctx)
					return c[StatusCompleted] >= target, err
				})
				child.kill()
				child.start()
			}
			if err := <-startAll; err != nil {
				t.Fatalf("start runs: %v", err)
			}
			defer child.stop()

			waitFor(t, 5*time.Minute, "every run to complete", func() (bool, error) {
				counts, err := starter.CountRuns(ctx)
				if err != nil {
					return false, err
				}
				if counts[StatusFailed] > 0 || counts[StatusCancelled] > 0 {
					return false, fmt.Errorf("runs ended badly: %v", counts)
				}
				return counts[StatusCompleted] == int64(runs), nil
			})
			elapsed := time.Since(began)

			byKey, calls := recv.snapshot()
			for _, id := range ids {
				key := idempotencyKey(id, "effect", 1)
				if byKey[key] == 0 {
					t.Errorf("run %s: effect never applied", id)
				}
				delete(byKey, key)
			}
			if len(byKey) != 0 {
				t.Errorf("%d effects with keys of no run: the key is not stable", len(byKey))
			}
			// The engine's records: one succeeded effect execution per run.
			var effects, redelivered int
			if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM engine_step_executions WHERE step = 'effect' AND status = 'succeeded'`).Scan(&effects); err != nil {
				t.Fatal(err)
			}
			if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM engine_step_executions WHERE deliveries > 1`).Scan(&redelivered); err != nil {
				t.Fatal(err)
			}
			if effects != runs {
				t.Errorf("%d succeeded effect executions, want %d", effects, runs)
			}
			stuck, err := starter.ListRuns(ctx, RunFilter{Status: StatusRunning})
			if err != nil || len(stuck) != 0 {
				t.Errorf("runs left running: %d %v", len(stuck), err)
			}
			waitFor(t, time.Minute, "the queue to drain", func() (bool, error) {
				var n int
				err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM river_job WHERE queue = $1 AND state IN ('available', 'scheduled', 'retryable', 'running')`, queueName).Scan(&n)
				return n == 0, err
			})
			t.Logf("%s: %d runs, %d kills, %s; effect calls %d for %d keys (%d duplicate deliveries absorbed by the key); %d step executions were re-deliveries after a crash",
				d, runs, kills, elapsed.Round(time.Millisecond), calls, runs, calls-runs, redelivered)
		})
	}
}

// TestTwoNodesShareTheWorkWithoutRunningAStepTwice runs diagnostics runs on
// two nodes (each with its own connection pool) on one PostgreSQL database.
func TestTwoNodesShareTheWorkWithoutRunningAStepTwice(t *testing.T) {
	if os.Getenv(storetest.EnvPostgres) == "" {
		t.Skipf("%s is not set", storetest.EnvPostgres)
	}
	runs := 200
	if soak() {
		runs = 1000
	}
	ctx := context.Background()
	url := storetest.NewPostgresDatabase(t)
	open := func() *store.DB {
		db, err := store.Open(ctx, store.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	dbA, dbB := open(), open()
	// Both nodes migrate at once, as two nodes starting together would.
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for _, db := range []*store.DB{dbA, dbB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := db.Migrate(ctx); err != nil {
				errc <- err
				return
			}
			if _, err := MigrateRiver(ctx, db, nil); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("concurrent migration: %v", err)
	}
	recv := newEffectReceiver(t)
	hosts := []string{strings.TrimPrefix(recv.server.URL, "http://")}
	a := newNode(t, dbA, nodeOpts{nodeID: "node-a", noStart: true, effectHosts: hosts})
	b := newNode(t, dbB, nodeOpts{nodeID: "node-b", noStart: true, effectHosts: hosts})
	for i := 0; i < runs; i++ {
		if _, _, err := a.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{EffectURL: recv.server.URL}}); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	a.start(t)
	b.start(t)
	waitFor(t, 3*time.Minute, "every run to complete", func() (bool, error) {
		c, err := a.CountRuns(ctx)
		return c[StatusCompleted] == int64(runs), err
	})
	elapsed := time.Since(began)
	const actionSteps = 4 // check, prepare, effect, finish
	started := func(n *testNode) float64 {
		var sum float64
		for _, step := range []string{"check", "prepare", "effect", "finish"} {
			sum += counterValue(t, n.metrics.executions.WithLabelValues(DiagnosticsDefinition, step, "started"))
		}
		return sum
	}
	sa, sb := started(a), started(b)
	if int(sa+sb) != runs*actionSteps {
		t.Fatalf("action steps started %v + %v times, want exactly %d", sa, sb, runs*actionSteps)
	}
	if sa == 0 || sb == 0 {
		t.Fatalf("one node did no work: %v and %v", sa, sb)
	}
	byKey, calls := recv.snapshot()
	if calls != runs || len(byKey) != runs {
		t.Fatalf("effect calls %d for %d keys, want %d each", calls, len(byKey), runs)
	}
	rows, err := dbA.Reader().Query(ctx, `SELECT node, count(*) FROM engine_step_executions GROUP BY node ORDER BY node`)
	if err != nil {
		t.Fatal(err)
	}
	var split []string
	total := 0
	for rows.Next() {
		var node string
		var n int
		if err := rows.Scan(&node, &n); err != nil {
			t.Fatal(err)
		}
		split = append(split, node+"="+strconv.Itoa(n))
		total += n
	}
	rows.Close()
	if total != runs*actionSteps {
		t.Fatalf("%d step executions recorded, want %d", total, runs*actionSteps)
	}
	t.Logf("%d runs on 2 nodes in %s (GOMAXPROCS %d): executions by node %s", runs, elapsed.Round(time.Millisecond), runtime.GOMAXPROCS(0), strings.Join(split, ", "))
}
