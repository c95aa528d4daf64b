package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Definition is a workflow: an ordered graph of steps. Steps run in order;
// a step whose When is false is skipped; a step may jump elsewhere with
// Result.Goto (a loop back, a resubmission).
type Definition struct {
	Name    string
	Version int
	Steps   []Step
	// Validate, when set, checks a run's input and patient when the run is
	// started; an error refuses the start as invalid (StartRun answers
	// errs.Invalid naming the input). Its message goes back to the caller,
	// so it names fields and rules, never the values. In sees the input, the
	// patient id and Now; there are no outputs yet.
	Validate func(in *Input) error
	// RecordInputs declares the input members that reference FHIR records;
	// StartRun refuses a run whose input references a record outside the
	// run's patient's compartment (see RecordInput).
	RecordInputs []RecordInput
	// ControlledBy, when set, names the API of the module that drives the
	// runs of this definition and their tasks (a clinical workflow's run,
	// "/api/v1/clinical-workflows"). Such a module keeps state of its own
	// beside each run and moves both in one transaction, so the generic run
	// and task routes refuse to cancel, pause, resume, retry or signal its
	// runs, or to claim, complete or reassign its tasks, behind its back.
	ControlledBy string
}

// Step is one step of a definition: an action (Do, Apply or both) or a
// Wait, never both.
type Step struct {
	Name string
	// When decides whether the step runs; nil means always. It sees the run
	// input and the outputs of the steps before it.
	When func(in *Input) bool
	// Do performs the step's work outside any transaction: calls to the
	// outside world (a payer, a webhook), which carry the step's
	// IdempotencyKey. Its error decides retries (see Retry).
	Do func(ctx context.Context, sc *StepContext) (Result, error)
	// Apply writes the step's effects on careflow's own database, in the
	// transaction that records the step's result: the effects, the
	// execution, the run's transition and the job of the next step commit
	// together or not at all (see apply.go). It runs after Do succeeded (or
	// alone when Do is nil), is handed Do's result and returns the step's
	// result. It runs only while the run is still at this step, under the
	// run's row lock, so a re-delivered step whose transaction rolled back
	// applies again and a committed one never does: the effects are
	// written once without an idempotency key. It holds the database's
	// write transaction (on SQLite, the one writer): no outside calls and
	// nothing slow here; those belong in Do. An error rolls its writes back
	// and counts as a failed attempt of the step.
	Apply func(ctx context.Context, sc *StepContext, tx store.Tx, done Result) (Result, error)
	// Wait makes the step a wait: it returns what to wait for, computed once
	// when the run reaches the step.
	Wait func(in *Input) (Wait, error)
	// Retry governs failed attempts of Do; the zero value is DefaultRetry.
	Retry RetryPolicy
	// Timeout bounds one attempt of Do; zero means DefaultStepTimeout.
	Timeout time.Duration
}

// DefaultStepTimeout bounds an attempt of a step that sets no Timeout.
const DefaultStepTimeout = 30 * time.Second

func (s *Step) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultStepTimeout
}

// Result is what an action step returns on success.
type Result struct {
	// Output is stored, sealed, as the step's output (JSON); later steps
	// read it. Keep it to references and decisions: it is kept for the
	// run's lifetime and shown to whoever may read the run.
	Output any
	// Goto names the step to run next instead of the following one.
	Goto string
}

// Wait is what a wait step waits for: exactly one of Until, Signal, Task.
type Wait struct {
	// Until resumes the run at a time.
	Until time.Time
	// Signal resumes the run when a signal of this name arrives (or has
	// arrived already); its payload becomes the step's output.
	Signal string
	// Task resumes the run when a person completes the task.
	Task *TaskSpec
	// Timeout, for Signal and Task waits, gives up after this long: the
	// step's output is then {"timed_out": true} and the run goes on, so a
	// later step's When can choose the fallback (e.g. poll the payer).
	Timeout time.Duration
}

// TaskSpec describes a human task.
type TaskSpec struct {
	// Title is shown in work lists; it must not contain PHI.
	Title string
	// Role or User (or both) says who may claim it.
	Role string
	User string
	// Decisions lists the allowed decisions; empty allows any.
	Decisions []string
	// Due is how long after creation the task is due (0: no due date).
	Due time.Duration
	// EscalateAfter and EscalateTo: an unfinished task is moved to the role
	// EscalateTo after this long (its claim is released).
	EscalateAfter time.Duration
	EscalateTo    string
}

