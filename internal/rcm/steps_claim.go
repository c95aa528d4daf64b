package rcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
)

// The steps from pre-authorization to payment.

// priceLines prices the procedure lines from the payer's fee schedule in
// the step's transaction; false names the first line without a price.
func (s *Service) priceLines(ctx context.Context, tx store.Tx, payerCode string, codes []string, on time.Time) ([]claimLine, string, error) {
	lines := procedureLines(codes)
	for i := range lines {
		p, ok, err := s.cfg.Fees.Price(ctx, tx, payerCode, lines[i].System, lines[i].Code, on)
		if err != nil {
			return nil, "", err
		}
		if !ok {
			return nil, fmt.Sprintf("procedure line %d", i+1), nil
		}
		lines[i].Unit = p.Amount
	}
	return lines, "", nil
}

// claimFor builds and stores a Claim (or pre-authorization) of the
// journey, with the Bundle to send and the exchange recorded.
func (s *Service) claimFor(ctx context.Context, tx store.Tx, sc *engine.StepContext, use string, related string) (engine.Result, *journeyRow, error) {
	ji, err := input(sc.Input)
	if err != nil {
		return engine.Result{}, nil, err
	}
	req := ji.Request
	service, _ := serviceDate(req.Encounter.Start)
	j, err := loadJourney(ctx, tx, sc.RunID, tx.Dialect().ForUpdate())
	if err != nil {
		return engine.Result{}, nil, err
	}
	lines, unpriced, err := s.priceLines(ctx, tx, req.Insurance.Payer, req.ProcedureCodes, service)
	if err != nil {
		return engine.Result{}, nil, err
	}
	if unpriced != "" {
		res, err := s.halt(ctx, tx, sc, "", "unpriced", "No price in the payer's fee schedule: "+unpriced)
		return res, nil, err
	}
	preAuthRef := ""
	if use == "claim" {
		preAuthRef = refOut(sc.Input, stepPreauthRes, "pre_auth_ref")
		if preAuthRef == "" {
			preAuthRef = ji.PreAuthRef
		}
	}
	coverage := j.Refs["coverage"]
	spec := claimSpec{Use: use, Kind: req.Kind, Patient: sc.PatientID, Coverage: idOf(coverage), Enc: idOf(j.Refs["encounter"]),
		Payer: req.Insurance.Payer, Currency: j.Currency, Provider: s.cfg.Provider, Diagnoses: dottedDiagnoses(req.DiagnosisCodes),
		Lines: lines, PreAuthRef: preAuthRef, Related: related, Service: service, Created: sc.Now}
	claim, total := claimResource(spec)
	body, _ := json.Marshal(claim)
	id, err := s.cfg.Records.CreateTx(ctx, tx, actor(sc), "Claim", body)
	if err != nil {
		return engine.Result{}, nil, err
	}
	raws := []json.RawMessage{withID(claim, id)}
	for _, r := range []string{"Patient/" + sc.PatientID, coverage, j.Refs["encounter"]} {
		if idOf(r) == "" {
			continue
		}
		b, err := s.readRaw(ctx, tx, sc, r)
		if err != nil {
			return engine.Result{}, nil, err
		}
		raws = append(raws, b)
	}
	b, err := bundle(raws...)
	if err != nil {
		return engine.Result{}, nil, err
	}
	action := payer.ClaimSubmit
	if use == "preauthorization" {
		action = payer.PreauthSubmit
	}
	corr := correlationID(sc)
	if err := recordExchange(ctx, tx, corr, sc.RunID, action, req.Insurance.Payer, id, sc.Now); err != nil {
		return engine.Result{}, nil, err
	}
	j, err = change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) {
		if use == "claim" {
			j.ClaimID, j.Billed = id, total
			j.Refs["claim"] = "Claim/" + id
		} else {
			j.PreauthID = id
			j.Refs["preauth"] = "Claim/" + id
		}
	})
	if err != nil {
		return engine.Result{}, nil, err
	}
	return engine.Result{Output: outgoing{Correlation: corr, Action: action, Bundle: b, Focus: "Claim/" + id}}, j, nil
}

