//go:build !race

package httpapi

// raceSlowdown scales latency bounds of tests that compare timings: 1
// without the race detector.
const raceSlowdown = 1