// Input is what conditions and steps see of their run.
type Input struct {
	RunID      string
	Definition string
	Version    int
	PatientID  string
	// Now is the engine's time when the step or wait is evaluated; a wait
	// computes its timer from it, not from the wall clock.
	Now     time.Time
	raw     json.RawMessage
	outputs map[string]json.RawMessage
}

// Decode unmarshals the run input into v.
func (in *Input) Decode(v any) error {
	if err := json.Unmarshal(in.raw, v); err != nil {
		return fmt.Errorf("decode run input: %w", err)
	}
	return nil
}

// DecodeStrict decodes the run input into v, refusing unknown members, with
// an invalid error that names what the input may hold (members): a
// definition's Validate uses it so a misspelt member is refused at start,
// not ignored.
func (in *Input) DecodeStrict(v any, members string) error {
	dec := json.NewDecoder(bytes.NewReader(in.raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errs.E(errs.Invalid, "must be an object with %s only", members)
	}
	if dec.More() {
		return errs.E(errs.Invalid, "must be one JSON object")
	}
	return nil
}

// Raw returns the run input JSON.
func (in *Input) Raw() json.RawMessage { return in.raw }

// Output unmarshals the latest output of step into v; it reports false when
// the step has not produced one.
func (in *Input) Output(step string, v any) (bool, error) {
	raw, ok := in.outputs[step]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("decode output of step %s: %w", step, err)
	}
	return true, nil
}

// StepContext is what an action step gets.
type StepContext struct {
	*Input
	Step string
	// Visit is the step's logical attempt: the number of times the run has
	// entered this step (1 unless the definition loops back).
	Visit int
	// Attempt counts failed-and-retried attempts within the visit, from 1.
	Attempt int
	// Deliveries counts how many times this attempt was handed to a worker;
	// above 1 the previous delivery crashed mid-step.
	Deliveries int
}

// IdempotencyKey identifies this step's effect on the outside world: the
// same for every retry and crash re-delivery of this visit, so a receiver
// that deduplicates on it applies the effect once.
func (sc *StepContext) IdempotencyKey() string {
	return idempotencyKey(sc.RunID, sc.Step, sc.Visit)
}

func idempotencyKey(runID, step string, visit int) string {
	return fmt.Sprintf("%s:%s:%d", runID, step, visit)
}

// RetryPolicy says how a failing action step is retried: exponential
// backoff with jitter, a cap on attempts, and which errors are permanent.
type RetryPolicy struct {
	// MaxAttempts including the first; 0 means 5. 1 means no retry.
	MaxAttempts int
	// Initial delay before the second attempt; 0 means 1s.
	Initial time.Duration
	// Max caps one delay; 0 means 10 minutes.
	Max time.Duration
	// Multiplier grows the delay per attempt; 0 means 2.
	Multiplier float64
	// Jitter is the fraction of the delay that is randomised (0..1): the
	// delay is drawn uniformly from [d·(1−Jitter), d]. Randomness keeps many
	// runs that failed together (a payer outage) from retrying together.
	// Negative means none; 0 means 0.2.
	Jitter float64
	// Permanent reports errors that no retry can fix (a rejected claim, a
	// malformed input). Errors wrapped with Permanent are permanent anyway.
	Permanent func(error) bool
}

// DefaultRetry is used by steps that set no policy.
var DefaultRetry = RetryPolicy{MaxAttempts: 5, Initial: time.Second, Max: 10 * time.Minute, Multiplier: 2, Jitter: 0.2}

func (p RetryPolicy) normalised() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultRetry.MaxAttempts
	}
	if p.Initial <= 0 {
		p.Initial = DefaultRetry.Initial
	}
	if p.Max <= 0 {
		p.Max = DefaultRetry.Max
	}
	if p.Multiplier <= 0 {
		p.Multiplier = DefaultRetry.Multiplier
	}
	// A negative Jitter (none) stays negative, so that normalising twice
	// does not turn "none" into the default.
	switch {
	case p.Jitter == 0:
		p.Jitter = DefaultRetry.Jitter
	case p.Jitter > 1:
		p.Jitter = 1
	}
	return p
}

