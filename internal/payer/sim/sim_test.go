package sim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/payer/sim"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func claimsOf(t *testing.T, h *harness, q sim.ClaimQuery) []sim.ClaimRecord {
	t.Helper()
	cs, err := h.sim.Ledger().Claims(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func adjudication(t *testing.T, cr map[string]any, item int, category string) string {
	t.Helper()
	for _, it := range cr["item"].([]any) {
		im := it.(map[string]any)
		if im["itemSequence"].(json.Number).String() != strconv.Itoa(item) {
			continue
		}
		for _, a := range im["adjudication"].([]any) {
			am := a.(map[string]any)
			if am["category"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] == category {
				return string(am["amount"].(map[string]any)["value"].(json.Number))
			}
		}
	}
	return ""
}

func TestEligibilityAnswersWithThePlanOrNotInforce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, nil))
		p := newProvider(t, h, "provider-1")
		known, unknown := uuid.NewString(), uuid.NewString()
		for _, m := range []message{
			{action: payer.EligibilityCheck, recipient: "payer-a", correlation: known, bundle: eligibilityBundle("GOLD-1", "27447", "99213")},
			{action: payer.EligibilityCheck, recipient: "payer-a", correlation: unknown, bundle: eligibilityBundle("NOBODY")},
		} {
			if status, code := p.send(m); status != http.StatusAccepted {
				t.Fatalf("eligibility: %d %s", status, code)
			}
		}
		got := p.waitFor(1, onCorrelation(known))[0]
		if got.action != payer.EligibilityOnCheck || got.header.Status != payer.StatusResponseComplete || got.header.SenderCode != "payer-a" {
			t.Fatalf("answer: %s %+v", got.action, got.header)
		}
		ins := resources(t, got.bundle, "CoverageEligibilityResponse")[0]["insurance"].([]any)[0].(map[string]any)
		if ins["inforce"] != true {
			t.Fatalf("a gold member is not in force: %v", ins)
		}
		items := ins["item"].([]any)
		if len(items) != 3 || items[1].(map[string]any)["authorizationRequired"] != true || items[2].(map[string]any)["authorizationRequired"] != false {
			t.Fatalf("benefit items: %v", items)
		}
		got = p.waitFor(1, onCorrelation(unknown))[0]
		if ins := resources(t, got.bundle, "CoverageEligibilityResponse")[0]["insurance"].([]any)[0].(map[string]any); ins["inforce"] != false {
			t.Fatalf("an unknown member is in force: %v", ins)
		}
	})
}

