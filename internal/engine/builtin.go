package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/outbound"
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
	// EffectHosts lists the only hosts the diagnostics effect step may
	// call: "host:port", or "host" for the scheme's default port. The URL
	// comes from run input, so without the list the engine would be a way
	// to reach any host the server can (loopback services, cloud metadata,
	// the intranet). Empty disables the effect step: a diagnostics run that
	// names an effect_url is refused at start. The step calls through an
	// outbound.Client on this list (no redirect followed, 5 s in all, the
	// answer's body read up to 64 KiB).
	EffectHosts []string
	// Records, when set, registers diagnostics.record, whose step writes
	// two Observations to the run's patient's record through it, in the
	// step's transaction. Nil leaves that definition out.
	Records StepRecords
}

// RegisterBuiltins registers the built-in definitions.
func RegisterBuiltins(reg *Registry, opts BuiltinOptions) error {
	client, err := outbound.New(outbound.Config{Hosts: opts.EffectHosts, Timeout: 5 * time.Second, MaxResponse: 64 << 10})
	if err != nil {
		return err
	}
	effects := effectPolicy{client: client, enabled: len(opts.EffectHosts) > 0}

	noop := func(context.Context, *StepContext) (Result, error) { return Result{}, nil }
	diag := func(in *Input) DiagnosticsInput {
		var d DiagnosticsInput
		_ = in.Decode(&d)
		return d
	}
	fast := RetryPolicy{MaxAttempts: 10, Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.2}
	d := &Definition{Name: DiagnosticsDefinition, Version: 1,
		Validate: func(in *Input) error { return validateDiagnostics(in, effects) },
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
					if err := effects.check(in.EffectURL); err != nil {
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
					if err := effects.check(target); err != nil {
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

func validateDiagnostics(in *Input, effects effectPolicy) error {
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
		if err := effects.check(d.EffectURL); err != nil {
			return errs.E(errs.Invalid, "%s", err.Error()).InField("input.effect_url")
		}
	}
	return nil
}

// effectPolicy is where the effect step may call: the outbound client on
// the operator's list, or nowhere when the list is empty.
type effectPolicy struct {
	client  *outbound.Client
	enabled bool
}

// check allows an http(s) URL whose host (and port) is on the list. Its
// errors never repeat the URL: it is input.
func (p effectPolicy) check(raw string) error {
	if !p.enabled {
		return errors.New("the effect step is disabled on this server (no diagnostics effect hosts are configured)")
	}
	if err := p.client.Allowed(raw); err != nil {
		return fmt.Errorf("effect_url: %w", err)
	}
	return nil
}

// postEffect is the effect step: one POST that the receiver deduplicates on
// the Idempotency-Key header.
func postEffect(ctx context.Context, client *outbound.Client, target string, sc *StepContext) (Result, error) {
	body, _ := json.Marshal(map[string]any{"run_id": sc.RunID, "step": sc.Step, "attempt": sc.Attempt, "deliveries": sc.Deliveries})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return Result{}, Permanent(errors.New("effect_url is not a valid URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", sc.IdempotencyKey())
	var status int
	resp, err := client.Do(ctx, req)
	var oe *outbound.Error
	switch {
	case err == nil:
		status = resp.StatusCode
	case errors.As(err, &oe) && oe.Kind == outbound.NotAllowed:
		return Result{}, Permanent(fmt.Errorf("effect call refused: %w", err))
	case errors.As(err, &oe):
		// A redirect (not followed) or an answer whose body is over the
		// limit: the call was answered, and its status decides, as before
		// the body was read.
		status = oe.StatusCode
	default:
		// Network errors are worth retrying; the key makes that safe. The
		// outbound client leaves the URL (operator input) out of them.
		return Result{}, fmt.Errorf("effect call failed: %w", err)
	}
	switch {
	case status >= 200 && status < 300:
		return Result{Output: map[string]any{"status": status, "idempotency_key": sc.IdempotencyKey()}}, nil
	case status == http.StatusRequestTimeout, status == http.StatusConflict,
		status == http.StatusTooManyRequests, status >= 500:
		return Result{}, fmt.Errorf("effect call answered %d", status)
	default:
		// Including a redirect, which is not followed.
		return Result{}, Permanent(fmt.Errorf("effect call answered %d", status))
	}
}
