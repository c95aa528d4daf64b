package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// domainErr is a request the payer cannot read as the action's FHIR
// content: answered with a response.error callback for a request, refused
// synchronously for an answer (communication/on_request...).
type domainErr struct {
	code string
	rule string
}

func (e *domainErr) Error() string { return e.code + ": " + e.rule }

func domainError(rule string) error { return &domainErr{code: hcx.ErrInvalidDomainPayload, rule: rule} }

func wrongDomain(rule string) error { return &domainErr{code: hcx.ErrWrongDomainPayload, rule: rule} }

// The AAD of the sealed bundles of sim_claims rows.
func requestAAD(id string) phi.AAD { return phi.AAD{Table: "sim_claims", Field: "request", Record: id} }
func answerAAD(id string) phi.AAD  { return phi.AAD{Table: "sim_claims", Field: "answer", Record: id} }

// exchange is one message being processed.
type exchange struct {
	action  payer.Action
	payer   *payerState
	h       hcx.Header
	payload []byte
	now     time.Time
}

// onAction is the answer action of a request action.
var onAction = map[payer.Action]payer.Action{
	payer.EligibilityCheck: payer.EligibilityOnCheck,
	payer.PreauthSubmit:    payer.PreauthOnSubmit,
	payer.ClaimSubmit:      payer.ClaimOnSubmit,
	payer.StatusCheck:      payer.StatusOnCheck,
}

// process is the payer's work on an accepted message, in the transaction
// that records it: the callbacks it enqueues commit with it.
func (s *Simulator) process(ctx context.Context, tx store.Tx, action payer.Action, p *payerState, h hcx.Header, payload []byte) error {
	x := &exchange{action: action, payer: p, h: h, payload: payload, now: s.now()}
	var err error
	switch action {
	case payer.EligibilityCheck:
		err = s.eligibility(ctx, tx, x)
	case payer.PreauthSubmit, payer.ClaimSubmit:
		err = s.submit(ctx, tx, x)
	case payer.StatusCheck:
		err = s.status(ctx, tx, x)
	case payer.CommunicationOnRequest:
		err = s.informationReceived(ctx, tx, x)
	case payer.PaymentNoticeOnRequest:
		err = s.paymentAcknowledged(ctx, tx, x)
	}
	de, ok := err.(*domainErr)
	if !ok {
		return err
	}
	if on, isRequest := onAction[action]; isRequest {
		// The payer answers what it cannot read with response.error.
		details, _ := json.Marshal(hcx.ResponseError{Code: de.code, Message: de.rule})
		return s.enqueue(ctx, tx, outgoing{payer: p, provider: h.SenderCode, action: on, correlation: h.CorrelationID,
			workflow: h.WorkflowID, status: payer.StatusResponseError, errorDetails: details, kind: "error", due: x.now})
	}
	return &payer.Error{Code: de.code, Message: de.rule, HTTPStatus: http.StatusBadRequest}
}

// bundle reads the message's payload.
func (x *exchange) bundle() (*requestBundle, error) { return readRequest(x.payload) }

func (s *Simulator) memberIndex(p *payerState, member string) (string, error) {
	if member == "" {
		return "", nil
	}
	return s.ring.IdentifierIndex("payer-sim.member", p.code+"|"+member)
}