func TestClaimsArePaidPartlyPaidOrDeniedAndPaymentsNameTheClaim(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, nil))
		p := newProvider(t, h, "provider-1")
		cases := []struct {
			name, identifier, member string
			items                    [][2]string
			outcome, benefit         string
			denial                   string
		}{
			// 200 + 100: co-pay 50 from the first, 10% co-insurance of the rest.
			{"paid in full, co-pay and co-insurance deducted", "CLM-PAID", "GOLD-7", [][2]string{{"99213", "200.00"}, {"80053", "100"}}, sim.OutcomeApproved, "225.00", ""},
			{"half of a partial-payment code", "CLM-PART", "M-100", [][2]string{{"97110", "100"}}, sim.OutcomePartial, "22.50", ""},
			{"a denied code with its reason", "CLM-DENY", "GOLD-8", [][2]string{{"S9999", "80"}}, sim.OutcomeDenied, "0.00", "96"},
			{"a code outside the basic plan", "CLM-NOTCOV", "BASIC-1", [][2]string{{"80053", "80"}}, sim.OutcomeDenied, "0.00", "96"},
			{"an unknown member", "CLM-WHO", "NOBODY", [][2]string{{"99213", "80"}}, sim.OutcomeDenied, "0.00", "31"},
			{"a code needing pre-authorization without one", "CLM-NOPA", "GOLD-9", [][2]string{{"27447", "900"}}, sim.OutcomeDenied, "0.00", "197"},
		}
		corr := map[string]string{}
		for _, c := range cases {
			corr[c.name] = uuid.NewString()
			if status, code := p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr[c.name],
				bundle: claimBundle("claim", c.identifier, c.member, "", "", c.items...)}); status != http.StatusAccepted {
				t.Fatalf("%s: %d %s", c.name, status, code)
			}
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				ans := p.waitFor(1, func(r received) bool {
					return r.header.CorrelationID == corr[c.name] && r.action == payer.ClaimOnSubmit
				})[0]
				cr := resources(t, ans.bundle, "ClaimResponse")[0]
				total := cr["total"].([]any)[1].(map[string]any)["amount"].(map[string]any)["value"].(json.Number)
				if string(total) != c.benefit || cr["outcome"] != "complete" {
					t.Fatalf("benefit %s outcome %v, want %s", total, cr["outcome"], c.benefit)
				}
				rec := claimsOf(t, h, sim.ClaimQuery{Identifier: c.identifier})
				if len(rec) != 1 || rec[0].Outcome != c.outcome || rec[0].DenialCode != c.denial || rec[0].Benefit != c.benefit {
					t.Fatalf("ledger: %+v", rec)
				}
				if c.denial != "" {
					errsList, _ := cr["error"].([]any)
					if len(errsList) == 0 {
						t.Fatalf("a denied claim without ClaimResponse.error: %v", cr)
					}
				}
				if c.benefit == "0.00" {
					return
				}
				pay := p.waitFor(1, func(r received) bool {
					return r.header.CorrelationID == corr[c.name] && r.action == payer.PaymentNoticeRequest
				})[0]
				if pay.header.WorkflowID != ans.header.WorkflowID {
					t.Fatalf("the payment notice is on another workflow")
				}
				recon := resources(t, pay.bundle, "PaymentReconciliation")[0]
				detail := recon["detail"].([]any)[0].(map[string]any)
				ident := detail["request"].(map[string]any)["identifier"].(map[string]any)
				if ident["value"] != c.identifier || string(detail["amount"].(map[string]any)["value"].(json.Number)) != c.benefit {
					t.Fatalf("payment detail: %v", detail)
				}
				if len(resources(t, pay.bundle, "PaymentNotice")) != 1 {
					t.Fatal("no PaymentNotice with the reconciliation")
				}
			})
		}
		if got := adjudication(t, resources(t, p.waitFor(1, func(r received) bool {
			return r.header.CorrelationID == corr[cases[0].name] && r.action == payer.ClaimOnSubmit
		})[0].bundle, "ClaimResponse")[0], 1, "copay"); got != "65.00" {
			t.Fatalf("the member's share of the first item is %s, want 65.00 (co-pay 50 + 10%% of 150)", got)
		}
		s, err := h.sim.Ledger().Summary(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.Claims[sim.OutcomeApproved] != 1 || s.Claims[sim.OutcomePartial] != 1 || s.Claims[sim.OutcomeDenied] != 4 || len(s.ProcessedTwice) != 0 {
			t.Fatalf("summary: %+v", s)
		}
	})
}

func TestPreauthorizationApprovedRefusedAndHonouredByTheClaim(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, nil))
		p := newProvider(t, h, "provider-1")
		workflow := uuid.NewString()
		pa := uuid.NewString()
		p.send(message{action: payer.PreauthSubmit, recipient: "payer-a", correlation: pa, workflow: workflow,
			bundle: claimBundle("preauthorization", "PA-REQ-1", "GOLD-1", "", "", [2]string{"27447", "900"})})
		ans := p.waitFor(1, onCorrelation(pa))[0]
		cr := resources(t, ans.bundle, "ClaimResponse")[0]
		ref, _ := cr["preAuthRef"].(string)
		if ans.action != payer.PreauthOnSubmit || cr["use"] != "preauthorization" || ref == "" {
			t.Fatalf("pre-authorization answer: %s %v", ans.action, cr)
		}
		refused := uuid.NewString()
		p.send(message{action: payer.PreauthSubmit, recipient: "payer-a", correlation: refused,
			bundle: claimBundle("preauthorization", "PA-REQ-2", "GOLD-1", "", "", [2]string{"15830", "900"})})
		cr2 := resources(t, p.waitFor(1, onCorrelation(refused))[0].bundle, "ClaimResponse")[0]
		if _, has := cr2["preAuthRef"]; has || claimsOf(t, h, sim.ClaimQuery{Identifier: "PA-REQ-2"})[0].Outcome != sim.OutcomeRefused {
			t.Fatalf("a refused pre-authorization: %v", cr2)
		}
		claim := uuid.NewString()
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: claim, workflow: workflow,
			bundle: claimBundle("claim", "CLM-PA", "GOLD-1", "", ref, [2]string{"27447", "900"})})
		p.waitFor(1, func(r received) bool { return r.header.CorrelationID == claim && r.action == payer.ClaimOnSubmit })
		if rec := claimsOf(t, h, sim.ClaimQuery{Identifier: "CLM-PA"}); rec[0].Outcome != sim.OutcomeApproved {
			t.Fatalf("a claim with its approved pre-authorization: %+v", rec[0])
		}
		// A claim submitted on the pre-authorization action is the wrong content.
		wrong := uuid.NewString()
		p.send(message{action: payer.PreauthSubmit, recipient: "payer-a", correlation: wrong,
			bundle: claimBundle("claim", "CLM-WRONG", "GOLD-1", "", "", [2]string{"99213", "10"})})
		got := p.waitFor(1, onCorrelation(wrong))[0]
		var details hcx.ResponseError
		_ = json.Unmarshal(got.header.ErrorDetails, &details)
		if got.header.Status != payer.StatusResponseError || details.Code != hcx.ErrWrongDomainPayload || len(got.bundle) != 0 {
			t.Fatalf("wrong content answered %+v", got.header)
		}
	})
}

