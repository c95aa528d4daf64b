// Command loadgen is careflow's HTTP load generator for BENCHMARKS.md: it
// runs as a separate process from the server, keeps N connections busy for
// a bounded time or request count, and reports throughput and latency
// percentiles. It only targets loopback addresses unless told otherwise, so
// a benchmark can never be pointed at someone else's server by accident.
//
//	go run ./cmd/loadgen -url http://127.0.0.1:8080/healthz -c 32 -d 10s
//
// A body (-body-file) is sent with every request; with -unique, every
// occurrence of the given placeholder in it is replaced by a number no other
// request of the run carries (for creates whose identifiers must differ).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type headerList []string

func (h *headerList) String() string { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error {
	if !strings.Contains(v, ":") {
		return errors.New(`must be "Name: value"`)
	}
	*h = append(*h, v)
	return nil
}

type settings struct {
	target      *url.URL
	method      string
	body        []byte
	unique      []byte
	headers     http.Header
	concurrency int
	duration    time.Duration
	requests    int
	warmup      time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "", "target URL (loopback only unless -allow-remote)")
	method := fs.String("method", "GET", "HTTP method")
	bodyFile := fs.String("body-file", "", "file whose contents are sent as the body")
	unique := fs.String("unique", "", "placeholder in the body replaced by a number unique to each request (e.g. {{n}})")
	concurrency := fs.Int("c", 16, "concurrent connections")
	duration := fs.Duration("d", 10*time.Second, "how long to run (bounded)")
	requests := fs.Int("n", 0, "stop after this many requests (0: run for -d)")
	warmup := fs.Duration("warmup", time.Second, "requests in this first period are not measured")
	allowRemote := fs.Bool("allow-remote", false, "permit a non-loopback target")
	var hdrs headerList
	fs.Var(&hdrs, "H", `request header "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	s, err := validate(*rawURL, *method, *bodyFile, *concurrency, *duration, *requests, *warmup, *allowRemote, hdrs)
	if err == nil && *unique != "" {
		if !bytes.Contains(s.body, []byte(*unique)) {
			err = fmt.Errorf("-unique: the body does not contain %q", *unique)
		}
		s.unique = []byte(*unique)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v.\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res := load(ctx, s)
	res.print(stdout, s)
	if res.ok == 0 {
		return 1
	}
	return 0
}

func validate(rawURL, method, bodyFile string, c int, d time.Duration, n int, warmup time.Duration, allowRemote bool, hdrs headerList) (settings, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return settings{}, errors.New("-url must be an http:// or https:// URL")
	}
	if !allowRemote && !isLoopback(u.Hostname()) {
		return settings{}, fmt.Errorf("-url host %q is not a loopback address; pass -allow-remote to load a server you own elsewhere", u.Hostname())
	}
	if c < 1 || c > 4096 {
		return settings{}, errors.New("-c must be from 1 to 4096")
	}
	if d <= 0 || d > time.Hour {
		return settings{}, errors.New("-d must be positive and at most an hour")
	}
	if n < 0 {
		return settings{}, errors.New("-n must not be negative")
	}
	s := settings{target: u, method: strings.ToUpper(method), concurrency: c, duration: d, requests: n, warmup: warmup, headers: http.Header{}}
	if bodyFile != "" {
		b, err := os.ReadFile(bodyFile)
		if err != nil {
			return settings{}, fmt.Errorf("-body-file: %v", err)
		}
		s.body = b
	}
	for _, h := range hdrs {
		k, v, _ := strings.Cut(h, ":")
		s.headers.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return s, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type result struct {
	ok, failed, transport int
	statuses              map[int]int
	latencies             []time.Duration
	elapsed               time.Duration
}

func load(ctx context.Context, s settings) result {
	transport := &http.Transport{
		MaxIdleConns:        s.concurrency,
		MaxIdleConnsPerHost: s.concurrency,
		MaxConnsPerHost:     s.concurrency,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	defer transport.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(ctx, s.warmup+s.duration)
	defer cancel()
	measureFrom := time.Now().Add(s.warmup)

	var mu sync.Mutex
	total := result{statuses: map[int]int{}}
	var budget chan struct{}
	if s.requests > 0 {
		budget = make(chan struct{}, s.requests)
		for i := 0; i < s.requests; i++ {
			budget <- struct{}{}
		}
		close(budget)
	}
	// Unique numbers start from the clock, so runs against one database
	// do not repeat each other's.
	var seq atomic.Int64
	seq.Store(time.Now().UnixMilli() * 1000)
	var wg sync.WaitGroup
	for w := 0; w < s.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := result{statuses: map[int]int{}, latencies: make([]time.Duration, 0, 4096)}
			for ctx.Err() == nil {
				if budget != nil {
					if _, ok := <-budget; !ok {
						break
					}
				}
				body := s.body
				if s.unique != nil {
					body = bytes.ReplaceAll(body, s.unique, strconv.AppendInt(nil, seq.Add(1), 10))
				}
				req, err := http.NewRequestWithContext(ctx, s.method, s.target.String(), bytes.NewReader(body))
				if err != nil {
					break
				}
				req.Header = s.headers.Clone()
				start := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(start)
				if start.Before(measureFrom) && budget == nil {
					continue
				}
				switch {
				case err != nil:
					if ctx.Err() == nil {
						local.transport++
					}
				case resp.StatusCode >= 200 && resp.StatusCode < 400:
					local.ok++
					local.statuses[resp.StatusCode]++
					local.latencies = append(local.latencies, lat)
				default:
					local.failed++
					local.statuses[resp.StatusCode]++
					local.latencies = append(local.latencies, lat)
				}
			}
			mu.Lock()
			total.ok += local.ok
			total.failed += local.failed
			total.transport += local.transport
			for k, v := range local.statuses {
				total.statuses[k] += v
			}
			total.latencies = append(total.latencies, local.latencies...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.elapsed = time.Since(measureFrom)
	if s.requests > 0 {
		total.elapsed += s.warmup
	}
	return total
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func (r result) print(w io.Writer, s settings) {
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	n := r.ok + r.failed
	rps := float64(n) / r.elapsed.Seconds()
	fmt.Fprintf(w, "target      %s %s\n", s.method, s.target.Redacted())
	fmt.Fprintf(w, "connections %d, measured %.1fs (after %v warm-up)\n", s.concurrency, r.elapsed.Seconds(), s.warmup)
	fmt.Fprintf(w, "requests    %d (%d ok, %d non-2xx/3xx, %d transport errors)\n", n, r.ok, r.failed, r.transport)
	fmt.Fprintf(w, "throughput  %.0f req/s\n", rps)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d.Microseconds())/1000) }
	fmt.Fprintf(w, "latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		ms(percentile(r.latencies, .50)), ms(percentile(r.latencies, .90)),
		ms(percentile(r.latencies, .99)), ms(percentile(r.latencies, .999)),
		ms(percentile(r.latencies, 1)))
	codes := make([]int, 0, len(r.statuses))
	for c := range r.statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, 0, len(codes))
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", c, r.statuses[c]))
	}
	fmt.Fprintf(w, "statuses    %s\n", strings.Join(parts, " "))
}
