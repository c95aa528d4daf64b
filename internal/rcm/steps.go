package rcm

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/terminology"
)

// The steps of a journey before the claim: each writes its FHIR resources
// in its own transaction through Records, acting for the run.

// registrationStep reads back the Patient StartJourney registered (in the
// start's transaction, as the person registering) and records it.
func (s *Service) registrationStep() engine.Step {
	return engine.Step{Name: stepRegistration, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			ji, err := input(sc.Input)
			if err != nil {
				return engine.Result{}, err
			}
			if _, err := s.cfg.Records.ReadTx(ctx, tx, actor(sc), "Patient", sc.PatientID); err != nil {
				return engine.Result{}, err
			}
			return engine.Result{Output: map[string]any{"patient": "Patient/" + sc.PatientID, "reused": ji.Reused}}, nil
		}}
}

func (s *Service) insuranceStep() engine.Step {
	return engine.Step{Name: stepInsurance, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			ji, err := input(sc.Input)
			if err != nil {
				return engine.Result{}, err
			}
			body, _ := json.Marshal(coverageResource(sc.PatientID, ji.Request.Insurance, ""))
			id, err := s.cfg.Records.CreateTx(ctx, tx, actor(sc), "Coverage", body)
			if err != nil {
				return engine.Result{}, err
			}
			if _, err := change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) { j.Refs["coverage"] = "Coverage/" + id }); err != nil {
				return engine.Result{}, err
			}
			return engine.Result{Output: map[string]any{"coverage": "Coverage/" + id}}, nil
		}}
}

// readRaw reads a resource of the run's patient for a Bundle.
func (s *Service) readRaw(ctx context.Context, tx store.Tx, sc *engine.StepContext, reference string) (json.RawMessage, error) {
	typ, id := reference, ""
	for i := range reference {
		if reference[i] == '/' {
			typ, id = reference[:i], reference[i+1:]
			break
		}
	}
	b, err := s.cfg.Records.ReadTx(ctx, tx, actor(sc), typ, id)
	return json.RawMessage(b), err
}

// eligibilityStep creates the CoverageEligibilityRequest and records the
// exchange; the next step sends it.
func (s *Service) eligibilityStep() engine.Step {
	return engine.Step{Name: stepEligRecord, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			ji, err := input(sc.Input)
			if err != nil {
				return engine.Result{}, err
			}
			service, _ := serviceDate(ji.Request.Encounter.Start)
			coverage := refOut(sc.Input, stepInsurance, "coverage")
			req := eligibilityRequest(sc.PatientID, idOf(coverage), ji.Request.Insurance, s.cfg.Provider, service, sc.Now)
			body, _ := json.Marshal(req)
			id, err := s.cfg.Records.CreateTx(ctx, tx, actor(sc), "CoverageEligibilityRequest", body)
			if err != nil {
				return engine.Result{}, err
			}
			pat, err := s.readRaw(ctx, tx, sc, "Patient/"+sc.PatientID)
			if err != nil {
				return engine.Result{}, err
			}
			cov, err := s.readRaw(ctx, tx, sc, coverage)
			if err != nil {
				return engine.Result{}, err
			}
			b, err := bundle(withID(req, id), pat, cov)
			if err != nil {
				return engine.Result{}, err
			}
			corr := correlationID(sc)
			if err := recordExchange(ctx, tx, corr, sc.RunID, payer.EligibilityCheck, ji.Request.Insurance.Payer, "", sc.Now); err != nil {
				return engine.Result{}, err
			}
			if _, err := change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) {
				j.Refs["eligibility_request"] = "CoverageEligibilityRequest/" + id
			}); err != nil {
				return engine.Result{}, err
			}
			return engine.Result{Output: outgoing{Correlation: corr, Action: payer.EligibilityCheck, Bundle: b,
				Focus: "CoverageEligibilityRequest/" + id}}, nil
		}}
}

// eligibilityResultStep stores the payer's CoverageEligibilityResponse
// (what careflow takes of it, as a strictly valid resource of its own) and
// stops the journey when the cover is not in force.
func (s *Service) eligibilityResultStep() engine.Step {
	return engine.Step{Name: stepEligResult, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			var a answer
			if _, err := sc.Output(stepEligWait, &a); err != nil {
				return engine.Result{}, engine.Permanent(err)
			}
			if a.TimedOut {
				return s.halt(ctx, tx, sc, OutcomePayerTimeout, "eligibility_timeout", "The payer did not answer the eligibility check")
			}
			ji, _ := input(sc.Input)
			resp := a.first("CoverageEligibilityResponse")
			inforce := resp != nil && resp.str("outcome") != "error" && len(a.Error) == 0
			for _, ins := range resp.list("insurance") {
				var f *bool
				if json.Unmarshal(ins["inforce"], &f) == nil && f != nil && !*f {
					inforce = false
				}
			}
			outcome := resp.str("outcome")
			if outcome == "" {
				outcome = "complete"
				if !inforce {
					outcome = "error"
				}
			}
			reqRef := refOut(sc.Input, stepEligRecord, "focus")
			cover := refOut(sc.Input, stepInsurance, "coverage")
			mine := obj{"resourceType": "CoverageEligibilityResponse", "status": "active", "purpose": []any{"validation", "benefits"},
				"patient": ref("Patient", sc.PatientID), "created": sc.Now.Format("2006-01-02T15:04:05Z07:00"),
				"request": obj{"reference": reqRef}, "outcome": outcome, "insurer": participant(ji.Request.Insurance.Payer, ""),
				"insurance": []any{obj{"coverage": obj{"reference": cover}, "inforce": inforce}}}
			if d := resp.str("disposition"); d != "" {
				mine["disposition"] = d
			}
			body, _ := json.Marshal(mine)
			id, err := s.cfg.Records.CreateTx(ctx, tx, actor(sc), "CoverageEligibilityResponse", body)
			if err != nil {
				return engine.Result{}, err
			}
			if err := s.answered(ctx, tx, sc, a.Correlation, func(j *journeyRow) {
				j.Refs["eligibility_response"] = "CoverageEligibilityResponse/" + id
			}); err != nil {
				return engine.Result{}, err
			}
			if !inforce {
				return s.halt(ctx, tx, sc, OutcomeNotCovered, "not_in_force", "Coverage not in force: check the patient's insurance")
			}
			return engine.Result{Output: map[string]any{"response": "CoverageEligibilityResponse/" + id, "inforce": true}}, nil
		}}
}