// preauthStep decides whether the journey needs a pre-authorization (the
// request says so, or the payer's rules require one for a procedure; a
// scheduled procedure asks unless the request says not to) and, when it
// does, creates the Claim use=preauthorization and records its exchange.
func (s *Service) preauthStep() engine.Step {
	return engine.Step{Name: stepPreauth, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			ji, err := input(sc.Input)
			if err != nil {
				return engine.Result{}, err
			}
			req := ji.Request
			required := req.Kind == KindScheduled
			if req.PreauthRequired != nil {
				required = *req.PreauthRequired
			} else if !required {
				service, _ := serviceDate(req.Encounter.Start)
				for _, c := range req.ProcedureCodes {
					need, err := s.cfg.Fees.PreauthRequired(ctx, tx, req.Insurance.Payer, procedureSystem(c), c, service)
					if err != nil {
						return engine.Result{}, err
					}
					if need {
						required = true
						break
					}
				}
			}
			if !required {
				return engine.Result{Output: map[string]any{"required": false}}, nil
			}
			res, _, err := s.claimFor(ctx, tx, sc, "preauthorization", "")
			if err != nil || res.Goto != "" {
				return res, err
			}
			out := res.Output.(outgoing)
			return engine.Result{Output: map[string]any{"required": true, "correlation_id": out.Correlation, "action": out.Action,
				"bundle": out.Bundle, "focus": out.Focus}}, nil
		}}
}

// storeClaimResponse stores what careflow takes of a payer's ClaimResponse
// as a valid resource of its own, about the journey's claim.
func (s *Service) storeClaimResponse(ctx context.Context, tx store.Tx, sc *engine.StepContext, cr node, claimRef, use string, approved *int64, currency string) (string, error) {
	ji, _ := input(sc.Input)
	outcome := cr.str("outcome")
	switch outcome {
	case "queued", "complete", "error", "partial":
	default:
		outcome = "complete"
	}
	mine := obj{"resourceType": "ClaimResponse", "status": "active", "type": coding(systemClaimType, "professional"), "use": use,
		"patient": ref("Patient", sc.PatientID), "created": sc.Now.Format(time.RFC3339), "insurer": participant(ji.Request.Insurance.Payer, ""),
		"request": obj{"reference": claimRef}, "outcome": outcome}
	if d := cr.str("disposition"); d != "" {
		mine["disposition"] = d
	}
	if p := cr.str("preAuthRef"); p != "" {
		mine["preAuthRef"] = p
	}
	if approved != nil {
		mine["total"] = []any{obj{"category": coding("http://terminology.hl7.org/CodeSystem/adjudication", "benefit"),
			"amount": obj{"value": minorJSON(*approved, currency), "currency": currency}}}
	}
	if items := adjudications(cr, currency); len(items) > 0 {
		mine["item"] = items
	}
	if outcome == "error" {
		mine["error"] = []any{obj{"code": coding("http://terminology.hl7.org/CodeSystem/adjudication-error", safeCode(denialReason(cr)))}}
	}
	body, _ := json.Marshal(mine)
	return s.cfg.Records.CreateTx(ctx, tx, actor(sc), "ClaimResponse", body)
}

// adjudications are the payer's item adjudications careflow keeps: the
// categories of HL7's adjudication code system that the payment rule and
// billing read (submitted, eligible, copay, deductible, benefit), with
// their amounts and reason codes (a reduction's or a denial's), so the
// stored ClaimResponse shows why a claim was paid less than billed.
func adjudications(cr node, currency string) []any {
	var items []any
	for _, it := range cr.list("item") {
		var seq int
		if json.Unmarshal(it["itemSequence"], &seq) != nil || seq < 1 {
			continue
		}
		var adj []any
		for _, a := range it.list("adjudication") {
			cat := a.code("category")
			switch cat {
			case "submitted", "eligible", "copay", "deductible", "benefit":
			default:
				continue
			}
			mine := obj{"category": coding("http://terminology.hl7.org/CodeSystem/adjudication", cat)}
			if v, ok := a.money("amount"); ok {
				mine["amount"] = obj{"value": minorJSON(v, currency), "currency": currency}
			}
			if r := safeCode(a.code("reason")); r != "" {
				mine["reason"] = coding("https://x12.org/codes/claim-adjustment-reason-codes", r)
			}
			adj = append(adj, mine)
		}
		if len(adj) > 0 {
			items = append(items, obj{"itemSequence": seq, "adjudication": adj})
		}
	}
	return items
}

