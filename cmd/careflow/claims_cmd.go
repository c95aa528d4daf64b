package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/rcm"
)

// claimsUsage is the claims command's argument synopsis.
const claimsUsage = "batch FILE"

// maxClaimsFile bounds the file `claims batch` sends: the server's default
// body limit.
const maxClaimsFile = 16 << 20

// runClaims is `careflow claims batch FILE`: a client of a running
// careflow (--server, --token). It posts the file as one batch, continues
// the batch while the server leaves entries pending, then follows the
// journeys until every one is final, with a progress line on stderr. Exit
// 0: every entry's journey is final and none failed; 1: an entry was
// refused or a journey failed (listed), or the server could not be
// reached; 2: bad usage.
func runClaims(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, rest, code, ok := configOrExit("claims", flagsFirst(args), stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "careflow claims: name a subcommand: %s.\n", claimsUsage)
		return 2
	}
	if rest[0] != "batch" {
		fmt.Fprintf(stderr, "careflow claims: unknown subcommand %q; use %s.\n", rest[0], claimsUsage)
		return 2
	}
	if len(rest) != 2 {
		fmt.Fprintf(stderr, "careflow claims batch: takes one file; usage: careflow claims %s.\n", claimsUsage)
		return 2
	}
	if cfg.Client.Server == "" {
		fmt.Fprintln(stderr, "careflow claims batch: --server is required (the careflow server's URL, e.g. http://127.0.0.1:8080).")
		return 2
	}
	if cfg.Client.Token == "" {
		fmt.Fprintln(stderr, "careflow claims batch: --token is required (an access token of a billing user or client; CAREFLOW_TOKEN keeps it out of the shell's history).")
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return claimsBatch(ctx, cfg.Client, rest[1], pollEvery, stdout, stderr, isTerminal(stderr, getenv))
}

func printClaimsHelp(w io.Writer) {
	fmt.Fprintf(w, `
FILE is a JSON array of journey requests, or NDJSON (one per line; files
ending .ndjson or .jsonl, or any file not starting with '['), at most %d
entries. Each is a journey request as POST /api/v1/rcm/journeys takes it.

The batch's Idempotency-Key is the file's SHA-256: running the command
again on the same file continues (or shows) the same batch and never
starts a journey twice. The progress line counts the journeys by state;
at the end every refused entry and failed journey is listed by its index
in the file, with the field and the rule (never the value).
`, rcm.MaxBatchEntries)
}

// batchClient calls one careflow server with a bearer token, through the
// outbound client (the server's host alone allowed, timeouts, no
// redirects).
type batchClient struct {
	base  *url.URL
	token string
	http  *outbound.Client
}

func newBatchClient(c ClientConfig) (*batchClient, error) {
	u, err := url.Parse(c.Server)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	// A batch's POST starts entries for up to 20 s and may take longer
	// under load; its answer carries up to a thousand failures.
	hc, err := outbound.New(outbound.Config{Hosts: []string{host}, Timeout: 2 * time.Minute, MaxResponse: 8 << 20})
	if err != nil {
		return nil, err
	}
	return &batchClient{base: u, token: c.Token, http: hc}, nil
}

// call sends one request and decodes a 2xx JSON answer into out; any other
// answer is an error with the server's problem detail.
func (c *batchClient) call(ctx context.Context, method, path string, header http.Header, body []byte, out any) (*outbound.Response, error) {
	u := c.base.JoinPath(path)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
			Field  string `json:"field"`
		}
		msg := http.StatusText(resp.StatusCode)
		if json.Unmarshal(resp.Body, &p) == nil && (p.Detail != "" || p.Title != "") {
			msg = p.Title
			if p.Detail != "" {
				msg = p.Detail
			}
			if p.Field != "" {
				msg = p.Field + ": " + msg
			}
		}
		return resp, fmt.Errorf("the server answered %d: %s", resp.StatusCode, strings.TrimSuffix(msg, "."))
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return resp, fmt.Errorf("the server's answer is not a batch: %w", err)
	}
	return resp, nil
}

// pollEvery is how often the batch is asked how far it has come.
const pollEvery = time.Second

