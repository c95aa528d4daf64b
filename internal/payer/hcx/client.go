package hcx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/payer"
)

// Client sends careflow's messages to payers through the gateway. It
// implements rcm.Payer.
type Client struct {
	self        Identity
	gatewayURL  string
	gatewayCode string
	http        *outbound.Client
	registry    *Registry
	tokens      *Tokens
	log         *Log
	now         func() time.Time
}

// errTransient is what a send that may succeed later returns: the network,
// a timeout, a 5xx or an answer that is not the protocol's. It never
// carries the URL or the payload.
var errTransient = errors.New("hcx: the gateway did not acknowledge the message; send it again")

// Send encrypts a request for its recipient and POSTs it to the gateway's
// {action} endpoint. The message's api_call_id is derived from the
// request's idempotency key and it is logged (sealed) before it leaves, once
// per api_call_id. A 202 is the Ack. A ProtocolResponse refusal is a
// *payer.Error (permanent), except the gateway saying this api_call_id was
// already received: an earlier attempt got through, so that is an Ack too.
// Anything else is a transient error.
func (c *Client) Send(ctx context.Context, req payer.Request) (payer.Ack, error) {
	if err := validateRequest(req); err != nil {
		return payer.Ack{}, err
	}
	now := c.now()
	h := Header{
		SenderCode: c.self.Code, RecipientCode: req.Recipient,
		APICallID: APICallID(req.IdempotencyKey), CorrelationID: req.CorrelationID, WorkflowID: req.WorkflowID,
		Timestamp: now, Status: req.Status,
	}
	if h.Status == "" {
		h.Status = payer.StatusRequestInitiated
	}
	if err := h.Validate(); err != nil {
		return payer.Ack{}, errs.Wrap(errs.Invalid, err, "hcx: the request's headers")
	}
	logID, err := c.log.recordOut(ctx, req.Action, h, req.Bundle, now)
	if err != nil {
		return payer.Ack{}, err
	}
	ack, err := c.post(ctx, req, h)
	var pe *payer.Error
	if errors.As(err, &pe) && pe.Code == ErrInvalidEncryption && c.registry.Refresh(req.Recipient) {
		// The recipient may have rotated its key: ask the registry again,
		// once.
		ack, err = c.post(ctx, req, h)
	}
	if errors.As(err, &pe) {
		if lerr := c.log.setErrorCode(ctx, logID, pe.Code); lerr != nil {
			return payer.Ack{}, lerr
		}
	}
	return ack, err
}

func validateRequest(req payer.Request) error {
	switch {
	case req.Action == "" || strings.Contains(string(req.Action), ".."):
		return errs.E(errs.Invalid, "an HCX action is required").InField("action")
	case req.Recipient == "":
		return errs.E(errs.Invalid, "the recipient's participant code is required").InField("recipient")
	case req.IdempotencyKey == "":
		return errs.E(errs.Invalid, "an idempotency key is required").InField("idempotency_key")
	case len(req.Bundle) == 0:
		return errs.E(errs.Invalid, "a Bundle is required").InField("bundle")
	}
	return nil
}

func (c *Client) post(ctx context.Context, req payer.Request, h Header) (payer.Ack, error) {
	key, err := c.registry.EncryptionKey(ctx, req.Recipient)
	if errs.Is(err, errs.NotFound) {
		return payer.Ack{}, &payer.Error{Code: ErrInvalidRecipient, Message: "the registry has no active participant of the recipient's code"}
	}
	if err != nil {
		return payer.Ack{}, fmt.Errorf("%w (registry: %v)", errTransient, errs.KindOf(err))
	}
	compact, err := Encrypt(h, req.Bundle, key)
	if err != nil {
		return payer.Ack{}, err
	}
	tok, err := c.tokens.For(c.self.Keys[0], c.gatewayCode)
	if err != nil {
		return payer.Ack{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.gatewayURL+"/"+string(req.Action), bytes.NewReader(MarshalBody(compact)))
	if err != nil {
		return payer.Ack{}, errs.E(errs.Internal, "hcx: the gateway URL is not a URL")
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.http.Do(ctx, hreq)
	if err != nil {
		if outbound.KindOf(err) == outbound.NotAllowed {
			return payer.Ack{}, errs.E(errs.Internal, "hcx: the gateway's host is not allow-listed")
		}
		return payer.Ack{}, errTransient
	}
	pr, err := ReadAnswer(resp.StatusCode, resp.Body)
	var pe *payer.Error
	switch {
	case err == nil && resp.StatusCode == http.StatusAccepted,
		err == nil && resp.StatusCode == http.StatusOK:
		return ackOf(h, pr), nil
	case errors.As(err, &pe) && IsDuplicateAPICallID(pe):
		return ackOf(h, pr), nil
	case errors.As(err, &pe) && resp.StatusCode < 500:
		return payer.Ack{}, pe
	default:
		return payer.Ack{}, errTransient
	}
}

func ackOf(h Header, pr ProtocolResponse) payer.Ack {
	ack := payer.Ack{APICallID: h.APICallID, CorrelationID: h.CorrelationID, Timestamp: h.Timestamp}
	if pr.Timestamp > 0 {
		ack.Timestamp = time.UnixMilli(pr.Timestamp)
	}
	return ack
}
