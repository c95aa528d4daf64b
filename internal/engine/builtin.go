package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// Built-in definitions shipped in the binary: the engine's own checks,
// with no clinical logic. Clinical definitions live in internal/clinical.
const (
	// DiagnosticsDefinition runs a few no-op steps, an optional outside
	// effect (an HTTP POST with an Idempotency-Key header, to a host the
	// operator allowed), an optional timer and an optional signal wait. It
	// holds no clinical logic: it lets an operator smoke-test the engine on
	// a live installation, and the crash tests drive it.
	DiagnosticsDefinition = "diagnostics"
	// NoopDefinition is ten no-op steps: the engine's own overhead.
	NoopDefinition = "diagnostics-noop"
)

// DiagnosticsInput is the input of the diagnostics definition.
type DiagnosticsInput struct {
	// EffectURL, when set, receives a POST from the effect step carrying the
	// step's idempotency key in the Idempotency-Key header. Its host must be
	// one of BuiltinOptions.EffectHosts, and the run must name no patient.
	EffectURL string `json:"effect_url,omitempty"`
	// TimerMS, when positive, makes the run wait that long (a durable timer,
	// at most a day).
	TimerMS int `json:"timer_ms,omitempty"`
	// Signal, when set, makes the run wait for a signal of that name.
	Signal string `json:"signal,omitempty"`
	// FailPermanently makes the check step fail with a permanent error.
	FailPermanently bool `json:"fail_permanently,omitempty"`
}

// maxDiagnosticsTimer bounds a diagnostics timer.
const maxDiagnosticsTimer = 24 * time.Hour

// BuiltinOptions configures the built-in definitions.
type BuiltinOptions struct {
	// HTTPClient makes the effect step's call; nil uses a client with a 5s
	// timeout. Redirects are never followed, whatever the client says.
	HTTPClient *http.Client
	// EffectHosts lists the only hosts the diagnostics effect step may
	// call: "host:port", or "host" for the scheme's default port. The URL
	// comes from run input, so without the list the engine would be a way
	// to reach any host the server can (loopback services, cloud metadata,
	// the intranet). Empty disables the effect step: a diagnostics run that
	// names an effect_url is refused at start.
	EffectHosts []string
	// Records, when set, registers diagnostics.record, whose step writes
	// two Observations to the run's patient's record through it, in the
	// step's transaction. Nil leaves that definition out.
	Records StepRecords
}

// RegisterBuiltins registers the built-in definitions.
func RegisterBuiltins(reg *Registry, opts BuiltinOptions) error {
	client := &http.Client{Timeout: 5 * time.Second}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		client = &c
	}
	// A redirect would send the POST (and its idempotency key) to a host
	// nobody allowed; a 3xx is an answer like any other.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hosts := slices.Clone(opts.EffectHosts)

	noop := func(context.Context, *StepContext) (Result, error) { return Result{}, nil }
	diag := func(in *Input) DiagnosticsInput {
		var d DiagnosticsInput
		_ = in.Decode(&d)
		return d
	}
	fast := RetryPolicy{MaxAttempts: 10, Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.2}
	d := &Definition{Name: DiagnosticsDefinition, Version: 1,
		Validate: func(in *Input) error { return validateDiagnostics(in, hosts) },
		Steps: []Step{
			{Name: "check", Retry: fast, Timeout: 5 * time.Second, Do: func(ctx context.Context, sc *StepContext) (Result, error) {
				var in DiagnosticsInput
				if err := sc.Decode(&in); err != nil {
					return Result{}, Permanent(errors.New("input is not a diagnostics input"))
				}
				if in.FailPermanently {
					return Result{}, Permanent(errors.New("failure requested by the input"))
				}
				if in.EffectURL != "" {
					// Checked again: the run may have been started on a node
					// with another list.
					if err := checkEffectURL(in.EffectURL, hosts); err != nil {
						return Result{}, Permanent(err)
					}
				}
				return Result{Output: map[string]any{"checked": true}}, nil
			}},
			{Name: "prepare", Retry: fast, Timeout: 5 * time.Second, Do: noop},
			{Name: "effect", Retry: fast, Timeout: 5 * time.Second,
				When: func(in *Input) bool { return diag(in).EffectURL != "" },
				Do: func(ctx context.Context, sc *StepContext) (Result, error) {
					target := diag(sc.Input).EffectURL
					if err := checkEffectURL(target, hosts); err != nil {
						return Result{}, Permanent(err)
					}
					return postEffect(ctx, client, target, sc)
				}},
			{Name: "timer",
				When: func(in *Input) bool { return diag(in).TimerMS > 0 },
				Wait: func(in *Input) (Wait, error) {
					return Wait{Until: in.Now.Add(time.Duration(diag(in).TimerMS) * time.Millisecond)}, nil
				}},
			{Name: "signal",
				When: func(in *Input) bool { return diag(in).Signal != "" },
				Wait: func(in *Input) (Wait, error) { return Wait{Signal: diag(in).Signal}, nil }},
			{Name: "finish", Retry: fast, Timeout: 5 * time.Second, Do: noop},
		}}
	if err := reg.Register(d); err != nil {
		return err
	}
	n := &Definition{Name: NoopDefinition, Version: 1,
		Validate: func(in *Input) error {
			if !bytes.Equal(bytes.TrimSpace(in.Raw()), []byte("{}")) {
				return errs.E(errs.Invalid, "takes no input ({})")
			}
			return nil
		}}
	for i := 1; i <= 10; i++ {
		n.Steps = append(n.Steps, Step{Name: fmt.Sprintf("step%02d", i), Retry: fast, Timeout: 5 * time.Second, Do: noop})
	}
	if err := reg.Register(n); err != nil {
		return err
	}
	if opts.Records != nil {
		return reg.Register(diagnosticsRecord(opts.Records))
	}
	return nil
}