// communicationRequest stores a payer's request for more information and
// sends the journey to the information task; phase is the wait to go back to.
func (s *Service) communicationRequest(ctx context.Context, tx store.Tx, sc *engine.StepContext, a *answer, about, phase string) (engine.Result, error) {
	cr := a.first("CommunicationRequest")
	ji, _ := input(sc.Input)
	mine := obj{"resourceType": "CommunicationRequest", "status": "active", "subject": ref("Patient", sc.PatientID),
		"authoredOn": sc.Now.Format(time.RFC3339), "sender": participant(ji.Request.Insurance.Payer, "")}
	if about != "" {
		mine["about"] = []any{obj{"reference": about}}
	}
	var payload []any
	for _, p := range cr.list("payload") {
		if t := p.str("contentString"); t != "" {
			payload = append(payload, obj{"contentString": t})
		}
	}
	if len(payload) > 0 {
		mine["payload"] = payload
	}
	body, _ := json.Marshal(mine)
	id, err := s.cfg.Records.CreateTx(ctx, tx, actor(sc), "CommunicationRequest", body)
	if err != nil {
		return engine.Result{}, err
	}
	if err := s.answered(ctx, tx, sc, "", func(j *journeyRow) {
		j.Needs = phase + " CommunicationRequest/" + id + " " + a.Correlation
		j.Refs["communication_request"] = "CommunicationRequest/" + id
	}); err != nil {
		return engine.Result{}, err
	}
	return engine.Result{Output: map[string]any{"communication_request": "CommunicationRequest/" + id, "phase": phase,
		"correlation_id": a.Correlation}, Goto: stepInfo}, nil
}

// preauthResultStep reads the payer's decision on the pre-authorization:
// approval records preAuthRef; a request for information goes to billing;
// refusal (or no answer) stops the journey.
func (s *Service) preauthResultStep() engine.Step {
	return engine.Step{Name: stepPreauthRes, When: preauthRequired, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			var a answer
			if _, err := sc.Output(stepPreauthWait, &a); err != nil {
				return engine.Result{}, engine.Permanent(err)
			}
			if a.TimedOut {
				return s.halt(ctx, tx, sc, OutcomePayerTimeout, "preauth_timeout", "The payer did not decide the pre-authorization")
			}
			preauth := refOut(sc.Input, stepPreauth, "focus")
			if a.Action == string(payer.CommunicationRequest) {
				return s.communicationRequest(ctx, tx, sc, &a, preauth, signalPreauth)
			}
			cr := a.first("ClaimResponse")
			j, err := loadJourney(ctx, tx, sc.RunID, "")
			if err != nil {
				return engine.Result{}, err
			}
			id, err := s.storeClaimResponse(ctx, tx, sc, cr, preauth, "preauthorization", nil, j.Currency)
			if err != nil {
				return engine.Result{}, err
			}
			refNo := cr.str("preAuthRef")
			approved := refNo != "" && cr.str("outcome") != "error" && len(a.Error) == 0
			if err := s.answered(ctx, tx, sc, a.Correlation, func(j *journeyRow) { j.Refs["preauth_response"] = "ClaimResponse/" + id }); err != nil {
				return engine.Result{}, err
			}
			if !approved {
				return s.halt(ctx, tx, sc, OutcomePreauthRefused, safeCode(denialReason(cr)), "Pre-authorization refused by the payer")
			}
			return engine.Result{Output: map[string]any{"pre_auth_ref": refNo, "response": "ClaimResponse/" + id}, Goto: stepClaim}, nil
		}}
}

func (s *Service) claimStep() engine.Step {
	return engine.Step{Name: stepClaim, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			res, _, err := s.claimFor(ctx, tx, sc, "claim", "")
			return res, err
		}}
}

