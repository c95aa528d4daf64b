package rcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
)

// The definitions Register puts on the engine's registry.
const (
	DefinitionStandard  = "rcm.journey.standard"
	DefinitionEmergency = "rcm.journey.emergency"
	DefinitionScheduled = "rcm.journey.scheduled"
	DefinitionAppeal    = "rcm.appeal"
)

// The decisions of a journey's billing tasks: the payer's request for
// information is answered (the task's result is the answer: {"text",
// "attachment"}); a stopped journey's work item is resolved.
const (
	DecisionAnswered = "answered"
	DecisionResolved = "resolved"
)

// The signals a journey waits for; Receive names each payer message by
// the phase it answers.
const (
	signalEligibility = "eligibility"
	signalPreauth     = "preauth"
	signalClaim       = "claim"
	signalPayment     = "payment"
)

// Register registers the journey definitions, whose steps call s.
func Register(reg *engine.Registry, s *Service) error {
	for _, kind := range []string{KindStandard, KindEmergency, KindScheduled} {
		if err := reg.Register(s.journeyDefinition(kind)); err != nil {
			return err
		}
	}
	return reg.Register(s.appealDefinition())
}

// correlationNS derives exchange correlation ids: a name-based UUID of the
// recording step's idempotency key, so a re-applied step (after a crash
// rolled its first commit back) records the same exchange, and the payer
// sees the same correlation whatever happened in between.
var correlationNS = uuid.MustParse("5b0c6b1e-8f0e-4a6e-9a53-7f3c2b1a9d10")

func correlationID(sc *engine.StepContext) string {
	return uuid.NewSHA1(correlationNS, []byte(sc.IdempotencyKey())).String()
}

func actor(sc *engine.StepContext) access.RunStep {
	return access.RunStep{RunID: sc.RunID, Step: sc.Step, PatientID: sc.PatientID}
}

func input(in *engine.Input) (journeyInput, error) {
	var ji journeyInput
	if err := in.Decode(&ji); err != nil {
		return ji, engine.Permanent(errors.New("the run's input is not a journey"))
	}
	return ji, nil
}

// refOut reads a string member of a step's output.
func refOut(in *engine.Input, step, member string) string {
	var m map[string]any
	if ok, _ := in.Output(step, &m); !ok {
		return ""
	}
	s, _ := m[member].(string)
	return s
}

func never(*engine.Input) bool { return false }

// outgoing is what a recording step leaves for its sending step.
type outgoing struct {
	Correlation string          `json:"correlation_id"`
	Action      payer.Action    `json:"action"`
	Status      string          `json:"status,omitempty"`
	Bundle      json.RawMessage `json:"bundle,omitempty"`
	// Focus is the reference of the resource the message is about.
	Focus string `json:"focus,omitempty"`
	// Skip: nothing to send (the step decided there is no exchange).
	Skip bool `json:"skip,omitempty"`
}

var fast = engine.RetryPolicy{MaxAttempts: 8, Initial: 200 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, Jitter: 0.2}

// payerRetry retries transient send failures (network, 5xx) with the same
// idempotency key for about a day; a *payer.Error never reaches it (the
// Do returns it as a refusal the Apply handles).
var payerRetry = engine.RetryPolicy{MaxAttempts: 30, Initial: time.Second, Max: 10 * time.Minute, Multiplier: 2, Jitter: 0.3}

