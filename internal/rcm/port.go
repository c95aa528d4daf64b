package rcm

import (
	"context"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
)

// Payer is how a journey reaches a payer: one message out, acknowledged
// synchronously; the answer comes back later as a payer.Message through
// Service.Receive. internal/payer/hcx implements it over the HCX protocol.
//
// Send is called from a step's Do (outside any transaction) with the step's
// idempotency key in the request, so a retry or a crash re-delivery sends
// the same api_call_id and the payer applies it once. A *payer.Error is a
// refusal no retry can fix; any other error is transient.
type Payer interface {
	Send(ctx context.Context, req payer.Request) (payer.Ack, error)
}

// Directory is what careflow knows of the payers it can reach: the
// participant registry (cached), for GET /payers and for refusing a journey
// to an unknown payer before it starts.
type Directory interface {
	// Payers lists the participants that act as payers.
	Payers(ctx context.Context) ([]payer.Participant, error)
	// Lookup finds one participant by code; false when the registry has
	// none (or it is not active).
	Lookup(ctx context.Context, code string) (payer.Participant, bool, error)
}

// Inbox is the receiving side's contract, declared here for the adapter:
// internal/payer/hcx verifies, decrypts and stores a message, then calls
// Receive in the same transaction. Receive matches the message to its
// journey (by correlation id, else workflow id, else the claims a payment
// names) and hands it to the journey's run as a signal, deduplicated by
// api_call_id. An error (errs.NotFound for an unknown correlation,
// errs.Invalid for a sender that is not the journey's payer) rolls the
// whole transaction back, so a refused message changes nothing; the adapter
// answers it with the protocol's error.
type Inbox interface {
	Receive(ctx context.Context, tx store.Tx, msg payer.Message) error
}
