package engine

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// testNode is an engine under test with its own metrics registry.
type testNode struct {
	*Engine
	reg *prometheus.Registry
}

type nodeOpts struct {
	defs    []*Definition
	clock   func() time.Time
	noStart bool
	nodeID  string
	workers int
	// effectHosts is the diagnostics effect step's allow-list.
	effectHosts []string
	// staff and records are the engine's Staff and Records (nil: none).
	staff   Staff
	records Records
	// stepRecords registers diagnostics.record over it (nil: not).
	stepRecords StepRecords
	// fetchPoll and timerFallback override the node's fallback polls
	// (0: 200ms and the engine's default).
	fetchPoll, timerFallback time.Duration
}

// newNode builds (and unless told otherwise starts) an engine on db with
// the built-in definitions and defs; it stops when the test ends.
func newNode(t *testing.T, db *store.DB, o nodeOpts) *testNode {
	t.Helper()
	ctx := context.Background()
	if _, err := MigrateRiver(ctx, db, nil); err != nil {
		t.Fatalf("river migrations: %v", err)
	}
	reg := NewRegistry()
	if err := RegisterBuiltins(reg, BuiltinOptions{EffectHosts: o.effectHosts, Records: o.stepRecords}); err != nil {
		t.Fatal(err)
	}
	for _, d := range o.defs {
		if err := reg.Register(d); err != nil {
			t.Fatal(err)
		}
	}
	pr := prometheus.NewRegistry()
	e, err := New(Config{DB: db, Registry: reg, Ring: testRing(t, db), Registerer: pr, Clock: o.clock, NodeID: o.nodeID, Workers: o.workers,
		Staff: o.staff, Records: o.records, HousekeepingInterval: 200 * time.Millisecond, FetchPollInterval: cmp.Or(o.fetchPoll, 200*time.Millisecond),
		TimerFallback: o.timerFallback})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{Engine: e, reg: pr}
	if !o.noStart {
		n.start(t)
	}
	return n
}

// testMasterKeyBytes is the PHI master key of every engine test database
// (and of the careflow serve children of the crash tests, through
// CAREFLOW_MASTER_KEY), so that every node of one database opens the same
// key ring.
func testMasterKeyBytes() []byte { return bytes.Repeat([]byte{0x5a}, 32) }

func testMasterKeyBase64() string { return base64.StdEncoding.EncodeToString(testMasterKeyBytes()) }

// testRing opens the key ring of db (creating its keys on first use).
func testRing(t testing.TB, db *store.DB) *phi.Ring {
	t.Helper()
	mk, err := phi.ParseMasterKey(testMasterKeyBytes())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := phi.OpenRing(context.Background(), db, mk, phi.Options{})
	if err != nil {
		t.Fatalf("open key ring: %v", err)
	}
	return ring
}

func (n *testNode) start(t *testing.T) {
	t.Helper()
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		timer := time.NewTimer(delay)
		<-timer.C
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// waitStatus waits for a run to reach a status and returns it.
func waitStatus(t *testing.T, e *Engine, id string, want Status, timeout time.Duration) *Run {
	t.Helper()
	var r *Run
	waitFor(t, timeout, fmt.Sprintf("run %s to be %s", id, want), func() (bool, error) {
		var err error
		r, err = e.GetRun(context.Background(), id)
		if err != nil {
			return false, err
		}
		if r.Status.Final() && r.Status != want {
			return false, fmt.Errorf("run ended %s (%s), want %s", r.Status, r.Error, want)
		}
		return r.Status == want, nil
	})
	return r
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