// claimResultStep reads the payer's answer to the claim: a status answer
// still pending waits again; no answer in time checks the status (up to
// Waits.StatusPolls times, then payer_timeout); a ClaimResponse records the
// approved amount, or the denial with its reason.
func (s *Service) claimResultStep() engine.Step {
	return engine.Step{Name: stepClaimResult, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			var a answer
			if _, err := sc.Output(stepClaimWait, &a); err != nil {
				return engine.Result{}, engine.Permanent(err)
			}
			claimRef := refOut(sc.Input, stepClaim, "focus")
			if a.TimedOut {
				if sc.Visit > s.waits.StatusPolls {
					return s.halt(ctx, tx, sc, OutcomePayerTimeout, "claim_timeout", "The payer did not answer the claim")
				}
				return engine.Result{Output: map[string]any{"timed_out": true}, Goto: stepStatusRecord}, nil
			}
			if a.Action == string(payer.CommunicationRequest) {
				return s.communicationRequest(ctx, tx, sc, &a, claimRef, signalClaim)
			}
			cr := a.first("ClaimResponse")
			if cr == nil && len(a.Error) == 0 {
				// A status answer (or an acknowledgement) without a decision.
				if err := s.answered(ctx, tx, sc, "", nil); err != nil {
					return engine.Result{}, err
				}
				return engine.Result{Output: map[string]any{"status": a.Status}, Goto: stepClaimWait}, nil
			}
			j, err := loadJourney(ctx, tx, sc.RunID, "")
			if err != nil {
				return engine.Result{}, err
			}
			approved, ok := approvedAmount(cr)
			denied := cr == nil || cr.str("outcome") == "error" || (ok && approved == 0)
			if !ok || denied {
				approved = 0
			}
			id, err := s.storeClaimResponse(ctx, tx, sc, cr, claimRef, "claim", &approved, j.Currency)
			if err != nil {
				return engine.Result{}, err
			}
			corr := a.Correlation
			if x, err := findExchange(ctx, tx, corr); err != nil || x.JourneyID != sc.RunID {
				corr = ""
			}
			share := patientShare(cr)
			if err := s.answered(ctx, tx, sc, corr, func(j *journeyRow) {
				j.Approved = &approved
				if !denied {
					j.PatientShare = &share
				}
				j.Refs["claim_response"] = "ClaimResponse/" + id
				if denied {
					stop(j, OutcomeDenied, safeCode(denialReason(cr)), false)
				}
			}); err != nil {
				return engine.Result{}, err
			}
			if denied {
				return engine.Result{Output: map[string]any{"outcome": OutcomeDenied, "response": "ClaimResponse/" + id}, Goto: stepDone}, nil
			}
			return engine.Result{Output: map[string]any{"approved": FormatAmount(approved, j.Currency), "response": "ClaimResponse/" + id}, Goto: stepPaymentWait}, nil
		}}
}

// statusCheckStep records an hcx/status exchange about the claim; the next
// step sends it and goes back to the status wait.
func (s *Service) statusCheckStep() engine.Step {
	return engine.Step{Name: stepStatusRecord, When: never, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			j, err := loadJourney(ctx, tx, sc.RunID, "")
			if err != nil {
				return engine.Result{}, err
			}
			// The status request names the claim's exchange: it carries the
			// claim submission's correlation id, as the protocol asks, and the
			// Claim it is about.
			corr := refOut(sc.Input, stepClaim, "correlation_id")
			claim, err := s.readRaw(ctx, tx, sc, "Claim/"+j.ClaimID)
			if err != nil {
				return engine.Result{}, err
			}
			b, err := bundle(claim)
			if err != nil {
				return engine.Result{}, err
			}
			return engine.Result{Output: outgoing{Correlation: corr, Action: payer.StatusCheck, Bundle: b, Focus: "Claim/" + j.ClaimID}}, nil
		}}
}