func TestAnAppealOfAFirstSubmissionDenialIsPaid(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, nil))
		p := newProvider(t, h, "provider-1")
		first, appeal := uuid.NewString(), uuid.NewString()
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: first,
			bundle: claimBundle("claim", "CLM-APP", "GOLD-1", "", "", [2]string{"99499", "100"})})
		p.waitFor(1, onCorrelation(first))
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: appeal,
			bundle: claimBundle("claim", "CLM-APP-2", "GOLD-1", "CLM-APP", "", [2]string{"99499", "100"})})
		p.waitFor(2, onCorrelation(appeal)) // the answer and the payment
		recs := claimsOf(t, h, sim.ClaimQuery{})
		if len(recs) != 2 || recs[0].Outcome != sim.OutcomeDenied || recs[0].DenialCode != "50" || recs[1].Outcome != sim.OutcomeApproved || recs[1].Related != "CLM-APP" {
			t.Fatalf("ledger: %+v", recs)
		}
	})
}

func TestACommunicationRequestIsAnsweredBeforeTheClaimIsDecided(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, nil))
		p := newProvider(t, h, "provider-1")
		corr, wf := uuid.NewString(), uuid.NewString()
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr, workflow: wf,
			bundle: claimBundle("claim", "CLM-INFO", "GOLD-1", "", "", [2]string{"43239", "400"})})
		ask := p.waitFor(1, onCorrelation(corr))[0]
		if ask.action != payer.CommunicationRequest || ask.header.WorkflowID != wf || len(resources(t, ask.bundle, "CommunicationRequest")) != 1 {
			t.Fatalf("first callback: %s %+v", ask.action, ask.header)
		}
		if rec := claimsOf(t, h, sim.ClaimQuery{Identifier: "CLM-INFO"}); rec[0].State != sim.StateAwaitingInformation {
			t.Fatalf("state %s", rec[0].State)
		}
		// hcx/status while waiting: a queued ClaimResponse.
		st := uuid.NewString()
		if status, code := p.send(message{action: payer.StatusCheck, recipient: "payer-a", correlation: st, workflow: wf, bundle: communicationBundle()}); status != http.StatusAccepted {
			t.Fatalf("status: %d %s", status, code)
		}
		if cr := resources(t, p.waitFor(1, onCorrelation(st))[0].bundle, "ClaimResponse")[0]; cr["outcome"] != "queued" {
			t.Fatalf("status while waiting: %v", cr["outcome"])
		}
		// An answer on an exchange that asked nothing is refused.
		if status, code := p.send(message{action: payer.CommunicationOnRequest, recipient: "payer-a", correlation: uuid.NewString(), bundle: communicationBundle()}); status != http.StatusBadRequest || code != hcx.ErrInvalidCorrelationID {
			t.Fatalf("stray communication: %d %s", status, code)
		}
		if status, code := p.send(message{action: payer.CommunicationOnRequest, recipient: "payer-a", correlation: corr, workflow: wf, bundle: communicationBundle()}); status != http.StatusAccepted {
			t.Fatalf("communication: %d %s", status, code)
		}
		got := p.waitFor(3, onCorrelation(corr))
		if got[1].action != payer.ClaimOnSubmit || got[2].action != payer.PaymentNoticeRequest {
			t.Fatalf("after the answer: %s, %s", got[1].action, got[2].action)
		}
		st2 := uuid.NewString()
		p.send(message{action: payer.StatusCheck, recipient: "payer-a", correlation: st2, workflow: wf, bundle: communicationBundle()})
		if cr := resources(t, p.waitFor(1, onCorrelation(st2))[0].bundle, "ClaimResponse")[0]; cr["outcome"] != "complete" {
			t.Fatalf("status after the decision: %v", cr["outcome"])
		}
		if status, code := p.send(message{action: payer.PaymentNoticeOnRequest, recipient: "payer-a", correlation: corr, workflow: wf, bundle: communicationBundle()}); status != http.StatusAccepted {
			t.Fatalf("payment acknowledgement: %d %s", status, code)
		}
	})
}