// Backoff is the delay before attempt+1 after attempt failed (attempt from
// 1), drawing the jitter from r.
func (p RetryPolicy) Backoff(attempt int, r *rand.Rand) time.Duration {
	p = p.normalised()
	d := float64(p.Initial) * math.Pow(p.Multiplier, float64(attempt-1))
	if d > float64(p.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(p.Max)
	}
	if p.Jitter > 0 && r != nil {
		d -= d * p.Jitter * r.Float64()
	}
	return time.Duration(d)
}

func (p RetryPolicy) isPermanent(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return true
	}
	return p.Permanent != nil && p.Permanent(err)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix: the run fails with it
// at once. Its message is stored and shown, so it must not contain PHI.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)

func (d *Definition) validate() error {
	if !namePattern.MatchString(d.Name) {
		return fmt.Errorf("definition name %q: lower-case letters, digits, _ . - only", d.Name)
	}
	if d.Version < 1 {
		return fmt.Errorf("definition %s: version must be at least 1", d.Name)
	}
	if len(d.Steps) == 0 {
		return fmt.Errorf("definition %s v%d: no steps", d.Name, d.Version)
	}
	seen := map[string]bool{}
	for i := range d.Steps {
		s := &d.Steps[i]
		if !namePattern.MatchString(s.Name) {
			return fmt.Errorf("definition %s v%d: step name %q: lower-case letters, digits, _ . - only", d.Name, d.Version, s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("definition %s v%d: step %s appears twice", d.Name, d.Version, s.Name)
		}
		seen[s.Name] = true
		if (s.Do == nil && s.Apply == nil) == (s.Wait == nil) {
			return fmt.Errorf("definition %s v%d: step %s must set an action (Do, Apply or both) or a Wait, not both", d.Name, d.Version, s.Name)
		}
	}
	return validateRecordInputs(d)
}

func (d *Definition) step(name string) (int, *Step) {
	for i := range d.Steps {
		if d.Steps[i].Name == name {
			return i, &d.Steps[i]
		}
	}
	return -1, nil
}

// Registry holds definitions by name and version. It is safe for concurrent
// use; definitions are registered at start-up.
type Registry struct {
	mu   sync.RWMutex
	defs map[string]map[int]*Definition
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{defs: map[string]map[int]*Definition{}} }

// Register adds a definition; a name and version can be registered once.
func (r *Registry) Register(d *Definition) error {
	if err := d.validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	vs := r.defs[d.Name]
	if vs == nil {
		vs = map[int]*Definition{}
		r.defs[d.Name] = vs
	}
	if _, dup := vs[d.Version]; dup {
		return fmt.Errorf("definition %s v%d is already registered", d.Name, d.Version)
	}
	vs[d.Version] = d
	return nil
}

// Get returns a definition version; version 0 means the newest.
func (r *Registry) Get(name string, version int) (*Definition, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	vs := r.defs[name]
	if version != 0 {
		d, ok := vs[version]
		return d, ok
	}
	var best *Definition
	for _, d := range vs {
		if best == nil || d.Version > best.Version {
			best = d
		}
	}
	return best, best != nil
}

// DefinitionInfo summarises a registered definition for listings.
type DefinitionInfo struct {
	Name     string   `json:"name"`
	Versions []int    `json:"versions"`
	Steps    []string `json:"steps"` // of the newest version
}

// List describes every registered definition, by name.
func (r *Registry) List() []DefinitionInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []DefinitionInfo
	for name, vs := range r.defs {
		info := DefinitionInfo{Name: name}
		newest := 0
		for v := range vs {
			info.Versions = append(info.Versions, v)
			newest = max(newest, v)
		}
		slices.Sort(info.Versions)
		for _, s := range vs[newest].Steps {
			info.Steps = append(info.Steps, s.Name)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// maxTimeout is the longest step timeout of any registered definition; the
// job layer's stuck-job rescue must not fire before a step could finish.
func (r *Registry) maxTimeout() time.Duration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := DefaultStepTimeout
	for _, vs := range r.defs {
		for _, d := range vs {
			for i := range d.Steps {
				m = max(m, d.Steps[i].timeout())
			}
		}
	}
	return m
}
