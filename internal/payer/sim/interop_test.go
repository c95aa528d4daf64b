package sim_test

import (
	"context"
	"crypto/rsa"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/payer/sim"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// recordingInbox is the journeys' side of careflow's participant: it keeps
// what the handler hands it.
type recordingInbox struct {
	mu   sync.Mutex
	msgs []payer.Message
	got  chan struct{}
}

func (in *recordingInbox) Receive(_ context.Context, _ store.Tx, m payer.Message) error {
	in.mu.Lock()
	in.msgs = append(in.msgs, m)
	in.mu.Unlock()
	in.got <- struct{}{}
	return nil
}

func (in *recordingInbox) waitFor(t *testing.T, n int) []payer.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		in.mu.Lock()
		have := append([]payer.Message(nil), in.msgs...)
		in.mu.Unlock()
		if len(have) >= n {
			return have
		}
		select {
		case <-in.got:
		case <-deadline:
			t.Fatalf("waited for %d messages, have %d", n, len(have))
		}
	}
}

// careflow's own provider side (internal/payer/hcx: registration, the
// client that sends, the handler that receives) against the simulator:
// one claim sent with Client.Send comes back as the claim response and
// the payment through Handler, and a retried send is not a second claim.
func TestCareflowsParticipantAndTheSimulatorSpeakOneProtocol(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		h := startSim(t, db, rules(t, nil))
		key, cert, err := hcx.DevIdentity(filepath.Join(keyDir, "keys", "provider-1"), "provider-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		hosts, err := hcx.AllowHosts(h.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		out, err := outbound.New(outbound.Config{Hosts: hosts})
		if err != nil {
			t.Fatal(err)
		}
		part, err := hcx.NewParticipant(hcx.Config{
			Identity: hcx.Identity{Code: "provider-1", Keys: []*rsa.PrivateKey{key}, Cert: cert}, Name: "Provider One",
			GatewayURL: h.srv.URL, GatewayCode: h.sim.GatewayCode(), Outbound: out, DB: db, Ring: h.ring,
		})
		if err != nil {
			t.Fatal(err)
		}
		inbox := &recordingInbox{got: make(chan struct{}, 100)}
		careflow := httptest.NewServer(part.Handler(inbox))
		t.Cleanup(careflow.Close)
		// The endpoint is where the actions go under: {endpoint_url}/{action}.
		if err := part.RegisterDev(ctx, careflow.URL+strings.TrimSuffix(hcx.Path, "/")); err != nil {
			t.Fatalf("register: %v", err)
		}
		req := payer.Request{Action: payer.ClaimSubmit, Recipient: "payer-a", CorrelationID: uuid.NewString(),
			WorkflowID: uuid.NewString(), IdempotencyKey: "run-1/submit", Bundle: claimBundle("claim", "CLM-CF", "GOLD-1", "", "", [2]string{"99213", "100"})}
		ack, err := part.Client().Send(ctx, req)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		if ack.CorrelationID != req.CorrelationID || ack.APICallID != hcx.APICallID(req.IdempotencyKey) {
			t.Fatalf("ack %+v", ack)
		}
		// A retry of the same step (same idempotency key) is acknowledged and
		// not processed again.
		if _, err := part.Client().Send(ctx, req); err != nil {
			t.Fatalf("retry: %v", err)
		}
		msgs := inbox.waitFor(t, 2)
		if msgs[0].Action != payer.ClaimOnSubmit || msgs[1].Action != payer.PaymentNoticeRequest ||
			msgs[0].CorrelationID != req.CorrelationID || msgs[1].WorkflowID != req.WorkflowID || msgs[0].Sender != "payer-a" {
			t.Fatalf("careflow received %s, %s", msgs[0].Action, msgs[1].Action)
		}
		if recs, _ := h.sim.Ledger().Claims(ctx, sim.ClaimQuery{Identifier: "CLM-CF"}); len(recs) != 1 || recs[0].Outcome != sim.OutcomeApproved {
			t.Fatalf("ledger: %+v", recs)
		}
		if s, _ := h.sim.Ledger().Summary(ctx); s.Resends != 1 || len(s.ProcessedTwice) != 0 {
			t.Fatalf("summary: %+v", s)
		}
	})
}