// sendStep sends what the recording step `from` left, with this step's
// idempotency key, and marks the exchange sent in its Apply; then goes to
// next ("" for the following step). A payer's refusal of the message
// stops the journey with a work item naming the protocol error code.
func (s *Service) sendStep(name, from, next string, when func(*engine.Input) bool) engine.Step {
	return engine.Step{Name: name, When: when, Retry: payerRetry, Timeout: time.Minute,
		Do: func(ctx context.Context, sc *engine.StepContext) (engine.Result, error) {
			var out outgoing
			if ok, err := sc.Output(from, &out); err != nil || !ok {
				return engine.Result{}, engine.Permanent(fmt.Errorf("step %s left nothing to send", from))
			}
			if out.Skip {
				return engine.Result{Output: map[string]any{"skipped": true}}, nil
			}
			ji, err := input(sc.Input)
			if err != nil {
				return engine.Result{}, err
			}
			status := out.Status
			if status == "" {
				status = payer.StatusRequestInitiated
			}
			ack, err := s.cfg.Payer.Send(ctx, payer.Request{Action: out.Action, Recipient: ji.Request.Insurance.Payer,
				CorrelationID: out.Correlation, WorkflowID: sc.RunID, IdempotencyKey: sc.IdempotencyKey(), Status: status, Bundle: out.Bundle})
			var pe *payer.Error
			if errors.As(err, &pe) {
				return engine.Result{Output: map[string]any{"refused": safeCode(pe.Code)}}, nil
			}
			if err != nil {
				return engine.Result{}, fmt.Errorf("send %s: %w", out.Action, err)
			}
			return engine.Result{Output: map[string]any{"api_call_id": ack.APICallID, "correlation_id": out.Correlation}}, nil
		},
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, done engine.Result) (engine.Result, error) {
			m, _ := done.Output.(map[string]any)
			if code, ok := m["refused"].(string); ok {
				if _, err := change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) { j.Status, j.Reason = StatusAttention, "payer_refused:"+code }); err != nil {
					return engine.Result{}, err
				}
				return engine.Result{Output: m, Goto: stepAttention}, nil
			}
			if corr, ok := m["correlation_id"].(string); ok {
				var out outgoing
				_, _ = sc.Output(from, &out)
				state := "sent"
				if out.Status == payer.StatusResponseComplete {
					state = "answered"
				}
				if err := markExchange(ctx, tx, corr, state, sc.Now); err != nil {
					return engine.Result{}, err
				}
			}
			done.Goto = next
			return done, nil
		}}
}

// The step names shared by every definition.
const (
	stepRegistration = "registration"
	stepInsurance    = "insurance"
	stepEligRecord   = "eligibility"
	stepEligSend     = "eligibility-send"
	stepEligWait     = "eligibility-wait"
	stepEligResult   = "eligibility-result"
	stepEncounter    = "encounter"
	stepCodes        = "code-validation"
	stepPreauth      = "preauth"
	stepPreauthSend  = "preauth-send"
	stepPreauthWait  = "preauth-wait"
	stepPreauthRes   = "preauth-result"
	stepClaim        = "claim"
	stepClaimSend    = "submission"
	stepClaimWait    = "status"
	stepClaimResult  = "claim-result"
	stepStatusRecord = "status-check"
	stepStatusSend   = "status-check-send"
	stepPaymentWait  = "reconciliation"
	stepPaymentRes   = "payment-result"
	stepPaymentAck   = "payment-acknowledgement"
	stepInfo         = "information-requested"
	stepInfoRecord   = "information"
	stepInfoSend     = "information-send"
	stepInfoResume   = "information-resume"
	stepAttention    = "attention"
	stepDone         = "done"
)

func (s *Service) journeyDefinition(kind string) *engine.Definition {
	steps := []engine.Step{
		s.registrationStep(), s.insuranceStep(),
		s.eligibilityStep(), s.sendStep(stepEligSend, stepEligRecord, "", nil),
		{Name: stepEligWait, Wait: func(*engine.Input) (engine.Wait, error) {
			return engine.Wait{Signal: signalEligibility, Timeout: s.waits.Eligibility}, nil
		}},
		s.eligibilityResultStep(), s.encounterStep(), s.codesStep(),
	}
	if kind != KindEmergency {
		// An emergency journey never asks before care; it bills afterwards
		// without a pre-authorization (the payer's emergency rules apply).
		steps = append(steps, s.preauthStep(),
			s.sendStep(stepPreauthSend, stepPreauth, "", preauthRequired),
			engine.Step{Name: stepPreauthWait, When: preauthRequired, Wait: func(*engine.Input) (engine.Wait, error) {
				return engine.Wait{Signal: signalPreauth, Timeout: s.waits.Preauth}, nil
			}},
			s.preauthResultStep())
	}
	steps = append(steps, s.claimStep())
	steps = append(steps, s.claimTail()...)
	return &engine.Definition{Name: definitionOf(kind), Version: 1, Steps: steps,
		Validate: func(in *engine.Input) error {
			if in.PatientID == "" {
				return errors.New("a journey is started by StartJourney, which registers its patient")
			}
			return nil
		}}
}

