package sim_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/payer/sim"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestDuplicateCallbacksCarryTheSameAPICallID(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, func(r *sim.Rules) { r.Payers[0].Faults.DuplicateCallbacks = 1 }))
		p := newProvider(t, h, "provider-1")
		corr := uuid.NewString()
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr,
			bundle: claimBundle("claim", "CLM-DUP", "GOLD-1", "", "", [2]string{"99213", "100"})})
		got := p.waitFor(4, onCorrelation(corr))
		if got[0].action != payer.ClaimOnSubmit || got[1].action != payer.ClaimOnSubmit || got[0].header.APICallID != got[1].header.APICallID {
			t.Fatalf("the answer was not sent twice as one message: %s %s", got[0].action, got[1].action)
		}
		if got[2].action != payer.PaymentNoticeRequest || got[2].header.APICallID != got[3].header.APICallID {
			t.Fatalf("the payment was not sent twice as one message")
		}
		if recs := claimsOf(t, h, sim.ClaimQuery{Identifier: "CLM-DUP"}); len(recs) != 1 {
			t.Fatalf("a duplicate callback made a second claim: %+v", recs)
		}
	})
}

func TestOutOfOrderSendsThePaymentBeforeTheClaimResponse(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, func(r *sim.Rules) { r.Payers[0].Faults.OutOfOrderCallbacks = 1 }))
		p := newProvider(t, h, "provider-1")
		corr := uuid.NewString()
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr,
			bundle: claimBundle("claim", "CLM-OOO", "GOLD-1", "", "", [2]string{"99213", "100"})})
		got := p.waitFor(2, onCorrelation(corr))
		if got[0].action != payer.PaymentNoticeRequest || got[1].action != payer.ClaimOnSubmit {
			t.Fatalf("order: %s, %s", got[0].action, got[1].action)
		}
	})
}

func TestPaymentWaitsForThePayersDelayAndCallbacksKeepTheirOrder(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, func(r *sim.Rules) { r.Payers[0].PaymentDelay = 300 * time.Millisecond }))
		p := newProvider(t, h, "provider-1")
		corr := uuid.NewString()
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr,
			bundle: claimBundle("claim", "CLM-LATER", "GOLD-1", "", "", [2]string{"99213", "100"})})
		first := p.waitFor(1, onCorrelation(corr))
		at := time.Now()
		if first[0].action != payer.ClaimOnSubmit {
			t.Fatalf("first: %s", first[0].action)
		}
		if rec := claimsOf(t, h, sim.ClaimQuery{Identifier: "CLM-LATER"})[0]; rec.State != sim.StateAdjudicated || rec.PaidAt != nil {
			t.Fatalf("paid before the payment went out: %+v", rec)
		}
		p.waitFor(2, onCorrelation(corr))
		if time.Since(at) < 200*time.Millisecond {
			t.Fatalf("the payment came %v after the answer, before the payer's delay", time.Since(at))
		}
		deadline := time.Now().Add(5 * time.Second)
		for claimsOf(t, h, sim.ClaimQuery{Identifier: "CLM-LATER"})[0].State != sim.StatePaid {
			if time.Now().After(deadline) {
				t.Fatal("the delivered payment did not mark the claim paid")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestAProviderThatIsDownGetsItsCallbacksWhenItIsBack(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, nil))
		p := newProvider(t, h, "provider-1")
		p.mu.Lock()
		p.failNext = 3
		p.mu.Unlock()
		corr := uuid.NewString()
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr,
			bundle: claimBundle("claim", "CLM-RETRY", "GOLD-1", "", "", [2]string{"99213", "100"})})
		got := p.waitFor(2, onCorrelation(corr))
		if got[0].action != payer.ClaimOnSubmit || got[1].action != payer.PaymentNoticeRequest {
			t.Fatalf("after retries: %s, %s", got[0].action, got[1].action)
		}
	})
}

func TestPendingCallbacksSurviveARestart(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		master := t.TempDir()
		h := newSim(t, db, rules(t, nil), false, master)
		p := newProvider(t, h, "provider-1")
		corr := uuid.NewString()
		if status, code := p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr,
			bundle: claimBundle("claim", "CLM-RESTART", "GOLD-1", "", "", [2]string{"99213", "100"})}); status != http.StatusAccepted {
			t.Fatalf("send: %d %s", status, code)
		}
		h.stop()
		h2 := newSim(t, db, rules(t, nil), true, master)
		got := p.waitFor(2, onCorrelation(corr))
		if got[0].action != payer.ClaimOnSubmit || got[1].action != payer.PaymentNoticeRequest {
			t.Fatalf("after the restart: %s, %s", got[0].action, got[1].action)
		}
		if recs := claimsOf(t, h2, sim.ClaimQuery{Identifier: "CLM-RESTART"}); len(recs) != 1 {
			t.Fatalf("ledger after the restart: %+v", recs)
		}
	})
}

// The error and timeout rates are drawn per request from the seeded
// generator: over 120 requests the counts fall near the rates, and only
// the acknowledged requests are in the ledger.
func TestErrorAndTimeoutRatesAreMetStatistically(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	h := startSim(t, db, rules(t, func(r *sim.Rules) {
		r.Payers[1].Faults = sim.Faults{ErrorRate: 0.2, TimeoutRate: 0.1, TimeoutHold: time.Millisecond}
	}))
	p := newProvider(t, h, "provider-1")
	const n = 120
	var accepted, unavailable, dropped int
	for range n {
		status, code := p.send(message{action: payer.EligibilityCheck, recipient: "payer-b", bundle: eligibilityBundle("ANY-1")})
		switch {
		case status == http.StatusAccepted:
			accepted++
		case status == http.StatusServiceUnavailable && code == hcx.ErrServiceUnavailable:
			unavailable++
		case status == 0:
			dropped++ // the connection closed without an answer
		default:
			t.Fatalf("unexpected answer %d %s", status, code)
		}
	}
	// Binomial(120, 0.2): mean 24, sd 4.4; (120, 0.1): mean 12, sd 3.3.
	// The bounds are about 3.5 sd either side.
	if unavailable < 9 || unavailable > 39 || dropped < 2 || dropped > 24 {
		t.Fatalf("503s %d (want about 24), dropped %d (want about 12) of %d", unavailable, dropped, n)
	}
	s, err := h.sim.Ledger().Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Messages != accepted {
		t.Fatalf("ledger holds %d messages, %d were acknowledged", s.Messages, accepted)
	}
}

func TestThePayerTakesItsAnswerDelay(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	h := startSim(t, db, rules(t, func(r *sim.Rules) {
		r.Payers[0].Faults.AnswerDelay = sim.Latency{Kind: "fixed", Value: 300 * time.Millisecond}
	}))
	p := newProvider(t, h, "provider-1")
	corr := uuid.NewString()
	sent := time.Now()
	p.send(message{action: payer.EligibilityCheck, recipient: "payer-a", correlation: corr, bundle: eligibilityBundle("GOLD-1")})
	p.waitFor(1, onCorrelation(corr))
	if took := time.Since(sent); took < 300*time.Millisecond {
		t.Fatalf("the answer came after %v, before the payer's 300ms", took)
	}
}
