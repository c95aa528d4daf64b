package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The revenue cycle end to end, on both backends: careflow's real serve
// and `careflow payer-sim` speaking HCX (JWE, callbacks) over real HTTP,
// driven through /api/v1/rcm and read back at /fhir/R4. The amounts follow
// testdata/rcm_e2e_rules.yaml's Gold plan: a 50.00 co-pay once per claim,
// then 10% co-insurance on the rest, both the patient's share.
func TestRevenueCycleEndToEnd(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			h := newRCMHarness(t, d)
			// The scenarios run at once, each in its own goroutine (not
			// t.Parallel, which -parallel would bound to the cores, while
			// most of a journey's time is waiting on the payer).
			var wg sync.WaitGroup
			for _, sc := range rcmScenarios {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t.Run(sc.name, func(t *testing.T) { sc.run(t, h.on(t)) })
				}()
			}
			wg.Wait()
			// Last, alone: it stops and starts careflow.
			t.Run("careflow restarted mid-journey resumes where it stopped", func(t *testing.T) { restartMidJourney(t, h.on(t)) })
			h.ledgerClean()
		})
	}
}

type rcmScenario struct {
	name string
	run  func(t *testing.T, h *rcmHarness)
}

// paidVisit is a scenario whose journey is paid as adjudicated: its
// amounts, the Claim and ClaimResponse in the record, and whether it went
// through pre-authorization.
func paidVisit(req rcm.JourneyRequest, billed, approved, share string, preauth bool) func(t *testing.T, h *rcmHarness) {
	return func(t *testing.T, h *rcmHarness) {
		j := h.startJourney(h.billing, req, 201)
		j = h.waitFinal(h.billing, j.ID)
		if j.Status != rcm.StatusClosed || j.Outcome != rcm.OutcomePaid {
			t.Fatalf("journey %s/%s (%s), want closed/paid: %s", j.Status, j.Outcome, j.Reason, jsonString(j.Steps))
		}
		expectAmounts(t, j, billed, approved, share, approved, "0.00")
		claim := h.fhir(h.billing, j.References["claim"])
		if total := jsonString(claim["total"]); !strings.Contains(total, `"value":`+strings.TrimSuffix(strings.TrimSuffix(billed, "0"), ".0")) {
			t.Errorf("Claim.total %s, billed %s", total, billed)
		}
		cr := h.fhir(h.billing, j.References["claim_response"])
		if cr["resourceType"] != "ClaimResponse" || cr["outcome"] != "complete" ||
			!strings.Contains(jsonString(cr["request"]), j.References["claim"]) {
			t.Errorf("ClaimResponse %s", jsonString(cr))
		}
		if !strings.Contains(jsonString(cr["payment"]), `"complete"`) {
			t.Errorf("the ClaimResponse does not record a complete payment: %s", jsonString(cr["payment"]))
		}
		_, hasPreauth := j.References["preauth"]
		if hasPreauth != preauth {
			t.Errorf("pre-authorization %v, want %v (references %v)", hasPreauth, preauth, j.References)
		}
		if preauth {
			par := h.fhir(h.billing, j.References["preauth_response"])
			ref, _ := par["preAuthRef"].(string)
			if ref == "" || !strings.Contains(jsonString(claim["insurance"]), ref) {
				t.Errorf("the Claim does not carry the pre-authorization %q: %s", ref, jsonString(claim["insurance"]))
			}
		}
	}
}

