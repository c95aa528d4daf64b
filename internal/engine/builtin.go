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
	"slices"
	"time"
)

// Built-in definitions shipped in the binary. They hold no clinical logic:
// they let an operator smoke-test the engine on a live installation (and
// the crash tests drive them).
const (
	// DiagnosticsDefinition runs a few no-op steps, an optional outside
	// effect (an HTTP POST with an Idempotency-Key header), an optional
	// timer and an optional signal wait.
	DiagnosticsDefinition = "diagnostics"
	// NoopDefinition is ten no-op steps: the engine's own overhead.
	NoopDefinition = "diagnostics-noop"
)

// DiagnosticsInput is the input of the diagnostics definition.
type DiagnosticsInput struct {
	// EffectURL, when set, receives a POST from the effect step carrying the
	// step's idempotency key in the Idempotency-Key header.
	EffectURL string `json:"effect_url,omitempty"`
	// TimerMS, when positive, makes the run wait that long (a durable timer).
	TimerMS int `json:"timer_ms,omitempty"`
	// Signal, when set, makes the run wait for a signal of that name.
	Signal string `json:"signal,omitempty"`
	// FailPermanently makes the check step fail with a permanent error.
	FailPermanently bool `json:"fail_permanently,omitempty"`
}

// BuiltinOptions configures the built-in definitions.
type BuiltinOptions struct {
	// HTTPClient makes the effect step's call; nil uses a client with a 5s
	// timeout.
	HTTPClient *http.Client
	// EffectHosts lists the hosts (host or host:port) the effect step may
	// call besides loopback addresses; the URL comes from run input, so the
	// engine must not become a way to reach arbitrary hosts.
	EffectHosts []string
}

// RegisterBuiltins registers the built-in definitions.
func RegisterBuiltins(reg *Registry, opts BuiltinOptions) error {
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	noop := func(context.Context, *StepContext) (Result, error) { return Result{}, nil }
	diag := func(in *Input) DiagnosticsInput {
		var d DiagnosticsInput
		_ = in.Decode(&d)
		return d
	}
	fast := RetryPolicy{MaxAttempts: 10, Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.2}
	d := &Definition{Name: DiagnosticsDefinition, Version: 1, Steps: []Step{
		{Name: "check", Retry: fast, Timeout: 5 * time.Second, Do: func(ctx context.Context, sc *StepContext) (Result, error) {
			var in DiagnosticsInput
			if err := sc.Decode(&in); err != nil {
				return Result{}, Permanent(errors.New("input is not a diagnostics input"))
			}
			if in.FailPermanently {
				return Result{}, Permanent(errors.New("failure requested by the input"))
			}
			if in.EffectURL != "" {
				if err := checkEffectURL(in.EffectURL, opts.EffectHosts); err != nil {
					return Result{}, Permanent(err)
				}
			}
			return Result{Output: map[string]any{"checked": true}}, nil
		}},
		{Name: "prepare", Retry: fast, Timeout: 5 * time.Second, Do: noop},
		{Name: "effect", Retry: fast, Timeout: 5 * time.Second,
			When: func(in *Input) bool { return diag(in).EffectURL != "" },
			Do: func(ctx context.Context, sc *StepContext) (Result, error) {
				return postEffect(ctx, client, diag(sc.Input).EffectURL, sc)
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
	n := &Definition{Name: NoopDefinition, Version: 1}
	for i := 1; i <= 10; i++ {
		n.Steps = append(n.Steps, Step{Name: fmt.Sprintf("step%02d", i), Retry: fast, Timeout: 5 * time.Second, Do: noop})
	}
	return reg.Register(n)
}

func checkEffectURL(raw string, allowed []string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("effect_url must be an http(s) URL")
	}
	if slices.Contains(allowed, u.Host) || slices.Contains(allowed, u.Hostname()) {
		return nil
	}
	if u.Hostname() == "localhost" {
		return nil
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
		return nil
	}
	return errors.New("effect_url host is not loopback and not in the allowed effect hosts")
}

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
		return Result{}, Permanent(fmt.Errorf("effect call answered %d", resp.StatusCode))
	}
}
