//go:build race

package httpapi

// raceSlowdown scales latency bounds of tests that compare timings: the
// race detector slows the code under test several times, and unevenly.
const raceSlowdown = 3
