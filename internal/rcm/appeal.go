package rcm

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// AppealRequest is the body of POST /journeys/{id}/appeal.
type AppealRequest struct {
	// Reason is billing's note for the appeal; kept sealed in the appeal
	// run's input, never in a plain column.
	Reason string `json:"reason,omitempty"`
}

// Appeal resubmits a denied or short-paid journey's claim as a new journey
// (rcm.appeal): a new Claim related to the original. A journey is appealed
// once; appealing it again returns the appeal.
func (s *Service) Appeal(ctx context.Context, g Guard, id string, req AppealRequest) (*Journey, error) {
	orig, err := s.authorizeJourney(ctx, g, id, auth.ActionUpdate, "")
	if err != nil {
		return nil, err
	}
	if orig.ClaimID == "" || (orig.Outcome != OutcomeDenied && orig.Outcome != OutcomePartiallyPaid) {
		return nil, errs.E(errs.Conflict, "only a denied or partially paid claim can be appealed")
	}
	if len(req.Reason) > 2000 {
		return nil, errs.E(errs.Invalid, "at most 2000 characters").InField("reason")
	}
	run, err := s.cfg.Engine.GetRun(ctx, id)
	if err != nil {
		return nil, err
	}
	var ji journeyInput
	if err := json.Unmarshal(run.Input, &ji); err != nil {
		return nil, fmt.Errorf("journey %s: input: %w", id, err)
	}
	var preAuthRef string
	if raw, ok := run.Outputs[stepPreauthRes]; ok {
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil {
			preAuthRef, _ = m["pre_auth_ref"].(string)
		}
	}
	in := journeyInput{Request: ji.Request, Reused: true, AppealOf: id, OriginalClaim: orig.ClaimID, Reason: req.Reason,
		PreAuthRef: preAuthRef}
	var row *journeyRow
	now := s.now()
	err = s.cfg.DB.Tx(ctx, func(tx store.Tx) error {
		r, created, err := s.cfg.Engine.StartRunTx(ctx, tx, engine.StartOptions{Definition: DefinitionAppeal, Input: in,
			PatientID: orig.PatientID, StartKey: "appeal-of:" + id})
		if err != nil {
			return err
		}
		if !created {
			row, err = loadJourney(ctx, tx, r.ID, "")
			return err
		}
		refs := map[string]string{}
		for _, k := range []string{"patient", "coverage", "encounter", "preauth", "preauth_response"} {
			if v := orig.Refs[k]; v != "" {
				refs[k] = v
			}
		}
		row = &journeyRow{ID: r.ID, Kind: "appeal", PatientID: orig.PatientID, Payer: orig.Payer, Status: StatusActive,
			Currency: orig.Currency, AppealOf: id, BatchID: orig.BatchID, Refs: refs, StartedAt: now}
		return insertJourney(ctx, tx, row, "")
	})
	if err != nil {
		return nil, err
	}
	return s.view(ctx, row)
}
