package sim

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/store"
)

// inboundActions are the actions a provider sends to the gateway.
var inboundActions = []payer.Action{
	payer.EligibilityCheck, payer.PreauthSubmit, payer.ClaimSubmit,
	payer.CommunicationOnRequest, payer.PaymentNoticeOnRequest, payer.StatusCheck,
}

// maxBody bounds a request body.
const maxBody = 8 << 20

// signingKeyOf resolves a provider's token-signing key from the registry.
// The simulator's own participants never call the gateway.
func (r *registry) signingKeyOf(_ context.Context, code string) (*rsa.PublicKey, error) {
	p, ok := r.lookup(code)
	if !ok || p.isSimulated || !strings.EqualFold(p.rec.Status, "Active") {
		return nil, errors.New("the issuer is not a registered, active provider")
	}
	pub, ok := p.signing.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("the issuer's signing certificate is not RSA")
	}
	return pub, nil
}

// serveAction is the gateway's handler of one provider action: it checks
// the caller's bearer token and the message's protected headers, applies
// the recipient payer's faults, lets the payer decrypt, and records and
// processes the message in one transaction before acknowledging it (202).
// A refusal is the protocol's ProtocolResponse with its error code; a
// refused message leaves nothing in the ledger.
func (s *Simulator) serveAction(action payer.Action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		now := s.now()
		refuse := func(h hcx.Header, code string, status int, msg string) {
			hcx.WriteError(w, h, &payer.Error{Code: code, Message: msg, HTTPStatus: status}, now)
		}
		claims, err := hcx.VerifyToken(ctx, hcx.BearerToken(r), s.gateway.code, now, s.reg.signingKeyOf)
		if err != nil {
			refuse(hcx.Header{}, hcx.ErrAccessDenied, http.StatusUnauthorized, "the bearer token is missing or not valid")
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			refuse(hcx.Header{}, hcx.ErrInvalidPayload, http.StatusRequestEntityTooLarge, "the body is unreadable or too large")
			return
		}
		compact, err := hcx.ParseBody(body)
		if err != nil {
			writeRefusal(w, hcx.Header{}, err, now)
			return
		}
		h, err := hcx.PeekHeader(compact)
		if err != nil {
			writeRefusal(w, hcx.Header{}, err, now)
			return
		}
		if h.SenderCode != claims.Issuer {
			refuse(h, hcx.ErrInvalidSender, http.StatusBadRequest, hcx.HeaderSenderCode+": is not the bearer token's issuer")
			return
		}
		p, ok := s.payers[h.RecipientCode]
		if !ok {
			refuse(h, hcx.ErrInvalidRecipient, http.StatusBadRequest, hcx.HeaderRecipientCode+": no payer with this code is behind this gateway")
			return
		}
		switch s.dice.requestFault(p.rules.Faults) {
		case faultError:
			refuse(h, hcx.ErrServiceUnavailable, http.StatusServiceUnavailable, "the payer is unavailable; send the message again later")
			return
		case faultTimeout:
			// Held past the sender's patience, then dropped: the
			// connection closes without an answer and nothing is kept.
			s.wait(ctx, p.rules.Faults.TimeoutHold)
			panic(http.ErrAbortHandler)
		}
		s.wait(ctx, s.dice.latency(p.rules.Faults.Latency))
		dh, payload, err := hcx.Decrypt(compact, []*rsa.PrivateKey{p.key})
		if err != nil {
			writeRefusal(w, h, err, now)
			return
		}
		if err := s.accept(ctx, action, p, dh, payload); err != nil {
			writeRefusal(w, dh, err, now)
			return
		}
		hcx.WriteAck(w, dh, now)
	}
}

// wait sleeps for d, or until the request ends or the simulator stops.
func (s *Simulator) wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.holdCtx.Done():
	}
}

// writeRefusal answers a *payer.Error as the protocol's refusal, and any
// other error as an internal one (logged without the payload).
func writeRefusal(w http.ResponseWriter, h hcx.Header, err error, now time.Time) {
	var pe *payer.Error
	if errors.As(err, &pe) {
		hcx.WriteError(w, h, pe, now)
		return
	}
	hcx.WriteError(w, h, &payer.Error{Code: hcx.ErrInternalServerError, Message: "the message could not be processed; send it again", HTTPStatus: http.StatusInternalServerError}, now)
}

// fingerprint is what makes a re-send identical: the same sender sending
// the same exchange's message again. The timestamp is left out (a retry
// stamps its own time), and so is the ciphertext (a retry encrypts again).
func fingerprint(action payer.Action, h hcx.Header) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{string(action), h.SenderCode, h.RecipientCode, h.CorrelationID, h.WorkflowID, h.Status}, "\x00")))
	return hex.EncodeToString(sum[:])
}

// accept records a message and processes it in one transaction. An
// identical re-send of an accepted api_call_id is counted and not
// processed again; the same api_call_id with other headers is refused.
func (s *Simulator) accept(ctx context.Context, action payer.Action, p *payerState, h hcx.Header, payload []byte) error {
	if sender, ok := s.reg.lookup(h.SenderCode); !ok || sender.isSimulated {
		return &payer.Error{Code: hcx.ErrInvalidSender, Message: hcx.HeaderSenderCode + ": not a registered provider", HTTPStatus: http.StatusBadRequest}
	}
	fp := fingerprint(action, h)
	err := s.db.Tx(ctx, func(tx store.Tx) error {
		n, err := tx.Exec(ctx, `INSERT INTO sim_messages (api_call_id, sender, recipient, action, correlation_id, workflow_id, fingerprint, received_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (api_call_id) DO NOTHING`,
			h.APICallID, h.SenderCode, h.RecipientCode, string(action), h.CorrelationID, h.WorkflowID, fp, s.now())
		if err != nil {
			return err
		}
		if n == 0 {
			var old string
			if err := tx.QueryRow(ctx, `SELECT fingerprint FROM sim_messages WHERE api_call_id = $1`, h.APICallID).Scan(&old); err != nil {
				return err
			}
			if old != fp {
				return &payer.Error{Code: hcx.ErrInvalidAPICallID, Message: hcx.MsgDuplicateAPICallID + ", with other headers", HTTPStatus: http.StatusBadRequest}
			}
			_, err := tx.Exec(ctx, `UPDATE sim_messages SET resends = resends + 1 WHERE api_call_id = $1`, h.APICallID)
			return err
		}
		return s.process(ctx, tx, action, p, h, payload)
	})
	if err != nil {
		var pe *payer.Error
		if !errors.As(err, &pe) {
			s.logger.Error("payer-sim: message not processed", "action", string(action), "api_call_id", h.APICallID, "err", err)
		}
		return err
	}
	s.del.wake()
	return nil
}
