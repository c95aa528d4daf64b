package sim

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// dice is the simulator's one source of randomness, seeded by the rules:
// the same seed and the same messages in the same order make the same
// choices. It is safe for concurrent use (concurrent messages take their
// draws in arrival order, which a test that wants exact outcomes keeps
// sequential).
type dice struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newDice(seed int64) *dice {
	return &dice{r: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x5ca1ab1e))}
}

// chance reports true with probability p.
func (d *dice) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.r.Float64() < p
}

// z99 is the standard normal quantile at 0.99: a log-normal's p99 is
// exp(mu + z99·sigma).
const z99 = 2.3263478740408408

// latency draws a delay from l.
func (d *dice) latency(l Latency) time.Duration {
	switch l.Kind {
	case "fixed":
		return l.Value
	case "uniform":
		if l.Max == l.Min {
			return l.Min
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		return l.Min + time.Duration(d.r.Int64N(int64(l.Max-l.Min)+1))
	case "lognormal":
		mu := math.Log(float64(l.P50))
		sigma := (math.Log(float64(l.P99)) - mu) / z99
		d.mu.Lock()
		z := d.r.NormFloat64()
		d.mu.Unlock()
		v := math.Exp(mu + sigma*z)
		if v > float64(time.Hour) {
			v = float64(time.Hour)
		}
		return time.Duration(v)
	}
	return 0
}

// fault is what the gateway does with one request.
type fault int

const (
	faultNone fault = iota
	faultError
	faultTimeout
)

// requestFault draws the error and timeout faults of one request: one draw,
// so error_rate + timeout_rate is the chance of either.
func (d *dice) requestFault(f Faults) fault {
	if f.ErrorRate <= 0 && f.TimeoutRate <= 0 {
		return faultNone
	}
	d.mu.Lock()
	x := d.r.Float64()
	d.mu.Unlock()
	switch {
	case x < f.ErrorRate:
		return faultError
	case x < f.ErrorRate+f.TimeoutRate:
		return faultTimeout
	}
	return faultNone
}