func TestAnIdenticalResendIsAcknowledgedAndNotProcessedAgain(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, nil))
		p := newProvider(t, h, "provider-1")
		m := message{action: payer.ClaimSubmit, recipient: "payer-a", apiCallID: uuid.NewString(), correlation: uuid.NewString(),
			bundle: claimBundle("claim", "CLM-ONCE", "GOLD-1", "", "", [2]string{"99213", "100"})}
		for range 3 {
			if status, code := p.send(m); status != http.StatusAccepted {
				t.Fatalf("send: %d %s", status, code)
			}
		}
		other := m
		other.correlation = uuid.NewString()
		if status, code := p.send(other); status != http.StatusBadRequest || code != hcx.ErrInvalidAPICallID {
			t.Fatalf("same api_call_id, other headers: %d %s", status, code)
		}
		// The same claim under a new api_call_id is a second submission: the
		// ledger names it.
		again := m
		again.apiCallID = uuid.NewString()
		p.send(again)
		p.waitFor(4, onCorrelation(m.correlation))
		s, err := h.sim.Ledger().Summary(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.Messages != 2 || s.Resends != 2 || len(s.ProcessedTwice) != 1 || s.ProcessedTwice[0] != "CLM-ONCE" {
			t.Fatalf("summary: %+v", s)
		}
	})
}

func TestRefusalsCarryTheProtocolsErrorCodes(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		h := startSim(t, db, rules(t, nil))
		p := newProvider(t, h, "provider-1")
		bundle := claimBundle("claim", "CLM-X", "GOLD-1", "", "", [2]string{"99213", "100"})
		stranger := &provider{t: t, code: "provider-2", gateway: p.gateway, gwCode: p.gwCode}
		stranger.key, stranger.cert, _ = hcx.DevIdentity(keyDir+"/keys/provider-2", "provider-2", timeNow())
		cases := []struct {
			name   string
			do     func() (int, string)
			status int
			code   string
		}{
			{"a body that is not a JWE", func() (int, string) {
				st, b := p.postRaw("/claim/submit", p.token(), []byte(`{"payload":"not.a.jwe"}`))
				return st, codeOf(b)
			}, 400, hcx.ErrInvalidPayload},
			{"no bearer token", func() (int, string) {
				st, b := p.postRaw("/claim/submit", "", []byte(`{"payload":"a.b.c.d.e"}`))
				return st, codeOf(b)
			}, 401, hcx.ErrAccessDenied},
			{"a sender the registry does not know", func() (int, string) {
				st, b := stranger.postRaw("/claim/submit", stranger.token(), []byte(`{"payload":"a.b.c.d.e"}`))
				return st, codeOf(b)
			}, 401, hcx.ErrAccessDenied},
			{"encrypted for another payer", func() (int, string) {
				return p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", bundle: bundle, encryptFor: p.payers["payer-b"]})
			}, 400, hcx.ErrInvalidEncryption},
			{"a recipient that is not behind the gateway", func() (int, string) {
				return p.send(message{action: payer.ClaimSubmit, recipient: "payer-zz", bundle: bundle})
			}, 400, hcx.ErrInvalidRecipient},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if status, code := c.do(); status != c.status || code != c.code {
					t.Fatalf("got %d %s, want %d %s", status, code, c.status, c.code)
				}
			})
		}
		if s, _ := h.sim.Ledger().Summary(context.Background()); s.Messages != 0 {
			t.Fatalf("a refused message was recorded: %+v", s)
		}
	})
}

func codeOf(body []byte) string {
	var pr hcx.ProtocolResponse
	_ = json.Unmarshal(body, &pr)
	if pr.Error == nil {
		return ""
	}
	return pr.Error.Code
}
