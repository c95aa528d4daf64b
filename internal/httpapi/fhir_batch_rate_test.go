package httpapi

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/careflow/careflow/internal/ratelimit"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// batchOfPatients is a batch Bundle creating n Patients.
func batchOfPatients(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"batch","entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"resource":{"resourceType":"Patient","gender":"female","birthDate":"1961-07-%02d"},"request":{"method":"POST","url":"Patient"}}`, i+1)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func storedPatients(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(context.Background(), `SELECT count(*) FROM resources WHERE type = 'Patient'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A batch of N entries is N requests' worth of work and costs N tokens:
// one larger than what is left in the bucket is refused with 429 and
// Retry-After before any entry runs, one that fits is served and leaves the
// bucket that much emptier. With a limiter in Redis the same holds.
func TestABatchCostsOneTokenPerEntry(t *testing.T) {
	t.Parallel()
	limiters := map[string]func(t *testing.T) ratelimit.Limiter{
		"memory": func(*testing.T) ratelimit.Limiter { return ratelimit.NewMemory(0, nil) },
	}
	if u := os.Getenv("CAREFLOW_TEST_REDIS"); u != "" {
		limiters["redis"] = func(t *testing.T) ratelimit.Limiter {
			opts, err := redis.ParseURL(u)
			if err != nil {
				t.Fatal(err)
			}
			c := redis.NewClient(opts)
			t.Cleanup(func() { c.Close() })
			return ratelimit.NewRedis(c, "careflow-test:"+t.Name()+":"+newBundleID()+":")
		}
	}
	for name, limiter := range limiters {
		t.Run(name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *store.DB) {
				f := newFHIRFixtureWith(t, db, func(o *Options) {
					o.Identity.Limiter = limiter(t)
					// Five at once, then one every 100 s: nothing refills
					// while the test runs.
					o.Identity.Limits.PerAddr = ratelimit.Rule{Rate: 0.01, Burst: 5}
				})
				resp := f.do(t, "POST", "/fhir/R4", batchOfPatients(8))
				if resp.status != 429 {
					t.Fatalf("a batch of 8 against a bucket of 5 = %d %s, want 429", resp.status, resp.body)
				}
				if s, err := strconv.Atoi(resp.header.Get("Retry-After")); err != nil || s < 1 {
					t.Fatalf("Retry-After %q", resp.header.Get("Retry-After"))
				}
				if !strings.Contains(string(resp.body), `"resourceType":"OperationOutcome"`) {
					t.Fatalf("429 body is not an OperationOutcome: %s", resp.body)
				}
				if got := storedPatients(t, db); got != 0 {
					t.Fatalf("the refused batch stored %d Patients", got)
				}
				// The refused batch cost its one request's token (and the
				// address's other buckets nothing): 4 left, a batch of 4 fits.
				resp = f.do(t, "POST", "/fhir/R4", batchOfPatients(4))
				if resp.status != 200 {
					t.Fatalf("a batch of 4 with 4 tokens left = %d %s", resp.status, resp.body)
				}
				if got := storedPatients(t, db); got != 4 {
					t.Fatalf("the batch of 4 stored %d Patients", got)
				}
				if resp := f.do(t, "GET", "/fhir/R4/metadata", nil); resp.status != 429 {
					t.Fatalf("after the refused batch's 1 and the batch's 4 tokens the next request = %d, want 429", resp.status)
				}
			})
		})
	}
}