// paymentResultStep matches the payment (PaymentReconciliation or
// PaymentNotice) to the claim: paid in full, or partially with the
// variance (owed − paid, see owed).
func (s *Service) paymentResultStep() engine.Step {
	return engine.Step{Name: stepPaymentRes, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			var a answer
			if _, err := sc.Output(stepPaymentWait, &a); err != nil {
				return engine.Result{}, engine.Permanent(err)
			}
			if a.TimedOut {
				return s.halt(ctx, tx, sc, OutcomePayerTimeout, "payment_timeout", "The payer approved the claim but has not paid")
			}
			j, err := loadJourney(ctx, tx, sc.RunID, "")
			if err != nil {
				return engine.Result{}, err
			}
			paid, kind := paidAmount(&a, j.ClaimID)
			variance := max(owed(j)-paid, 0)
			outcome := OutcomePaid
			if variance > 0 {
				outcome = OutcomePartiallyPaid
			}
			// The payment is recorded on the claim's ClaimResponse
			// (ClaimResponse.payment), in the patient's record: a
			// PaymentNotice or PaymentReconciliation names no patient, and
			// a step writes only in its run's patient's record.
			crRef := j.Refs["claim_response"]
			if crRef != "" && kind != "" {
				if err := s.recordPayment(ctx, tx, sc, crRef, paid, variance, j.Currency); err != nil {
					return engine.Result{}, err
				}
			}
			if err := s.answered(ctx, tx, sc, "", func(j *journeyRow) {
				j.Paid, j.Variance = &paid, &variance
				if crRef != "" && kind != "" {
					j.Refs["payment"] = crRef
				}
				stop(j, outcome, "", false)
			}); err != nil {
				return engine.Result{}, err
			}
			out := map[string]any{"outcome": outcome, "paid": FormatAmount(paid, j.Currency), "variance": FormatAmount(variance, j.Currency)}
			// The payment is acknowledged (paymentnotice/on_request) on the
			// payer's exchange, when the notice came on one.
			if a.Correlation == "" || j.ClaimID == "" {
				out["skip"] = true
			} else {
				ji, _ := input(sc.Input)
				ack := obj{"resourceType": "PaymentNotice", "status": "active", "request": ref("Claim", j.ClaimID),
					"created": sc.Now.Format("2006-01-02"), "provider": participant(s.cfg.Provider.Code, s.cfg.Provider.Name),
					"payment": obj{"display": "payment on claim " + j.ClaimID}, "recipient": participant(ji.Request.Insurance.Payer, ""),
					"amount": obj{"value": minorJSON(paid, j.Currency), "currency": j.Currency}, "paymentStatus": coding("http://terminology.hl7.org/CodeSystem/paymentstatus", "cleared")}
				b, err := bundle(withID(ack, "ack-"+j.ClaimID))
				if err != nil {
					return engine.Result{}, err
				}
				out["correlation_id"], out["action"], out["status"], out["bundle"] = a.Correlation, payer.PaymentNoticeOnRequest,
					payer.StatusResponseComplete, json.RawMessage(b)
			}
			return engine.Result{Output: out, Goto: stepPaymentAck}, nil
		}}
}

// owed is what the payer owes on the journey's claim: what was billed
// less the patient's share of it (co-pay, co-insurance, deductible, as
// the payer's adjudication says), and never less than what the payer
// approved. A claim paid as approved is therefore paid when the approval
// was reduced only by the patient's share, and short-paid when the payer
// cut it for a reason of its own (a partial approval, a line denied, a
// limit reached): the variance is then billed − patient share − paid.
func owed(j *journeyRow) int64 {
	o := j.Billed
	if j.PatientShare != nil {
		o -= *j.PatientShare
	}
	if j.Approved != nil && *j.Approved > o {
		o = *j.Approved
	}
	return o
}

// recordPayment adds the payment to the stored ClaimResponse: its amount,
// its date, and complete or partial.
func (s *Service) recordPayment(ctx context.Context, tx store.Tx, sc *engine.StepContext, crRef string, paid, variance int64, currency string) error {
	raw, err := s.readRaw(ctx, tx, sc, crRef)
	if err != nil {
		return err
	}
	var cr map[string]any
	if err := json.Unmarshal(raw, &cr); err != nil {
		return engine.Permanent(fmt.Errorf("stored %s is not JSON", crRef))
	}
	delete(cr, "meta")
	kind := "complete"
	if variance > 0 {
		kind = "partial"
	}
	cr["payment"] = obj{"type": coding("http://terminology.hl7.org/CodeSystem/ex-paymenttype", kind),
		"date": sc.Now.Format("2006-01-02"), "amount": obj{"value": minorJSON(paid, currency), "currency": currency}}
	body, _ := json.Marshal(cr)
	return s.cfg.Records.UpdateTx(ctx, tx, actor(sc), "ClaimResponse", idOf(crRef), body)
}