// usedThisYear is the benefit the payer has approved for a member in the
// calendar year of now.
func (s *Simulator) usedThisYear(ctx context.Context, tx store.Tx, p *payerState, memberIdx string, now time.Time) (Amount, error) {
	if memberIdx == "" {
		return 0, nil
	}
	yearStart := time.Date(now.UTC().Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	var used int64
	err := tx.QueryRow(ctx, `SELECT COALESCE(SUM(benefit), 0) FROM sim_claims
		WHERE payer = $1 AND member_index = $2 AND claim_use = $3 AND adjudicated_at >= $4`,
		p.code, memberIdx, useClaim, yearStart).Scan(&used)
	return Amount(used), err
}

func (s *Simulator) eligibility(ctx context.Context, tx store.Tx, x *exchange) error {
	rb, err := x.bundle()
	if err != nil {
		return err
	}
	req, member, err := rb.eligibility()
	if err != nil {
		return err
	}
	pl := x.payer.rules.planFor(member)
	idx, err := s.memberIndex(x.payer, member)
	if err != nil {
		return err
	}
	used, err := s.usedThisYear(ctx, tx, x.payer, idx, x.now)
	if err != nil {
		return err
	}
	b := answerBundle(x.now, eligibilityResponse(x.payer.rules, req, pl, used, x.now))
	return s.enqueue(ctx, tx, outgoing{payer: x.payer, provider: x.h.SenderCode, action: payer.EligibilityOnCheck,
		correlation: x.h.CorrelationID, workflow: x.h.WorkflowID, status: payer.StatusResponseComplete, bundle: b, kind: "eligibility", due: x.now})
}

// claimRow is what the ledger keeps of a claim for deciding it later.
type claimRow struct {
	id, provider, correlation, workflow, memberIdx string
}

// submit receives a claim or pre-authorization: it records it, then asks
// for information first when a rule says so, or decides at once.
func (s *Simulator) submit(ctx context.Context, tx store.Tx, x *exchange) error {
	rb, err := x.bundle()
	if err != nil {
		return err
	}
	c, err := rb.claim()
	if err != nil {
		return err
	}
	want := useClaim
	if x.action == payer.PreauthSubmit {
		want = usePreauth
	}
	if c.Claim.Use != want {
		return wrongDomain("Claim.use: " + want + " is expected on " + string(x.action))
	}
	row := claimRow{id: uuid.NewString(), provider: x.h.SenderCode, correlation: x.h.CorrelationID, workflow: x.h.WorkflowID}
	if row.memberIdx, err = s.memberIndex(x.payer, c.MemberID); err != nil {
		return err
	}
	sealed, err := s.ring.Seal(requestAAD(row.id), x.payload)
	if err != nil {
		return err
	}
	question := x.payer.rules.informationQuestion(want, c.Lines)
	state := StateAdjudicated
	if question != "" {
		state = StateAwaitingInformation
	}
	if _, err := tx.Exec(ctx, `INSERT INTO sim_claims (id, payer, provider, claim_use, identifier, related, api_call_id, correlation_id,
		workflow_id, member_index, state, outcome, denial_code, currency, submitted, benefit, preauth_ref, request, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '', '', $12, 0, 0, '', $13, $14)`,
		row.id, x.payer.code, row.provider, want, c.Identifier.Value, c.Related, x.h.APICallID, row.correlation,
		row.workflow, row.memberIdx, state, x.payer.rules.Currency, sealed, x.now); err != nil {
		return err
	}
	if question != "" {
		// The CommunicationRequest carries the claim exchange's
		// correlation_id; the payer decides when the Communication
		// answering it arrives on the same correlation.
		b := answerBundle(x.now, communicationRequest(x.payer.rules, c, row.provider, question, x.now))
		return s.enqueue(ctx, tx, outgoing{payer: x.payer, provider: row.provider, action: payer.CommunicationRequest,
			correlation: row.correlation, workflow: row.workflow, status: payer.StatusRequestInitiated, bundle: b,
			claimID: row.id, kind: "communication", due: x.now})
	}
	return s.decide(ctx, tx, x.payer, row, c, x.now)
}

// decide adjudicates a recorded claim or pre-authorization and enqueues
// its answer and, for a claim with a benefit, its payment after the
// payer's delay (or, under the out-of-order fault, before the answer).
func (s *Simulator) decide(ctx context.Context, tx store.Tx, p *payerState, row claimRow, c *claimRequest, now time.Time) error {
	used, err := s.usedThisYear(ctx, tx, p, row.memberIdx, now)
	if err != nil {
		return err
	}
	approved, err := s.approvedPreauths(ctx, tx, p, row.provider, c.PreAuthRef)
	if err != nil {
		return err
	}
	d := p.rules.adjudicate(adjudication{
		Use: c.Claim.Use, Appeal: c.Related != "", MemberID: c.MemberID, Lines: c.Lines, UsedThisYear: used,
		Preauthorized: func(string) bool { return approved },
	})
	preAuthRef := ""
	if c.Claim.Use == usePreauth && (d.Outcome == OutcomeApproved || d.Outcome == OutcomePartial) {
		preAuthRef = "PA-" + strings.ToUpper(strings.ReplaceAll(uuid.NewString(), "-", "")[:12])
	}
	answer := answerBundle(now, claimResponse(p.rules, c, &d, preAuthRef, now))
	sealed, err := s.ring.Seal(answerAAD(row.id), answer)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE sim_claims SET state = $2, outcome = $3, denial_code = $4, submitted = $5, benefit = $6,
		preauth_ref = $7, answer = $8, adjudicated_at = $9 WHERE id = $1`,
		row.id, StateAdjudicated, d.Outcome, d.DenialCode, int64(d.Submitted), int64(d.Benefit), preAuthRef, sealed, now); err != nil {
		return err
	}
	on := payer.ClaimOnSubmit
	if c.Claim.Use == usePreauth {
		on = payer.PreauthOnSubmit
	}
	response := outgoing{payer: p, provider: row.provider, action: on, correlation: row.correlation, workflow: row.workflow,
		status: payer.StatusResponseComplete, bundle: answer, claimID: row.id, kind: "answer", due: now}
	if c.Claim.Use != useClaim || d.Benefit <= 0 {
		return s.enqueue(ctx, tx, response)
	}
	recon, notice := payment(p.rules, c.Identifier, row.provider, d.Benefit, now.Add(p.rules.PaymentDelay))
	pay := outgoing{payer: p, provider: row.provider, action: payer.PaymentNoticeRequest, correlation: row.correlation,
		workflow: row.workflow, status: payer.StatusRequestInitiated, bundle: answerBundle(now, recon, notice),
		claimID: row.id, kind: "payment", due: now.Add(p.rules.PaymentDelay)}
	if s.dice.chance(p.rules.Faults.OutOfOrderCallbacks) {
		pay.due = now
		if err := s.enqueue(ctx, tx, pay); err != nil {
			return err
		}
		return s.enqueue(ctx, tx, response)
	}
	if err := s.enqueue(ctx, tx, response); err != nil {
		return err
	}
	return s.enqueue(ctx, tx, pay)
}

// approvedPreauths reports whether one of refs names a pre-authorization
// this payer approved for this provider.
func (s *Simulator) approvedPreauths(ctx context.Context, tx store.Tx, p *payerState, provider string, refs []string) (bool, error) {
	for _, ref := range refs {
		if ref == "" {
			continue
		}
		var n int
		err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM sim_claims WHERE payer = $1 AND provider = $2 AND claim_use = $3
			AND preauth_ref = $4 AND outcome IN ($5, $6)`, p.code, provider, usePreauth, ref, OutcomeApproved, OutcomePartial).Scan(&n)
		if err != nil {
			return false, err
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

// openClaim reads a recorded claim's sealed request back.
func (s *Simulator) openClaim(ctx context.Context, id string, sealed []byte) (*claimRequest, error) {
	raw, err := s.ring.Open(ctx, requestAAD(id), sealed)
	if err != nil {
		return nil, err
	}
	rb, err := readRequest(raw)
	if err != nil {
		return nil, err
	}
	return rb.claim()
}

// informationReceived takes the Communication answering a payer's
// CommunicationRequest (on the claim exchange's correlation_id) and
// decides the claim that waited for it.
func (s *Simulator) informationReceived(ctx context.Context, tx store.Tx, x *exchange) error {
	rb, err := x.bundle()
	if err != nil {
		return err
	}
	if raw := rb.first("Communication"); raw == nil {
		return wrongDomain("the Bundle holds no Communication")
	}
	row := claimRow{provider: x.h.SenderCode}
	var sealed []byte
	err = tx.QueryRow(ctx, `SELECT id, correlation_id, workflow_id, member_index, request FROM sim_claims
		WHERE payer = $1 AND provider = $2 AND correlation_id = $3 AND state = $4`,
		x.payer.code, x.h.SenderCode, x.h.CorrelationID, StateAwaitingInformation).Scan(&row.id, &row.correlation, &row.workflow, &row.memberIdx, &sealed)
	if errors.Is(err, store.ErrNoRows) {
		return &payer.Error{Code: hcx.ErrInvalidCorrelationID, Message: hcx.HeaderCorrelationID + ": no request for information waits on this exchange", HTTPStatus: http.StatusBadRequest}
	}
	if err != nil {
		return err
	}
	c, err := s.openClaim(ctx, row.id, sealed)
	if err != nil {
		return fmt.Errorf("reopen the claim waiting for information: %w", err)
	}
	return s.decide(ctx, tx, x.payer, row, c, x.now)
}

// paymentAcknowledged takes the provider's acknowledgement of a payment
// notice: recorded (the message row) when it names a claim exchange the
// payer paid.
func (s *Simulator) paymentAcknowledged(ctx context.Context, tx store.Tx, x *exchange) error {
	var n int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM sim_claims WHERE payer = $1 AND provider = $2 AND correlation_id = $3 AND benefit > 0`,
		x.payer.code, x.h.SenderCode, x.h.CorrelationID).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return &payer.Error{Code: hcx.ErrInvalidCorrelationID, Message: hcx.HeaderCorrelationID + ": the payer sent no payment on this exchange", HTTPStatus: http.StatusBadRequest}
	}
	return nil
}

// status answers hcx/status with the current state of the claim exchange
// the request names (by correlation_id, else workflow_id: its latest
// claim or pre-authorization): the ClaimResponse sent, or a queued one
// while the payer waits for information.
func (s *Simulator) status(ctx context.Context, tx store.Tx, x *exchange) error {
	var id, state string
	var request, answer []byte
	err := tx.QueryRow(ctx, `SELECT id, state, request, answer FROM sim_claims
		WHERE payer = $1 AND provider = $2 AND (correlation_id = $3 OR ($4 <> '' AND workflow_id = $4))
		ORDER BY CASE WHEN correlation_id = $3 THEN 0 ELSE 1 END, received_at DESC, id DESC LIMIT 1`,
		x.payer.code, x.h.SenderCode, x.h.CorrelationID, x.h.WorkflowID).Scan(&id, &state, &request, &answer)
	if errors.Is(err, store.ErrNoRows) {
		return &payer.Error{Code: hcx.ErrInvalidCorrelationID, Message: "no claim exchange of this sender has this correlation_id or workflow_id", HTTPStatus: http.StatusBadRequest}
	}
	if err != nil {
		return err
	}
	var b []byte
	if state == StateAwaitingInformation {
		c, err := s.openClaim(ctx, id, request)
		if err != nil {
			return err
		}
		b = answerBundle(x.now, claimResponse(x.payer.rules, c, nil, "", x.now))
	} else if b, err = s.ring.Open(ctx, answerAAD(id), answer); err != nil {
		return err
	}
	return s.enqueue(ctx, tx, outgoing{payer: x.payer, provider: x.h.SenderCode, action: payer.StatusOnCheck,
		correlation: x.h.CorrelationID, workflow: x.h.WorkflowID, status: payer.StatusResponseComplete, bundle: b, kind: "status", due: x.now})
}
