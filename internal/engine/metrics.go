package engine

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/careflow/careflow/internal/store"
)

// metrics are the engine's Prometheus series. Labels are definition and
// step names (code, bounded) and outcomes, never ids or data.
type metrics struct {
	runsStarted  *prometheus.CounterVec
	runsFinished *prometheus.CounterVec
	executions   *prometheus.CounterVec
	retries      *prometheus.CounterVec
	stepSeconds  *prometheus.HistogramVec
	signals      *prometheus.CounterVec
	stale        prometheus.Counter
	chained      prometheus.Counter
	chainBreaks  prometheus.Counter
	handoffs     prometheus.Counter
}

func newMetrics(e *Engine, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "careflow_engine_runs_started_total", Help: "Workflow runs started by this node.",
		}, []string{"definition"}),
		runsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "careflow_engine_runs_finished_total", Help: "Workflow runs that reached a final state on this node.",
		}, []string{"definition", "status"}),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "careflow_engine_step_executions_total",
			Help: "Step executions on this node by outcome (started, succeeded, retrying, failed, waited, stale).",
		}, []string{"definition", "step", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "careflow_engine_step_retries_total", Help: "Failed step attempts scheduled for a retry.",
		}, []string{"definition", "step"}),
		stepSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "careflow_engine_step_duration_seconds",
			Help:    "Duration of step actions.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"definition", "step"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "careflow_engine_signals_total", Help: "Signals received by outcome (delivered, stored, duplicate).",
		}, []string{"outcome"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "careflow_engine_stale_jobs_total", Help: "Step jobs dropped because their run had moved on (cancelled, paused, re-delivered).",
		}),
		chained: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "careflow_engine_chained_steps_total", Help: "Steps run in the transaction of the step before them instead of a job of their own.",
		}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "careflow_engine_handoffs_total", Help: "Steps run by the worker that committed the step before them, without waiting for a job fetch.",
		}),
		chainBreaks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "careflow_engine_chain_breaks_total", Help: "Worker transactions done again without chaining because a chained step failed.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.runsStarted, m.runsFinished, m.executions, m.retries, m.stepSeconds, m.signals, m.stale, m.chained, m.chainBreaks, m.handoffs, &stateCollector{e: e}} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return nil, err
		}
	}
	return m, nil
}

// stateCollector reads the database on scrape: runs by status (shared by
// every node, so any node reports the whole picture) and River's queue depth.
type stateCollector struct{ e *Engine }

var (
	runsDesc  = prometheus.NewDesc("careflow_engine_runs", "Workflow runs by status and definition.", []string{"status", "definition"}, nil)
	queueDesc = prometheus.NewDesc("careflow_engine_queue_jobs", "Step jobs in the queue by River state (available ones are due now).", []string{"state"}, nil)
	tasksDesc = prometheus.NewDesc("careflow_engine_open_tasks", "Human tasks not yet finished.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- runsDesc
	ch <- queueDesc
	ch <- tasksDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q := c.e.db.Reader()
	counts := map[[2]string]float64{}
	if rows, err := q.Query(ctx, `SELECT status, definition, count(*) FROM engine_runs GROUP BY status, definition`); err == nil {
		for rows.Next() {
			var s, d string
			var n int64
			if rows.Scan(&s, &d, &n) == nil {
				counts[[2]string{s, d}] = float64(n)
			}
		}
		rows.Close()
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(runsDesc, prometheus.GaugeValue, n, k[0], k[1])
	}
	states := map[string]float64{"available": 0, "scheduled": 0, "retryable": 0, "running": 0}
	if rows, err := q.Query(ctx, `SELECT state, count(*) FROM river_job WHERE queue = $1 AND state IN ('available', 'scheduled', 'retryable', 'running') GROUP BY state`, queueName); err == nil {
		for rows.Next() {
			var s string
			var n int64
			if rows.Scan(&s, &n) == nil {
				states[s] = float64(n)
			}
		}
		rows.Close()
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, n, s)
	}
	var open int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM engine_tasks WHERE status IN ('open', 'claimed')`).Scan(&open); err == nil || errors.Is(err, store.ErrNoRows) {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(open))
	}
}