// claimsBatch submits file and follows the batch, asking every poll.
func claimsBatch(ctx context.Context, cc ClientConfig, file string, poll time.Duration, stdout, stderr io.Writer, terminal bool) int {
	failed := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "careflow claims batch: %s.\n", strings.TrimSuffix(fmt.Sprintf(format, args...), "."))
		return 1
	}
	body, contentType, err := readClaimsFile(file)
	if err != nil {
		return failed("%v", err)
	}
	client, err := newBatchClient(cc)
	if err != nil {
		return failed("--server: %v", err)
	}
	sum := sha256.Sum256(body)
	key := "file-" + hex.EncodeToString(sum[:16])
	header := http.Header{"Content-Type": {contentType}, "Idempotency-Key": {key}}

	// Post until no entry is pending: the server starts entries for a
	// while per request and leaves the rest for the same POST again.
	var st rcm.BatchStatus
	for {
		resp, err := client.call(ctx, http.MethodPost, "/api/v1/rcm/batches", header, body, &st)
		if err != nil {
			return failed("%s: %v", file, err)
		}
		if k := resp.Header.Get("Idempotency-Key"); k != "" {
			header.Set("Idempotency-Key", k)
		}
		if st.Pending == 0 {
			break
		}
		fmt.Fprintf(stderr, "batch %s: %d of %d entries started or refused; continuing\n", st.ID, st.Started+st.Refused, st.Total)
	}
	fmt.Fprintf(stderr, "batch %s: %d entries, %d journeys started, %d refused\n", st.ID, st.Total, st.Started, st.Refused)

	line := newStatusLine(stderr, terminal, time.Now)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for !st.Done {
		line.show(func() string { return batchLine(&st) })
		select {
		case <-ctx.Done():
			line.finish()
			fmt.Fprintf(stderr, "careflow claims batch: stopped following batch %s; its journeys go on (run the command again to follow it).\n", st.ID)
			return 1
		case <-tick.C:
		}
		if _, err := client.call(ctx, http.MethodGet, "/api/v1/rcm/batches/"+st.ID, nil, nil, &st); err != nil {
			if ctx.Err() != nil {
				continue
			}
			line.finish()
			return failed("batch %s: %v", st.ID, err)
		}
	}
	line.finish()
	fmt.Fprintf(stdout, "batch %s: %s\n", st.ID, batchLine(&st))
	for _, f := range st.Failures {
		switch {
		case f.JourneyID != "":
			fmt.Fprintf(stdout, "entry %d: journey %s %s\n", f.Index, f.JourneyID, f.State)
		case f.Field != "":
			fmt.Fprintf(stdout, "entry %d: refused: %s: %s\n", f.Index, f.Field, f.Reason)
		default:
			fmt.Fprintf(stdout, "entry %d: refused: %s\n", f.Index, f.Reason)
		}
	}
	if st.FailuresOmitted > 0 {
		fmt.Fprintf(stdout, "and %d more failures (GET /api/v1/rcm/batches/%s lists the first 1,000)\n", st.FailuresOmitted, st.ID)
	}
	if len(st.Failures) > 0 {
		return 1
	}
	return 0
}

// batchLine is the batch's progress in one line: a bar over the entries
// settled (refused, or journey final), then the journeys by state.
func batchLine(st *rcm.BatchStatus) string {
	settled := st.Refused + st.Final
	var b strings.Builder
	const width = 20
	n := 0
	if st.Total > 0 {
		n = settled * width / st.Total
	}
	fmt.Fprintf(&b, "[%s%s] %s/%s final", strings.Repeat("#", n), strings.Repeat(".", width-n), thousands(settled), thousands(st.Total))
	states := make([]string, 0, len(st.States))
	for s := range st.States {
		states = append(states, s)
	}
	sort.Strings(states)
	for _, s := range states {
		fmt.Fprintf(&b, " · %s %s", s, thousands(st.States[s]))
	}
	if st.Refused > 0 {
		fmt.Fprintf(&b, " · refused %s", thousands(st.Refused))
	}
	return b.String()
}

// readClaimsFile reads FILE and tells a JSON array from NDJSON.
func readClaimsFile(file string) ([]byte, string, error) {
	f, err := os.Open(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, "", fmt.Errorf("cannot open %s: %v", file, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.IsDir() {
		return nil, "", fmt.Errorf("%s is a folder, not a file", file)
	}
	body, err := io.ReadAll(io.LimitReader(f, maxClaimsFile+1))
	if err != nil {
		return nil, "", fmt.Errorf("cannot read %s: %v", file, err)
	}
	if len(body) > maxClaimsFile {
		return nil, "", fmt.Errorf("%s is over %d MB: split it into several batches", file, maxClaimsFile>>20)
	}
	switch ext := strings.ToLower(filepath.Ext(file)); {
	case ext == ".ndjson" || ext == ".jsonl":
		return body, "application/x-ndjson", nil
	case bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n\uFEFF"), []byte("[")):
		return body, "application/json", nil
	}
	return body, "application/x-ndjson", nil
}
