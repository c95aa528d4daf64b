package rcm

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
)

var _ Inbox = (*Service)(nil)

// Receive hands a payer's message to its journey, in the adapter's
// transaction: matched by correlation id (an exchange careflow recorded
// before it sent), else by workflow id (the journey's id), else, for a
// payment, by the claims it names. The sender must be the journey's payer.
// The message becomes a signal whose id is the message's api_call_id, so a
// duplicate is a no-op, and which waits, stored, until the run reaches the
// wait for it: a payment before the claim's answer is kept for its turn.
func (s *Service) Receive(ctx context.Context, tx store.Tx, msg payer.Message) error {
	if msg.APICallID == "" {
		return errs.E(errs.Invalid, "a message needs an api_call_id").InField("x-hcx-api_call_id")
	}
	a := readMessage(msg)
	var (
		journeyID string
		exchange  *exchangeRow
	)
	if msg.CorrelationID != "" {
		x, err := findExchange(ctx, tx, msg.CorrelationID)
		switch {
		case err == nil:
			journeyID, exchange = x.JourneyID, x
		case !errors.Is(err, store.ErrNoRows):
			return err
		}
	}
	if journeyID == "" && msg.WorkflowID != "" {
		if j, err := loadJourney(ctx, tx, msg.WorkflowID, ""); err == nil {
			journeyID = j.ID
		} else if !errs.Is(err, errs.NotFound) {
			return err
		}
	}
	if journeyID == "" && msg.Action == payer.PaymentNoticeRequest {
		id, err := journeyOfPayment(ctx, tx, &a)
		if err != nil {
			return err
		}
		journeyID = id
	}
	if journeyID == "" {
		return errs.E(errs.NotFound, "no journey has this correlation id, workflow id or claim").InField("x-hcx-correlation_id")
	}
	j, err := loadJourney(ctx, tx, journeyID, "")
	if err != nil {
		return err
	}
	if msg.Sender != j.Payer {
		return errs.E(errs.Invalid, "the sender is not the payer of this journey").InField("x-hcx-sender_code")
	}
	name, err := signalName(msg.Action, exchange, j)
	if err != nil {
		return err
	}
	if _, err := s.cfg.Engine.SendSignalTx(ctx, tx, journeyID, engine.Signal{ID: msg.APICallID, Name: name, Payload: a}); err != nil {
		return err
	}
	if exchange != nil && len(msg.Warnings) > 0 {
		w, _ := json.Marshal(msg.Warnings)
		if _, err := tx.Exec(ctx, `UPDATE rcm_exchanges SET warnings = $2 WHERE correlation_id = $1`, exchange.CorrelationID, string(w)); err != nil {
			return err
		}
	}
	return nil
}

// signalName is the wait a message resumes, by its action and the
// exchange it answers.
func signalName(action payer.Action, x *exchangeRow, j *journeyRow) (string, error) {
	phaseOf := func() string {
		if x != nil && x.Action == string(payer.PreauthSubmit) {
			return signalPreauth
		}
		if x == nil && j.PreauthID != "" && j.ClaimID == "" {
			return signalPreauth
		}
		return signalClaim
	}
	switch action {
	case payer.EligibilityOnCheck:
		return signalEligibility, nil
	case payer.PreauthOnSubmit:
		return signalPreauth, nil
	case payer.ClaimOnSubmit:
		return signalClaim, nil
	case payer.StatusOnCheck, payer.CommunicationRequest:
		return phaseOf(), nil
	case payer.PaymentNoticeRequest:
		return signalPayment, nil
	}
	return "", errs.E(errs.Invalid, "careflow does not accept this action from a payer").InField("action")
}

// readMessage takes what a journey needs of a message, leniently: the
// resources of a collection or document Bundle (or a lone resource), the
// error details, and the warnings the adapter noted.
func readMessage(msg payer.Message) answer {
	a := answer{Action: string(msg.Action), Status: msg.Status, Correlation: msg.CorrelationID, Warnings: msg.Warnings}
	if len(msg.ErrorDetails) > 0 && json.Valid(msg.ErrorDetails) {
		a.Error = msg.ErrorDetails
	}
	if len(msg.Bundle) == 0 {
		return a
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(msg.Bundle, &b); err != nil {
		a.Warnings = append(a.Warnings, "payload: not a JSON resource")
		return a
	}
	if b.ResourceType != "Bundle" {
		a.Resources = []json.RawMessage{msg.Bundle}
		return a
	}
	for _, e := range b.Entry {
		if len(e.Resource) > 0 {
			a.Resources = append(a.Resources, e.Resource)
		}
	}
	return a
}

// journeyOfPayment finds the journey of the claims a payment names (a
// PaymentReconciliation's details, a PaymentNotice's request).
func journeyOfPayment(ctx context.Context, tx store.Tx, a *answer) (string, error) {
	var claims []string
	for _, pr := range a.find("PaymentReconciliation") {
		for _, d := range pr.list("detail") {
			claims = append(claims, idOf(d.reference("request")))
		}
	}
	for _, pn := range a.find("PaymentNotice") {
		claims = append(claims, idOf(pn.reference("request")))
	}
	for _, c := range claims {
		if c == "" || strings.ContainsAny(c, " \x00") {
			continue
		}
		var id string
		err := tx.QueryRow(ctx, `SELECT id FROM rcm_journeys WHERE claim_id = $1`, c).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, store.ErrNoRows) {
			return "", err
		}
	}
	return "", nil
}
