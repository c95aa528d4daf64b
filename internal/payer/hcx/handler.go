package hcx

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
)

// Inbox is what the handler hands a verified, decrypted, stored message
// to, in the transaction that stored it (internal/rcm's Service.Receive
// satisfies it; the same method set as rcm.Inbox, declared here so hcx does
// not import rcm). An error rolls the transaction back: errs.NotFound is an
// unknown correlation, errs.Invalid a message the journey refuses (a
// sender that is not its payer when the field is "sender").
type Inbox interface {
	Receive(ctx context.Context, tx store.Tx, msg payer.Message) error
}

// The actions a provider receives from the gateway.
var inboundActions = map[payer.Action]bool{
	payer.EligibilityOnCheck:   true,
	payer.PreauthOnSubmit:      true,
	payer.ClaimOnSubmit:        true,
	payer.CommunicationRequest: true,
	payer.PaymentNoticeRequest: true,
	payer.StatusOnCheck:        true,
}

// Bounds of what an inbound message may be.
const (
	DefaultMaxBody = 4 << 20
	// maxFuture and maxAge bound x-hcx-timestamp: a gateway may deliver a
	// message late (it retries), never from the future beyond clock skew.
	maxFuture = 5 * time.Minute
	maxAge    = 7 * 24 * time.Hour
	// receiveTimeout bounds one inbound call: reading, the registry, the
	// transaction.
	receiveTimeout = 30 * time.Second
)

// handler receives the gateway's calls at POST /hcx/v1/{entity}/{op}.
type handler struct {
	self        Identity
	gatewayCode string
	registry    *Registry
	log         *Log
	db          *store.DB
	inbox       Inbox
	maxBody     int64
	now         func() time.Time
	logger      *slog.Logger
}

// Path is where careflow receives HCX calls: Path + action.
const Path = "/hcx/v1/"

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path+"{entity}/{op}", h.receive)
	return mux
}

// receive verifies, decrypts, checks and stores one message, and hands it
// to the inbox in the same transaction. Every refusal is the protocol's
// ProtocolResponse; nothing is stored unless the message is accepted.
func (h *handler) receive(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), receiveTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	now := h.now()
	action := payer.Action(r.PathValue("entity") + "/" + r.PathValue("op"))
	var hdr Header
	refuse := func(pe *payer.Error) {
		if pe.HTTPStatus == 0 {
			pe.HTTPStatus = http.StatusBadRequest
		}
		h.logger.LogAttrs(r.Context(), slog.LevelWarn, "hcx message refused", slog.String("action", string(action)),
			slog.String("api_call_id", hdr.APICallID), slog.String("code", pe.Code), slog.Int("status", pe.HTTPStatus))
		WriteError(w, hdr, pe, now)
	}
	if !inboundActions[action] {
		refuse(&payer.Error{Code: ErrInvalidPayload, Message: "careflow does not receive this action", HTTPStatus: http.StatusNotFound})
		return
	}
	if err := h.authenticate(r.Context(), r, now); err != nil {
		refuse(&payer.Error{Code: ErrAccessDenied, Message: "the bearer token is missing or does not verify", HTTPStatus: http.StatusUnauthorized})
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			refuse(&payer.Error{Code: ErrInvalidPayload, Message: "the body is over the size limit", HTTPStatus: http.StatusRequestEntityTooLarge})
			return
		}
		refuse(&payer.Error{Code: ErrInvalidPayload, Message: "the body could not be read"})
		return
	}
	compact, err := ParseBody(raw)
	if err != nil {
		refuse(asProtocol(err))
		return
	}
	hdr, payload, err := Decrypt(compact, h.self.Keys)
	if err != nil {
		refuse(asProtocol(err))
		return
	}
	if pe := h.check(r.Context(), hdr, now); pe != nil {
		refuse(pe)
		return
	}
	msg := payer.Message{
		Action: action, Sender: hdr.SenderCode, Recipient: hdr.RecipientCode, APICallID: hdr.APICallID,
		CorrelationID: hdr.CorrelationID, WorkflowID: hdr.WorkflowID, Status: hdr.Status, Timestamp: hdr.Timestamp,
		ErrorDetails: hdr.ErrorDetails,
	}
	ex := &Exchange{StoredAt: now, Payload: payload}
	if len(payload) > 0 || hdr.Status != payer.StatusResponseError {
		reading, err := ReadBundle(payload)
		if err != nil {
			refuse(&payer.Error{Code: ErrInvalidDomainPayload, Message: "the payload is not a readable FHIR Bundle"})
			return
		}
		msg.Bundle, msg.Warnings = payload, reading.Warnings
		ex.Warnings = reading.Warnings
	}
	if hdr.Status == payer.StatusResponseError {
		ex.ErrorCode = errorDetailsCode(hdr.ErrorDetails)
	}
	var replay bool
	err = h.db.Tx(r.Context(), func(tx store.Tx) error {
		id, inserted, err := h.log.insert(r.Context(), tx, DirectionIn, action, hdr, ex)
		if err != nil {
			return err
		}
		if !inserted {
			replay = true
			return nil
		}
		msg.ExchangeID = id
		return h.inbox.Receive(r.Context(), tx, msg)
	})
	switch {
	case replay:
		refuse(&payer.Error{Code: ErrInvalidAPICallID, Message: MsgDuplicateAPICallID})
	case err != nil:
		refuse(receiveError(err))
	default:
		h.logger.LogAttrs(r.Context(), slog.LevelInfo, "hcx message received", slog.String("action", string(action)),
			slog.String("api_call_id", hdr.APICallID), slog.String("exchange_id", msg.ExchangeID))
		WriteAck(w, hdr, now)
	}
}