// answered marks an exchange answered and the journey's last payer contact.
func (s *Service) answered(ctx context.Context, tx store.Tx, sc *engine.StepContext, corr string, fn func(j *journeyRow)) error {
	if corr != "" {
		if err := markExchange(ctx, tx, corr, "answered", sc.Now); err != nil {
			return err
		}
	}
	now := sc.Now
	_, err := change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) {
		j.LastContact = &now
		if fn != nil {
			fn(j)
		}
	})
	return err
}

// halt stops the journey with an outcome and a work item for billing
// titled by the rule (never the patient).
func (s *Service) halt(ctx context.Context, tx store.Tx, sc *engine.StepContext, outcome, reason, title string) (engine.Result, error) {
	if _, err := change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) { stop(j, outcome, reason, true) }); err != nil {
		return engine.Result{}, err
	}
	return engine.Result{Output: map[string]any{"outcome": outcome, "title": title}, Goto: stepAttention}, nil
}

func (s *Service) encounterStep() engine.Step {
	return engine.Step{Name: stepEncounter, Retry: fast,
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, _ engine.Result) (engine.Result, error) {
			ji, err := input(sc.Input)
			if err != nil {
				return engine.Result{}, err
			}
			body, _ := json.Marshal(encounterResource(sc.PatientID, ji.Request.Kind, ji.Request.Encounter))
			id, err := s.cfg.Records.CreateTx(ctx, tx, actor(sc), "Encounter", body)
			if err != nil {
				return engine.Result{}, err
			}
			if _, err := change(ctx, tx, sc.RunID, sc.Now, func(j *journeyRow) { j.Refs["encounter"] = "Encounter/" + id }); err != nil {
				return engine.Result{}, err
			}
			return engine.Result{Output: map[string]any{"encounter": "Encounter/" + id}}, nil
		}}
}

// procedureSystem is CPT for a CPT-shaped code, else HCPCS Level II.
func procedureSystem(code string) string {
	if _, err := terminology.ParseCPT(code); err == nil {
		return terminology.SystemCPT
	}
	return terminology.SystemHCPCS
}

// codeProblem is a code that cannot be billed: its position and the rule.
type codeProblem struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

// codesStep checks every code on the date of service (in Do: reads only)
// and stops the journey with a work item naming the first bad code's
// position and rule.
func (s *Service) codesStep() engine.Step {
	return engine.Step{Name: stepCodes, Retry: fast,
		Do: func(ctx context.Context, sc *engine.StepContext) (engine.Result, error) {
			ji, err := input(sc.Input)
			if err != nil {
				return engine.Result{}, err
			}
			date, _ := serviceDate(ji.Request.Encounter.Start)
			var problems []codeProblem
			check := func(field, system, code string) error {
				v, err := s.cfg.Terms.ValidateCode(ctx, system, code, terminology.ValidateOptions{Date: date})
				if err != nil {
					return err
				}
				if !v.Valid {
					problems = append(problems, codeProblem{Field: field, Rule: string(v.Reason)})
				}
				return nil
			}
			for i, c := range ji.Request.DiagnosisCodes {
				if err := check(fmt.Sprintf("diagnosis_codes[%d]", i), terminology.SystemICD10CM, c); err != nil {
					return engine.Result{}, err
				}
			}
			for i, c := range ji.Request.ProcedureCodes {
				if err := check(fmt.Sprintf("procedure_codes[%d]", i), procedureSystem(c), c); err != nil {
					return engine.Result{}, err
				}
			}
			return engine.Result{Output: map[string]any{"problems": problems}}, nil
		},
		Apply: func(ctx context.Context, sc *engine.StepContext, tx store.Tx, done engine.Result) (engine.Result, error) {
			m := done.Output.(map[string]any)
			problems, _ := m["problems"].([]codeProblem)
			if len(problems) == 0 {
				return engine.Result{Output: map[string]any{"valid": true}}, nil
			}
			p := problems[0]
			res, err := s.halt(ctx, tx, sc, OutcomeInvalidCodes, p.Field+":"+p.Rule,
				fmt.Sprintf("Invalid code: %s (%s)", p.Field, p.Rule))
			if err != nil {
				return res, err
			}
			res.Output.(map[string]any)["problems"] = problems
			return res, nil
		}}
}

// procedureLines groups the procedure codes into claim lines: a code
// listed twice is one line of quantity two, in first-seen order.
func procedureLines(codes []string) []claimLine {
	var lines []claimLine
	for _, c := range codes {
		i := slices.IndexFunc(lines, func(l claimLine) bool { return l.Code == c })
		if i >= 0 {
			lines[i].Quantity++
			continue
		}
		lines = append(lines, claimLine{System: procedureSystem(c), Code: c, Quantity: 1})
	}
	return lines
}

func dottedDiagnoses(codes []string) []string {
	out := make([]string, 0, len(codes))
	for _, c := range codes {
		n, err := terminology.NormalizeICD10CM(c)
		if err != nil {
			out = append(out, c)
			continue
		}
		out = append(out, terminology.DottedICD10CM(n))
	}
	return out
}