func validateDiagnostics(in *Input, hosts []string) error {
	var d DiagnosticsInput
	if err := in.DecodeStrict(&d, "effect_url, timer_ms, signal, fail_permanently"); err != nil {
		return err
	}
	if d.TimerMS < 0 || time.Duration(d.TimerMS)*time.Millisecond > maxDiagnosticsTimer {
		return errs.E(errs.Invalid, "must be from 0 to %d milliseconds", maxDiagnosticsTimer.Milliseconds()).InField("input.timer_ms")
	}
	if d.Signal != "" && !namePattern.MatchString(d.Signal) {
		return errs.E(errs.Invalid, "must be a signal name: lower-case letters, digits, _ . -").InField("input.signal")
	}
	if d.EffectURL != "" {
		// An outside call is an operator's check of the server's outbound
		// path, about no patient: that keeps it to the roles the policy
		// lets start runs that name none (clinical_admin by default), not
		// every role that may start a run for its patients.
		if in.PatientID != "" {
			return errs.E(errs.Invalid, "a diagnostics run with an effect_url is an operator's check and names no patient").InField("input.effect_url")
		}
		if err := checkEffectURL(d.EffectURL, hosts); err != nil {
			return errs.E(errs.Invalid, "%s", err.Error()).InField("input.effect_url")
		}
	}
	return nil
}

// checkEffectURL allows an http(s) URL whose host (and port) is on the
// list. Its errors never repeat the URL: it is input.
func checkEffectURL(raw string, allowed []string) error {
	if len(allowed) == 0 {
		return errors.New("the effect step is disabled on this server (no diagnostics effect hosts are configured)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return errors.New("effect_url must be an http(s) URL without credentials")
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	target := net.JoinHostPort(strings.ToLower(u.Hostname()), port)
	for _, a := range allowed {
		if effectHostMatches(a, target, u.Scheme) {
			return nil
		}
	}
	return errors.New("effect_url host is not one of the allowed diagnostics effect hosts")
}

// effectHostMatches reports whether an allow-list entry ("host:port", or
// "host" for the scheme's default port) admits target ("host:port", host in
// lower case).
func effectHostMatches(entry, target, scheme string) bool {
	entry = strings.ToLower(strings.TrimSpace(entry))
	if _, _, err := net.SplitHostPort(entry); err != nil {
		port := map[string]string{"http": "80", "https": "443"}[scheme]
		entry = net.JoinHostPort(strings.Trim(entry, "[]"), port)
	}
	return entry == target
}

// ValidEffectHost checks an entry of BuiltinOptions.EffectHosts: a host
// name or IP address, optionally with a port ("host:port", "[v6]:port").
func ValidEffectHost(entry string) error {
	if strings.ContainsAny(entry, "/@?#") {
		return errors.New("must be a host or host:port, not a URL")
	}
	host, port := entry, ""
	if h, p, err := net.SplitHostPort(entry); err == nil {
		host, port = h, p
	}
	host = strings.Trim(host, "[]")
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return errors.New("port must be a number from 1 to 65535")
		}
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if !hostName.MatchString(host) || len(host) > 253 {
		return errors.New("must be a host name or IP address, optionally with :port")
	}
	return nil
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// postEffect is the effect step: one POST that the receiver deduplicates on
// the Idempotency-Key header.
func postEffect(ctx context.Context, client *http.Client, target string, sc *StepContext) (Result, error) {
	body, _ := json.Marshal(map[string]any{"run_id": sc.RunID, "step": sc.Step, "attempt": sc.Attempt, "deliveries": sc.Deliveries})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return Result{}, Permanent(errors.New("effect_url is not a valid URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", sc.IdempotencyKey())
	resp, err := client.Do(req)
	if err != nil {
		// Network errors are worth retrying; the key makes that safe. The
		// URL is operator input, so the message leaves it out.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Result{}, fmt.Errorf("effect call failed: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return Result{Output: map[string]any{"status": resp.StatusCode, "idempotency_key": sc.IdempotencyKey()}}, nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusConflict,
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return Result{}, fmt.Errorf("effect call answered %d", resp.StatusCode)
	default:
		// Including a redirect, which is not followed.
		return Result{}, Permanent(fmt.Errorf("effect call answered %d", resp.StatusCode))
	}
}