var rcmScenarios = []rcmScenario{
	{"a standard outpatient visit is paid as adjudicated", paidVisit(
		// 99213 450.00: 50.00 co-pay, 40.00 co-insurance → 360.00;
		// J0696 48.00: 4.80 co-insurance → 43.20.
		visitOf(rcm.KindStandard, "payer-nile", "GOLD-1001", []string{"J06.9"}, []string{"99213", "J0696"}),
		"498.00", "403.20", "94.80", false)},
	{"a type 2 diabetes visit (E11.9, 99213) is paid, the patient's share deducted", paidVisit(
		visitOf(rcm.KindStandard, "payer-nile", "GOLD-1002", []string{"E11.9"}, []string{"99213"}),
		"450.00", "360.00", "90.00", false)},
	{"an emergency visit is billed without pre-authorization", paidVisit(
		// 99285 2800.00 → 2475.00; A0427 1500.00 → 1350.00.
		visitOf(rcm.KindEmergency, "payer-nile", "GOLD-1003", []string{"J18.9"}, []string{"99285", "A0427"}),
		"4300.00", "3825.00", "475.00", false)},
	{"a cardiac emergency (I21.9, 99285) is paid", paidVisit(
		visitOf(rcm.KindEmergency, "payer-nile", "GOLD-1004", []string{"I21.9"}, []string{"99285"}),
		"2800.00", "2475.00", "325.00", false)},
	{"a scheduled surgery is pre-authorized and its claim carries the reference", paidVisit(
		// 33510 145000.00 → 130455.00.
		visitOf(rcm.KindScheduled, "payer-nile", "GOLD-1005", []string{"I25.10"}, []string{"33510"}),
		"145000.00", "130455.00", "14545.00", true)},
	{"maternity care (O80, 59400) asks the pre-authorization the fee schedule marks", paidVisit(
		visitOf(rcm.KindStandard, "payer-nile", "GOLD-1006", []string{"O80"}, []string{"59400"}),
		"18500.00", "16605.00", "1895.00", true)},
	{"payer 5xx errors are sent again and the journey is paid", func(t *testing.T, h *rcmHarness) {
		paidVisit(visitOf(rcm.KindStandard, "payer-flaky", "GOLD-1007", []string{"E11.9"}, []string{"99213"}),
			"450.00", "360.00", "90.00", false)(t, h)
		if h.serverErrors() == 0 {
			t.Error("the flaky payer never answered 5xx: the scenario did not exercise a retry")
		}
	}},
	{"a refused pre-authorization stops the journey before any claim, on billing's list", func(t *testing.T, h *rcmHarness) {
		j := h.startJourney(h.billing, visitOf(rcm.KindScheduled, "payer-nile", "GOLD-1008", []string{"I25.10"}, []string{"J9035"}), 201)
		j = h.waitFinal(h.billing, j.ID)
		if j.Status != rcm.StatusAttention || j.Outcome != rcm.OutcomePreauthRefused {
			t.Fatalf("journey %s/%s (%s)", j.Status, j.Outcome, j.Reason)
		}
		if j.References["claim"] != "" || j.References["preauth_response"] == "" {
			t.Errorf("references %v", j.References)
		}
		if pr := h.fhir(h.billing, j.References["preauth_response"]); pr["preAuthRef"] != nil {
			t.Errorf("a refusal with a preAuthRef: %s", jsonString(pr))
		}
		expectAmounts(t, j, "0.00", "", "", "", "")
		openRCMTask(t, h, j.ID)
	}},
	{"a partial payment closes the journey with the payer's reduction as variance", func(t *testing.T, h *rcmHarness) {
		j := h.startJourney(h.billing, visitOf(rcm.KindStandard, "payer-nile", "GOLD-1009", []string{"E11.9"}, []string{"80053"}), 201)
		j = h.waitFinal(h.billing, j.ID)
		if j.Status != rcm.StatusClosed || j.Outcome != rcm.OutcomePartiallyPaid {
			t.Fatalf("journey %s/%s (%s)", j.Status, j.Outcome, j.Reason)
		}
		// 420.50 − 50.00 co-pay − 37.05 co-insurance = 333.45, half of
		// it approved (166.73, rounded); the variance is what the payer
		// cut: 420.50 − 87.05 − 166.73.
		expectAmounts(t, j, "420.50", "166.73", "87.05", "166.73", "166.72")
		cr := h.fhir(h.billing, j.References["claim_response"])
		if !strings.Contains(jsonString(cr["payment"]), `"partial"`) || !strings.Contains(jsonString(cr["item"]), `"code":"45"`) {
			t.Errorf("the ClaimResponse does not show the partial payment and the payer's reason: %s", jsonString(cr))
		}
		page := decodeInto[struct {
			Journeys []journeyJSON `json:"journeys"`
		}](t, h.billing.do("GET", "/api/v1/rcm/worklist?kind=short_paid", nil, 200))
		if !hasJourney(page.Journeys, j.ID) {
			t.Errorf("the short-paid worklist does not hold the journey: %s", jsonString(page))
		}
	}},
	{"a denial appealed is paid on a new Claim related to the original", func(t *testing.T, h *rcmHarness) {
		j := h.startJourney(h.billing, visitOf(rcm.KindStandard, "payer-nile", "GOLD-1010", []string{"E11.9"}, []string{"93000"}), 201)
		j = h.waitFinal(h.billing, j.ID)
		if j.Status != rcm.StatusClosed || j.Outcome != rcm.OutcomeDenied || j.Reason != "50" {
			t.Fatalf("journey %s/%s (%s)", j.Status, j.Outcome, j.Reason)
		}
		appeal := decodeInto[journeyJSON](t, h.billing.do("POST", "/api/v1/rcm/journeys/"+j.ID+"/appeal",
			map[string]string{"reason": "medical necessity documented"}, 201))
		if appeal.AppealOf != j.ID {
			t.Errorf("appeal_of %q, want %q", appeal.AppealOf, j.ID)
		}
		appeal = h.waitFinal(h.billing, appeal.ID)
		if appeal.Outcome != rcm.OutcomePaid {
			t.Fatalf("appeal %s/%s (%s)", appeal.Status, appeal.Outcome, appeal.Reason)
		}
		// 350.00 − 50.00 co-pay − 30.00 co-insurance.
		expectAmounts(t, appeal, "350.00", "270.00", "80.00", "270.00", "0.00")
		claim := h.fhir(h.billing, appeal.References["claim"])
		if appeal.References["claim"] == j.References["claim"] || !strings.Contains(jsonString(claim["related"]), j.References["claim"]) {
			t.Errorf("the appeal's Claim is not related to the original %s: %s", j.References["claim"], jsonString(claim["related"]))
		}
		// Appealing again returns the same appeal.
		again := decodeInto[journeyJSON](t, h.billing.do("POST", "/api/v1/rcm/journeys/"+j.ID+"/appeal", nil, 201))
		if again.ID != appeal.ID {
			t.Errorf("a second appeal started %s, want %s", again.ID, appeal.ID)
		}
	}},
	{"a payer's request for information is answered from billing's task and the claim is paid", func(t *testing.T, h *rcmHarness) {
		j := h.startJourney(h.billing, visitOf(rcm.KindStandard, "payer-nile", "GOLD-1011", []string{"E11.9"}, []string{"99213", "J1885"}), 201)
		task := openRCMTask(t, h, j.ID)
		j = h.journey(h.billing, j.ID)
		if !j.NeedsInfo || j.References["communication_request"] == "" {
			t.Fatalf("the journey does not show the payer's request: %s", jsonString(j))
		}
		// Billing reads the payer's question to answer it.
		if cr := h.fhir(h.billing, j.References["communication_request"]); cr["resourceType"] != "CommunicationRequest" ||
			!strings.Contains(jsonString(cr["payload"]), "medication administration record") {
			t.Errorf("CommunicationRequest %s", jsonString(cr))
		}
		claimed := decodeInto[engine.Task](t, h.billing.do("POST", "/api/v1/tasks/"+task.ID+"/claim", map[string]any{"version": task.RowVersion}, 200))
		h.billing.do("POST", "/api/v1/tasks/"+task.ID+"/complete", map[string]any{"version": claimed.RowVersion,
			"decision": rcm.DecisionAnswered, "result": map[string]string{"text": "Administration record attached."}}, 200)
		j = h.waitFinal(h.billing, j.ID)
		if j.Outcome != rcm.OutcomePaid {
			t.Fatalf("journey %s/%s (%s)", j.Status, j.Outcome, j.Reason)
		}
		// 99213 → 360.00; J1885 35.75 − 3.58 co-insurance → 32.17.
		expectAmounts(t, j, "485.75", "392.17", "93.58", "392.17", "0.00")
	}},
	{"an invalid code stops the journey with a work item naming its position", func(t *testing.T, h *rcmHarness) {
		j := h.startJourney(h.billing, visitOf(rcm.KindStandard, "payer-nile", "GOLD-1012", []string{"E11.9", "E11"}, []string{"99213"}), 201)
		j = h.waitFinal(h.billing, j.ID)
		if j.Status != rcm.StatusAttention || j.Outcome != rcm.OutcomeInvalidCodes || !strings.HasPrefix(j.Reason, "diagnosis_codes[1]") {
			t.Fatalf("journey %s/%s (%s)", j.Status, j.Outcome, j.Reason)
		}
		if j.References["claim"] != "" {
			t.Errorf("a claim was made: %v", j.References)
		}
		if task := openRCMTask(t, h, j.ID); !strings.Contains(task.Title, "diagnosis_codes[1]") || strings.Contains(task.Title, "E11") {
			t.Errorf("task title %q", task.Title)
		}
	}},
	{"a journey naming an unknown payer is refused and nothing is started", func(t *testing.T, h *rcmHarness) {
		body := h.billing.do("POST", "/api/v1/rcm/journeys", visitOf(rcm.KindStandard, "payer-nowhere", "GOLD-1013", []string{"E11.9"}, []string{"99213"}), 400)
		if !strings.Contains(string(body), "insurance.payer") {
			t.Errorf("the refusal does not name the field: %s", body)
		}
		page := decodeInto[struct {
			Journeys []journeyJSON `json:"journeys"`
		}](t, h.billing.do("GET", "/api/v1/rcm/journeys?payer=payer-nowhere", nil, 200))
		if len(page.Journeys) != 0 {
			t.Errorf("journeys for the unknown payer: %d", len(page.Journeys))
		}
	}},
	{"three concurrent journeys of one new patient are each paid, with one Patient", func(t *testing.T, h *rcmHarness) {
		var wg sync.WaitGroup
		ids := make([]string, 3)
		errs := make([]error, 3)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := visitOf(rcm.KindStandard, "payer-nile", fmt.Sprintf("GOLD-20%02d", i), []string{"E11.9"}, []string{"99213"})
				req.Patient = rcm.PatientInput{Identifiers: []rcm.Identifier{{System: "urn:careflow:test:mrn", Value: "MRN-CONCURRENT"}},
					Family: "Saleh", Given: []string{"Dina"}, Gender: "female"}
				ids[i], errs[i] = postJourney(h, req)
			}()
		}
		wg.Wait()
		patients := map[string]bool{}
		for i, id := range ids {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			j := h.waitFinal(h.billing, id)
			if j.Outcome != rcm.OutcomePaid {
				t.Errorf("journey %d: %s/%s (%s)", i, j.Status, j.Outcome, j.Reason)
			}
			expectAmounts(t, j, "450.00", "360.00", "90.00", "360.00", "0.00")
			patients[j.Patient] = true
		}
		if len(patients) != 1 {
			t.Errorf("%d patients for one national id", len(patients))
		}
	}},
	{"a batch of five claims runs to done", func(t *testing.T, h *rcmHarness) {
		var reqs []rcm.JourneyRequest
		for i := range 5 {
			reqs = append(reqs, visitOf(rcm.KindStandard, "payer-nile", fmt.Sprintf("GOLD-30%02d", i), []string{"E11.9"}, []string{"99213"}))
		}
		batch := decodeInto[struct {
			ID string `json:"id"`
		}](t, h.billing.do("POST", "/api/v1/rcm/batches", reqs, 202))
		var view struct {
			Total, Started, Final int
			States                map[string]int
			Done                  bool
		}
		h.eventually("the batch done", func() bool {
			view = decodeInto[struct {
				Total, Started, Final int
				States                map[string]int
				Done                  bool
			}](t, h.billing.do("GET", "/api/v1/rcm/batches/"+batch.ID, nil, 200))
			return view.Done
		})
		if view.Total != 5 || view.Started != 5 || view.Final != 5 || view.States[rcm.OutcomePaid] != 5 {
			t.Errorf("batch %+v", view)
		}
		page := decodeInto[struct {
			Journeys []journeyJSON `json:"journeys"`
		}](t, h.billing.do("GET", "/api/v1/rcm/journeys?batch="+batch.ID, nil, 200))
		if len(page.Journeys) != 5 {
			t.Errorf("%d journeys listed for the batch", len(page.Journeys))
		}
	}},
	{"the payers list names the simulator's payers with their fee schedules", func(t *testing.T, h *rcmHarness) {
		body := string(h.billing.do("GET", "/api/v1/rcm/payers", nil, 200))
		for _, want := range []string{"payer-nile", "payer-slow", "payer-flaky"} {
			if !strings.Contains(body, want) {
				t.Errorf("payers list lacks %s: %s", want, body)
			}
		}
	}},
	{"a cancelled journey stops", func(t *testing.T, h *rcmHarness) {
		j := h.startJourney(h.billing, visitOf(rcm.KindStandard, "payer-slow", "GOLD-1014", []string{"E11.9"}, []string{"99213"}), 201)
		c := decodeInto[journeyJSON](t, h.billing.do("POST", "/api/v1/rcm/journeys/"+j.ID+"/cancel", map[string]string{"reason": "patient_withdrew"}, 200))
		if c.Status != rcm.StatusCancelled {
			t.Fatalf("cancelled journey %s/%s", c.Status, c.Outcome)
		}
		if j = h.journey(h.billing, j.ID); j.Status != rcm.StatusCancelled {
			t.Errorf("journey after cancel: %s", j.Status)
		}
	}},
	{"the served /hcx/v1 route refuses what breaks the protocol and keeps nothing", hcxRefusals},
}

