package clinical

import (
	"context"
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

// stateCollector reports the work standing now, read from the database at
// each scrape: active workflows by priority and overdue steps by role.
type stateCollector struct{ s *Service }

var (
	activeDesc = prometheus.NewDesc("careflow_clinical_workflows_active", "Active clinical workflows, by priority.",
		[]string{"priority"}, nil)
	overdueDesc = prometheus.NewDesc("careflow_clinical_steps_overdue", "Unfinished steps of active workflows past their due time, by role.",
		[]string{"role"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- activeDesc
	ch <- overdueDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q := c.s.cfg.DB.Reader()
	counts := func(query string, desc *prometheus.Desc, args ...any) {
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(desc, err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			var (
				label string
				n     int64
			)
			if err := rows.Scan(&label, &n); err != nil {
				ch <- prometheus.NewInvalidMetric(desc, err)
				return
			}
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), label)
		}
	}
	counts(`SELECT priority, count(*) FROM clinical_workflows WHERE status = 'active' GROUP BY priority`, activeDesc)
	counts(`SELECT s.role, count(*) FROM clinical_steps s JOIN clinical_workflows w ON w.id = s.workflow_id
		WHERE w.status = 'active' AND s.status IN ('pending', 'in_progress') AND s.due_at < $1 GROUP BY s.role`,
		overdueDesc, c.s.clock())
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
