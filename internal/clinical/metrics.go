package clinical

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
)

// metrics are the module's Prometheus metrics (GET
// /api/v1/clinical-workflows/metrics, and the server's /metrics). Labels
// are codes (type, priority, status, role, operation), never an id or a
// value of a record.
type metrics struct {
	reg      *prometheus.Registry
	created  *prometheus.CounterVec
	steps    *prometheus.CounterVec
	finished *prometheus.CounterVec
	ops      *prometheus.HistogramVec
	stepTime *prometheus.HistogramVec
	state    *stateCollector
}

func newMetrics(s *Service) *metrics {
	m := &metrics{
		reg:   prometheus.NewRegistry(),
		state: &stateCollector{s: s},
		created: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "careflow_clinical_workflows_created_total",
			Help: "Clinical workflows created, by type and priority."}, []string{"type", "priority"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "careflow_clinical_step_transitions_total",
			Help: "Clinical step transitions, by the state reached and the step's role."}, []string{"status", "role"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "careflow_clinical_workflows_finished_total",
			Help: "Clinical workflows that ended, by type and final state."}, []string{"type", "status"}),
		ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "careflow_clinical_operation_seconds",
			Help:    "Time the clinical module spent per operation (its share of a request).",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5}}, []string{"operation"}),
		stepTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "careflow_clinical_step_seconds",
			Help:    "Time from a step's creation to its end, by role and final state.",
			Buckets: prometheus.ExponentialBuckets(60, 2, 12)}, []string{"role", "status"}),
	}
	m.reg.MustRegister(m.collectors()...)
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.created, m.steps, m.finished, m.ops, m.stepTime, m.state}
}

// time starts timing an operation; call the result when it ends.
func (m *metrics) time(op string) func() {
	start := time.Now()
	return func() { m.ops.WithLabelValues(op).Observe(time.Since(start).Seconds()) }
}

// Registry is the module's metrics registry, which its route serves.
func (s *Service) Registry() *prometheus.Registry { return s.metrics.reg }

// Collectors are the module's metrics, for the server's /metrics too.
func (s *Service) Collectors() []prometheus.Collector { return s.metrics.collectors() }

// stateCollector reports the work standing now: active workflows by
// priority and overdue steps by role. Counting them reads every open step,
// which grows with the data, so a scrape never waits for it: the counts are
// read in the background at most once per stateTTL, started by a scrape
// that finds them older, and a scrape answers at once with the last counts
// (none until the first read has finished). A server nobody scrapes never
// reads them.
type stateCollector struct {
	s *Service

	mu      sync.Mutex
	at      time.Time // when the last read ended (zero: never)
	reading bool
	active  map[string]float64
	overdue map[string]float64
}

// stateTTL is how old the counts may be before a scrape reads them again.
const stateTTL = 30 * time.Second

var (
	activeDesc = prometheus.NewDesc("careflow_clinical_workflows_active", "Active clinical workflows, by priority (read at most every 30 s).",
		[]string{"priority"}, nil)
	overdueDesc = prometheus.NewDesc("careflow_clinical_steps_overdue", "Unfinished steps of active workflows past their due time, by role (read at most every 30 s).",
		[]string{"role"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- activeDesc
	ch <- overdueDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if !c.reading && time.Since(c.at) > stateTTL {
		c.reading = true
		go c.read()
	}
	active, overdue := c.active, c.overdue
	c.mu.Unlock()
	for label, n := range active {
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, n, label)
	}
	for label, n := range overdue {
		ch <- prometheus.MustNewConstMetric(overdueDesc, prometheus.GaugeValue, n, label)
	}
}

// read counts the standing work; a failed read keeps the last counts and
// is tried again by a scrape after stateTTL.
func (c *stateCollector) read() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	active, err := c.counts(ctx, `SELECT priority, count(*) FROM clinical_workflows WHERE status = 'active' GROUP BY priority`)
	var overdue map[string]float64
	if err == nil {
		overdue, err = c.counts(ctx, `SELECT s.role, count(*) FROM clinical_steps s JOIN clinical_workflows w ON w.id = s.workflow_id
			WHERE w.status = 'active' AND s.status IN ('pending', 'in_progress') AND s.due_at < $1 GROUP BY s.role`, c.s.clock())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading, c.at = false, time.Now()
	if err == nil {
		c.active, c.overdue = active, overdue
	}
}

func (c *stateCollector) counts(ctx context.Context, query string, args ...any) (map[string]float64, error) {
	rows, err := c.s.cfg.DB.Reader().Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var (
			label string
			n     int64
		)
		if err := rows.Scan(&label, &n); err != nil {
			return nil, err
		}
		out[label] = float64(n)
	}
	return out, rows.Err()
}

// AuthorizeMetrics decides (and audits) a read of the module's metrics:
// counts by codes, no patient's data, so anyone the policy lets list
// workflows may read them.
func (s *Service) AuthorizeMetrics(ctx context.Context, g Guard) error {
	_, err := g.Authorize(ctx, access.Action{Req: auth.Request{Action: auth.ActionSearch, ResourceType: ResourceType}})
	return err
}

// Health checks that the module's tables answer.
func (s *Service) Health(ctx context.Context) error {
	var n int
	if err := s.cfg.DB.Reader().QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM clinical_workflows LIMIT 1) x`).Scan(&n); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the clinical workflows' tables do not answer")
	}
	return nil
}
