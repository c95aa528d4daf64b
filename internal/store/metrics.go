package store

import (
	"database/sql"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports connection-pool statistics. Labels name the pool
// (sqlite_writer, sqlite_readers, postgres), never a location.
func (db *DB) Collector() prometheus.Collector { return poolCollector{db: db} }

var (
	poolOpenDesc = prometheus.NewDesc("careflow_db_connections_open",
		"Open connections in the database pool.", []string{"pool"}, nil)
	poolInUseDesc = prometheus.NewDesc("careflow_db_connections_in_use",
		"Connections currently executing or in a transaction.", []string{"pool"}, nil)
	poolIdleDesc = prometheus.NewDesc("careflow_db_connections_idle",
		"Idle connections.", []string{"pool"}, nil)
	poolMaxDesc = prometheus.NewDesc("careflow_db_connections_max",
		"Maximum connections the pool may open.", []string{"pool"}, nil)
	poolWaitCountDesc = prometheus.NewDesc("careflow_db_wait_total",
		"Times a caller waited for a connection.", []string{"pool"}, nil)
	poolWaitSecondsDesc = prometheus.NewDesc("careflow_db_wait_seconds_total",
		"Total time callers waited for a connection.", []string{"pool"}, nil)
	commitsDesc = prometheus.NewDesc("careflow_db_commits_total",
		"Transactions that wrote, committed by the SQLite writer connection (SQLite only; PostgreSQL's are in pg_stat_database).", []string{"pool"}, nil)
)

type poolCollector struct{ db *DB }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolOpenDesc, poolInUseDesc, poolIdleDesc, poolMaxDesc, poolWaitCountDesc, poolWaitSecondsDesc, commitsDesc} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	if c.db.dialect == SQLite {
		emitSQLStats(ch, "sqlite_writer", c.db.writer.Stats())
		emitSQLStats(ch, "sqlite_readers", c.db.readers.Stats())
		ch <- prometheus.MustNewConstMetric(commitsDesc, prometheus.CounterValue, float64(c.db.Commits()), "sqlite_writer")
		return
	}
	s := c.db.pool.Stat()
	const pool = "postgres"
	ch <- prometheus.MustNewConstMetric(poolOpenDesc, prometheus.GaugeValue, float64(s.TotalConns()), pool)
	ch <- prometheus.MustNewConstMetric(poolInUseDesc, prometheus.GaugeValue, float64(s.AcquiredConns()), pool)
	ch <- prometheus.MustNewConstMetric(poolIdleDesc, prometheus.GaugeValue, float64(s.IdleConns()), pool)
	ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(s.MaxConns()), pool)
	ch <- prometheus.MustNewConstMetric(poolWaitCountDesc, prometheus.CounterValue, float64(s.EmptyAcquireCount()), pool)
	ch <- prometheus.MustNewConstMetric(poolWaitSecondsDesc, prometheus.CounterValue, s.EmptyAcquireWaitTime().Seconds(), pool)
}

func emitSQLStats(ch chan<- prometheus.Metric, pool string, s sql.DBStats) {
	ch <- prometheus.MustNewConstMetric(poolOpenDesc, prometheus.GaugeValue, float64(s.OpenConnections), pool)
	ch <- prometheus.MustNewConstMetric(poolInUseDesc, prometheus.GaugeValue, float64(s.InUse), pool)
	ch <- prometheus.MustNewConstMetric(poolIdleDesc, prometheus.GaugeValue, float64(s.Idle), pool)
	ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(s.MaxOpenConnections), pool)
	ch <- prometheus.MustNewConstMetric(poolWaitCountDesc, prometheus.CounterValue, float64(s.WaitCount), pool)
	ch <- prometheus.MustNewConstMetric(poolWaitSecondsDesc, prometheus.CounterValue, s.WaitDuration.Seconds(), pool)
}