func hasJourney(js []journeyJSON, id string) bool {
	for _, j := range js {
		if j.ID == id {
			return true
		}
	}
	return false
}

// openRCMTask waits for the journey's open billing task in /api/v1/tasks.
func openRCMTask(t *testing.T, h *rcmHarness, journey string) engine.Task {
	t.Helper()
	var task engine.Task
	h.eventually("billing's task for journey "+journey, func() bool {
		page := decodeInto[struct {
			Tasks []engine.Task `json:"tasks"`
		}](t, h.billing.do("GET", "/api/v1/tasks?status=open&run_id="+journey, nil, 200))
		if len(page.Tasks) > 0 {
			task = page.Tasks[0]
			return true
		}
		return false
	})
	return task
}

// postJourney starts a journey from a goroutine (no t.Fatal there).
func postJourney(h *rcmHarness, req rcm.JourneyRequest) (string, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	r, _ := http.NewRequest("POST", h.billing.base+"/api/v1/rcm/journeys", bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+h.billing.token)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		return "", fmt.Errorf("start: %d %s", resp.StatusCode, body)
	}
	var j journeyJSON
	if err := json.Unmarshal(body, &j); err != nil {
		return "", err
	}
	return j.ID, nil
}

// restartMidJourney stops careflow while a journey waits on a slow payer
// and starts it again on the same data folder and database: the journey
// finishes where it stopped, with one Claim.
func restartMidJourney(t *testing.T, h *rcmHarness) {
	req := visitOf(rcm.KindStandard, "payer-slow", "GOLD-1015", []string{"E11.9"}, []string{"99213"})
	req.Patient = rcm.PatientInput{Identifiers: []rcm.Identifier{{System: "urn:careflow:test:mrn", Value: "MRN-RESTART"}},
		Family: "Ahmed", Given: []string{"Karim"}, Gender: "male"}
	j := h.startJourney(h.billing, req, 201)
	h.eventually("the journey waiting on the payer's claim answer", func() bool {
		j = h.journey(h.billing, j.ID)
		return j.References["claim"] != ""
	})
	h.stopServe()
	h.start()
	j = h.waitFinal(h.billing, j.ID)
	if j.Outcome != rcm.OutcomePaid {
		t.Fatalf("journey after the restart %s/%s (%s)", j.Status, j.Outcome, j.Reason)
	}
	expectAmounts(t, j, "450.00", "360.00", "90.00", "360.00", "0.00")
	bundle := decodeInto[struct {
		Total int `json:"total"`
	}](t, h.billing.do("GET", "/fhir/R4/Claim?patient=Patient/"+j.Patient+"&_total=accurate", nil, 200))
	if bundle.Total != 1 {
		t.Errorf("%d Claims for the restarted journey's patient, want 1", bundle.Total)
	}
}