// claimTail is what follows a claim's creation in every definition:
// submission, the status wait with its status checks, reconciliation, the
// information loop, the work item and the end.
func (s *Service) claimTail() []engine.Step {
	return []engine.Step{
		s.sendStep(stepClaimSend, stepClaim, "", nil),
		{Name: stepClaimWait, Wait: func(*engine.Input) (engine.Wait, error) {
			return engine.Wait{Signal: signalClaim, Timeout: s.waits.Claim}, nil
		}},
		s.claimResultStep(),
		// Steps reached only by a jump have When never, so the run's
		// ordinary course passes them by; the step after such a step
		// follows it in order (a wait cannot jump).
		s.statusCheckStep(), s.sendStep(stepStatusSend, stepStatusRecord, stepClaimWait, nil),
		{Name: stepPaymentWait, Wait: func(*engine.Input) (engine.Wait, error) {
			return engine.Wait{Signal: signalPayment, Timeout: s.waits.Payment}, nil
		}},
		s.paymentResultStep(), s.sendStep(stepPaymentAck, stepPaymentRes, stepDone, never),
		{Name: stepInfo, When: never, Wait: func(*engine.Input) (engine.Wait, error) {
			return engine.Wait{Task: &engine.TaskSpec{Title: "More information requested by the payer", Role: "billing",
				Decisions: []string{DecisionAnswered}, Due: s.waits.Attention}}, nil
		}},
		s.infoRecordStep(), s.sendStep(stepInfoSend, stepInfoRecord, stepInfoResume, nil),
		{Name: stepInfoResume, Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			var phase string
			if _, err := change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) {
				phase, _, _ = splitNeeds(j.Needs)
				j.Needs = ""
			}); err != nil {
				return engine.Result{}, err
			}
			next := stepClaimWait
			if phase == signalPreauth {
				next = stepPreauthWait
			}
			return engine.Result{Goto: next}, nil
		}},
		{Name: stepAttention, When: never, Wait: func(in *engine.Input) (engine.Wait, error) {
			return engine.Wait{Task: &engine.TaskSpec{Title: attentionTitle(in), Role: "billing", Decisions: []string{DecisionResolved},
				Due: s.waits.Attention}}, nil
		}},
		{Name: stepDone, Retry: fast, Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			j, err := change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) {
				if j.Status == StatusActive || j.Status == StatusAttention {
					j.Status = StatusClosed
				}
			})
			if err != nil {
				return engine.Result{}, err
			}
			return engine.Result{Output: map[string]any{"outcome": j.Outcome}}, nil
		}},
	}
}

// attentionTitle names the work item by the rule that stopped the journey
// (the stopping step's output "title"), never by the patient.
func attentionTitle(in *engine.Input) string {
	for _, st := range []string{stepCodes, stepEligResult, stepPreauthRes, stepClaimResult, stepClaim, stepPreauth} {
		if t := refOut(in, st, "title"); t != "" {
			return t
		}
	}
	return "The journey needs billing's attention"
}

func preauthRequired(in *engine.Input) bool {
	var m struct {
		Required bool `json:"required"`
	}
	ok, _ := in.Output(stepPreauth, &m)
	return ok && m.Required
}