// authenticate verifies the gateway's bearer token. A signature that fails
// with a cached certificate is checked once more with a fresh one (the
// gateway may have rotated its key), at most every minRefresh.
func (h *handler) authenticate(ctx context.Context, r *http.Request, now time.Time) error {
	tok := BearerToken(r)
	if tok == "" {
		return errors.New("no bearer token")
	}
	keyOf := func(ctx context.Context, code string) (*rsa.PublicKey, error) {
		if code != h.gatewayCode {
			return nil, errors.New("the token is not the gateway's")
		}
		return h.registry.SigningKey(ctx, code)
	}
	_, err := VerifyToken(ctx, tok, h.self.Code, now, keyOf)
	if errors.Is(err, ErrTokenSignature) && h.registry.Refresh(h.gatewayCode) {
		_, err = VerifyToken(ctx, tok, h.self.Code, now, keyOf)
	}
	return err
}

// check applies what the recipient verifies of the headers: the message is
// for careflow, from a known active participant, at a sane time.
func (h *handler) check(ctx context.Context, hdr Header, now time.Time) *payer.Error {
	if hdr.RecipientCode != h.self.Code {
		return &payer.Error{Code: ErrInvalidRecipient, Message: HeaderRecipientCode + ": the message is not for this participant"}
	}
	if hdr.Timestamp.After(now.Add(maxFuture)) || hdr.Timestamp.Before(now.Add(-maxAge)) {
		return &payer.Error{Code: ErrInvalidTimestamp, Message: HeaderTimestamp + ": outside the accepted window"}
	}
	_, ok, err := h.registry.Lookup(ctx, hdr.SenderCode)
	if err != nil {
		return &payer.Error{Code: ErrServiceUnavailable, Message: "the registry could not be reached", HTTPStatus: http.StatusServiceUnavailable}
	}
	if !ok {
		return &payer.Error{Code: ErrInvalidSender, Message: HeaderSenderCode + ": not an active participant"}
	}
	return nil
}

// asProtocol returns a codec error as the protocol's refusal.
func asProtocol(err error) *payer.Error {
	var pe *payer.Error
	if errors.As(err, &pe) {
		return pe
	}
	return &payer.Error{Code: ErrInternalServerError, Message: "the message could not be processed", HTTPStatus: http.StatusInternalServerError}
}

// receiveError maps what the inbox (or the log) answered to the protocol.
func receiveError(err error) *payer.Error {
	switch errs.KindOf(err) {
	case errs.NotFound:
		return &payer.Error{Code: ErrInvalidCorrelationID, Message: "no exchange of this correlation id is waiting for an answer"}
	case errs.Invalid, errs.Unprocessable, errs.Conflict:
		if e, ok := errs.As(err); ok && e.Field == "sender" {
			return &payer.Error{Code: ErrInvalidSender, Message: "the sender is not the payer of this exchange"}
		}
		return &payer.Error{Code: ErrInvalidDomainPayload, Message: "the message does not fit its exchange"}
	case errs.Unavailable:
		return &payer.Error{Code: ErrServiceUnavailable, Message: "try again later", HTTPStatus: http.StatusServiceUnavailable}
	}
	return &payer.Error{Code: ErrInternalServerError, Message: "the message could not be processed", HTTPStatus: http.StatusInternalServerError}
}

// errorDetailsCode reads the code of x-hcx-error_details.
func errorDetailsCode(details []byte) string {
	var d ResponseError
	if json.Unmarshal(details, &d) != nil {
		return ""
	}
	return d.Code
}