// paidAmount is what a payment message pays on claim: the matching
// PaymentReconciliation detail, else its payment amount, else a
// PaymentNotice's amount. kind names the resource type it came from.
func paidAmount(a *answer, claim string) (int64, string) {
	for _, pr := range a.find("PaymentReconciliation") {
		for _, d := range pr.list("detail") {
			if idOf(d.reference("request")) == claim {
				if v, ok := d.money("amount"); ok {
					return v, "PaymentReconciliation"
				}
			}
		}
		if v, ok := pr.money("paymentAmount"); ok {
			return v, "PaymentReconciliation"
		}
	}
	for _, pn := range a.find("PaymentNotice") {
		if v, ok := pn.money("amount"); ok {
			return v, "PaymentNotice"
		}
	}
	return 0, ""
}

// infoRecordStep answers the payer's CommunicationRequest with billing's
// task result (the answer text, an attachment reference) as a
// Communication, sent as communication/on_request on the request's own
// correlation.
func (s *Service) infoRecordStep() engine.Step {
	return engine.Step{Name: stepInfoRecord, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			var task struct {
				Result struct {
					Text       string `json:"text"`
					Attachment string `json:"attachment"`
				} `json:"result"`
			}
			_, _ = sc.Output(stepInfo, &task)
			j, err := loadJourney(ctx, tx, sc.RunID, "")
			if err != nil {
				return engine.Result{}, err
			}
			phase, reqRef, corr := splitNeeds(j.Needs)
			mine := obj{"resourceType": "Communication", "status": "completed", "subject": ref("Patient", sc.PatientID),
				"sent": sc.Now.Format(time.RFC3339), "basedOn": []any{obj{"reference": reqRef}}}
			var payload []any
			if task.Result.Text != "" {
				payload = append(payload, obj{"contentString": task.Result.Text})
			}
			if task.Result.Attachment != "" {
				payload = append(payload, obj{"contentReference": obj{"reference": task.Result.Attachment}})
			}
			if len(payload) == 0 {
				payload = append(payload, obj{"contentString": "See the attached documents."})
			}
			mine["payload"] = payload
			body, _ := json.Marshal(mine)
			id, err := s.cfg.Records.CreateTx(ctx, tx, actor(sc), "Communication", body)
			if err != nil {
				return engine.Result{}, err
			}
			b, err := bundle(withID(mine, id))
			if err != nil {
				return engine.Result{}, err
			}
			return engine.Result{Output: map[string]any{"phase": phase, "correlation_id": corr,
				"action": payer.CommunicationOnRequest, "status": payer.StatusResponseComplete, "bundle": json.RawMessage(b),
				"focus": "Communication/" + id}}, nil
		}}
}

// splitNeeds reads rcm_journeys.needs: the phase whose wait an answer
// resumes, the CommunicationRequest, and the payer's correlation id.
func splitNeeds(needs string) (phase, request, corr string) {
	parts := strings.SplitN(needs, " ", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return parts[0], parts[1], parts[2]
}

// appealDefinition resubmits a denied or short-paid claim: a new Claim
// related to the original (relationship prior), then submission, status,
// reconciliation as any journey.
func (s *Service) appealDefinition() *engine.Definition {
	steps := []engine.Step{{Name: stepClaim, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			ji, err := input(sc.Input)
			if err != nil {
				return engine.Result{}, err
			}
			res, _, err := s.claimFor(ctx, tx, sc, "claim", ji.OriginalClaim)
			return res, err
		}}}
	steps = append(steps, s.claimTail()...)
	return &engine.Definition{Name: DefinitionAppeal, Version: 1, Steps: steps,
		Validate: func(in *engine.Input) error {
			var ji journeyInput
			if err := in.Decode(&ji); err != nil || ji.OriginalClaim == "" || in.PatientID == "" {
				return errors.New("an appeal is started by Appeal, from a journey with a claim")
			}
			return nil
		}}
}
