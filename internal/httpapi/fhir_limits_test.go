package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// timedDo sends one request and returns its status, body and latency. It
// reports failures as errors, so that goroutines other than the test's may
// call it.
func (f *fhirFixture) timedDo(client *http.Client, method, path string, body []byte, who string) (int, []byte, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, f.ts.URL+path, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("X-Test-Principal", who)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, time.Since(start), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, time.Since(start), err
}

// percentile is the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// TestHalfAMillionElementWritesAreRefusedWhileOthersReadAsUsual is issue
// #8's attack through the real server: several writers post a Patient of
// 500,000 given names (3.5 MB, inside the body limit) again and again,
// concurrently, while another user reads a record. Each post is refused
// with 413 and an OperationOutcome naming the limit and the element in
// under a second, and the reader's latency stays near its baseline with no
// 503.
func TestHalfAMillionElementWritesAreRefusedWhileOthersReadAsUsual(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRFixture(t, db)
		client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
		defer client.CloseIdleConnections()

		status, body, _, err := f.timedDo(client, "POST", "/fhir/R4/Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Baseline","given":["Reader"]}],"gender":"female"}`), "client")
		if err != nil || status != 201 {
			t.Fatalf("create the record to read: %d %v %s", status, err, body)
		}
		env, _ := fhir.ReadEnvelope(body)
		readPath := "/fhir/R4/Patient/" + env.ID

		// reads measures n of the other user's reads, sorted.
		reads := func(n int) (lat []time.Duration, statuses []int, err error) {
			for range n {
				st, _, d, err := f.timedDo(client, "GET", readPath, nil, "billing")
				if err != nil {
					return nil, nil, err
				}
				lat = append(lat, d)
				statuses = append(statuses, st)
			}
			slices.Sort(lat)
			return lat, statuses, nil
		}
		if _, _, err := reads(20); err != nil { // warm up connections and caches
			t.Fatal(err)
		}
		base, statuses, err := reads(100)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range statuses {
			if st != 200 {
				t.Fatalf("baseline read answered %d", st)
			}
		}

		attack := []byte(`{"resourceType":"Patient","name":[{"family":"Attack","given":["` + strings.Repeat(`Ann","`, 500_000-1) + `Ann"]}]}`)
		// Several writers post the body a few times each, concurrently;
		// the other user reads all the while.
		const writers, posts = 4, 10
		type refusal struct {
			status int
			body   []byte
			took   time.Duration
			err    error
		}
		refusals := make(chan refusal, writers*posts)
		attacking := make(chan struct{})
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				for range posts {
					st, b, d, err := f.timedDo(client, "POST", "/fhir/R4/Patient", attack, "client")
					refusals <- refusal{st, b, d, err}
				}
			})
		}
		go func() { wg.Wait(); close(attacking) }()
		var during []time.Duration
		for over := false; !over || len(during) < 40; {
			select {
			case <-attacking:
				over = true
			default:
			}
			st, _, d, err := f.timedDo(client, "GET", readPath, nil, "billing")
			if err != nil {
				t.Fatal(err)
			}
			if st != 200 {
				t.Fatalf("a read during the attack answered %d", st)
			}
			during = append(during, d)
		}
		<-attacking
		close(refusals)
		slices.Sort(during)

		var slowest time.Duration
		for r := range refusals {
			if r.err != nil {
				t.Fatalf("an attacking write failed: %v", r.err)
			}
			slowest = max(slowest, r.took)
			if r.took >= time.Second {
				t.Errorf("a 500,000-element write was answered after %v, want under a second", r.took)
			}
			var oo fhir.OperationOutcome
			if r.status != http.StatusRequestEntityTooLarge || json.Unmarshal(r.body, &oo) != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 {
				t.Fatalf("attack answered %d %.300s, want 413 with one OperationOutcome issue", r.status, r.body)
			}
			is := oo.Issue[0]
			if is.Code != "too-costly" || !slices.Equal(is.Expression, []string{"Patient.name[0].given"}) || !strings.Contains(is.Diagnostics, fhir.LimitArrayItems) || strings.Contains(is.Diagnostics, "Ann") {
				t.Fatalf("issue %+v, want too-costly naming %s at Patient.name[0].given", is, fhir.LimitArrayItems)
			}
		}
		// Near the baseline, allowing for a shared, loaded box (and the
		// race detector): before the limits, the reads timed out.
		bound := max(5*percentile(base, 95), 100*time.Millisecond) * raceSlowdown
		msg := fmt.Sprintf("other user's reads: baseline p50 %v p95 %v; under attack (%d reads, %d refused writes) p50 %v p95 %v; slowest refusal %v",
			percentile(base, 50), percentile(base, 95), len(during), writers*posts, percentile(during, 50), percentile(during, 95), slowest)
		t.Log(msg)
		if percentile(during, 95) > bound {
			t.Errorf("reads slowed past %v under attack: %s", bound, msg)
		}
	})
}
