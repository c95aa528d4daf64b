package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/sim"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func sharedData(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "shared", "data", rel))
	if os.IsNotExist(err) {
		t.Skipf("the shared reference data is absent (%s)", rel)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The payers read what real participants send: HCX v0.7 document Bundles
// (Composition first), HCX sample payloads, NPHIES message Bundles; each
// answer is valid R4 (the provider checks every one).
func TestThePayersAnswerRealParticipantsBundles(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	h := startSim(t, db, rules(t, nil))
	p := newProvider(t, h, "provider-1")
	cases := []struct {
		file   string
		action payer.Action
		answer payer.Action
		typ    string
	}{
		{"hcx/spec-examples/Bundle-ClaimRequestDocument-example-01.json", payer.ClaimSubmit, payer.ClaimOnSubmit, "ClaimResponse"},
		{"hcx/platform-samples/claims.json", payer.ClaimSubmit, payer.ClaimOnSubmit, "ClaimResponse"},
		{"hcx/spec-examples/Bundle-CoverageEligibilityRequestDocument-example-01.json", payer.EligibilityCheck, payer.EligibilityOnCheck, "CoverageEligibilityResponse"},
		{"hcx/platform-samples/coverageeligibility.json", payer.EligibilityCheck, payer.EligibilityOnCheck, "CoverageEligibilityResponse"},
		{"nphies/10-Claim-Professional-Request.json", payer.ClaimSubmit, payer.ClaimOnSubmit, "ClaimResponse"},
		{"nphies/5a-Preauth-Professional-Request.json", payer.PreauthSubmit, payer.PreauthOnSubmit, "ClaimResponse"},
		{"nphies/14a-Eligibilty-Request-Ben-Val.json", payer.EligibilityCheck, payer.EligibilityOnCheck, "CoverageEligibilityResponse"},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			corr := uuid.NewString()
			if status, code := p.send(message{action: c.action, recipient: "payer-b", correlation: corr, bundle: sharedData(t, c.file)}); status != http.StatusAccepted {
				t.Fatalf("%d %s", status, code)
			}
			got := p.waitFor(1, onCorrelation(corr))[0]
			if got.action != c.answer || got.header.Status != payer.StatusResponseComplete || len(resources(t, got.bundle, c.typ)) != 1 {
				t.Fatalf("answered %s %s with %d %s", got.action, got.header.Status, len(resources(t, got.bundle, c.typ)), c.typ)
			}
		})
	}
}

// A dump of the simulator's database holds none of the patient's data:
// the bundles are sealed, the member id is a blind index.
func TestTheLedgerHoldsNoReadablePHI(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	h := startSim(t, db, rules(t, nil))
	p := newProvider(t, h, "provider-1")
	const member = "GOLD-ZEBRA-4711"
	bundle := claimBundle("claim", "CLM-PHI", member, "", "", [2]string{"99213", "100"})
	bundle = bytes.Replace(bundle, []byte(`"family":"Test"`), []byte(`"family":"Quixotequa"`), 1)
	corr := uuid.NewString()
	p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr, bundle: bundle})
	p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: uuid.NewString(),
		bundle: claimBundle("claim", "CLM-PHI-2", member, "", "", [2]string{"43239", "100"})}) // waits for information
	p.waitFor(2, onCorrelation(corr))
	h.stop()
	var dump []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(db.SQLitePath() + suffix)
		if err == nil {
			dump = append(dump, b...)
		}
	}
	if len(dump) == 0 {
		t.Fatal("no database file to dump")
	}
	if !bytes.Contains(dump, []byte("CLM-PHI")) {
		t.Fatal("the dump does not even hold the claim's identifier: not a dump of the ledger")
	}
	for _, phi := range []string{"Quixotequa", member, "99213"} {
		if bytes.Contains(dump, []byte(phi)) {
			t.Fatalf("the database holds %q in plain text", phi)
		}
	}
}

func TestTheLedgerEndpointCountsAndFilters(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	h := startSim(t, db, rules(t, nil))
	p := newProvider(t, h, "provider-1")
	for i, it := range [][2]string{{"99213", "100"}, {"S9999", "100"}} {
		corr := uuid.NewString()
		p.send(message{action: payer.ClaimSubmit, recipient: "payer-a", correlation: corr,
			bundle: claimBundle("claim", []string{"CLM-L1", "CLM-L2"}[i], "GOLD-1", "", "", it)})
		p.waitFor(1, onCorrelation(corr))
	}
	get := func(q string) (int, map[string]any) {
		resp, err := http.Get(h.srv.URL + "/sim/ledger" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return resp.StatusCode, v
	}
	status, v := get("?outcome=denied&messages=true")
	claims := v["claims"].([]any)
	summary := v["summary"].(map[string]any)
	if status != 200 || len(claims) != 1 || claims[0].(map[string]any)["identifier"] != "CLM-L2" ||
		summary["claims"].(map[string]any)["approved"] != float64(1) || len(v["messages"].([]any)) != 2 {
		t.Fatalf("ledger: %d %v", status, v)
	}
	if status, v := get("?colour=red"); status != 400 || v["field"] != "colour" {
		t.Fatalf("an unknown parameter: %d %v", status, v)
	}
	s, err := h.sim.Ledger().Summary(context.Background())
	if err != nil || s.Messages != 2 || s.Claims[sim.OutcomeDenied] != 1 {
		t.Fatalf("summary %+v %v", s, err)
	}
}

func TestTheRegistryRefusesBadRegistrationsAndTheSimulatorsOwnCodes(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	h := startSim(t, db, rules(t, nil))
	p := newProvider(t, h, "provider-1")
	good := func() map[string]any {
		c := string(encodeCert(p))
		return map[string]any{"participant_code": "provider-x", "participant_name": "X", "endpoint_url": "http://127.0.0.1:1/hcx",
			"encryption_cert": c, "signing_cert_path": c}
	}
	cases := []struct {
		name   string
		change func(m map[string]any)
		status int
		want   string
	}{
		{"a good registration", func(map[string]any) {}, 200, ""},
		{"an endpoint with credentials", func(m map[string]any) { m["endpoint_url"] = "http://u:p@127.0.0.1:1/" }, 400, "endpoint_url"},
		{"an endpoint that is not http", func(m map[string]any) { m["endpoint_url"] = "ftp://127.0.0.1/" }, 400, "endpoint_url"},
		{"a certificate that is not PEM", func(m map[string]any) { m["encryption_cert"] = "nope" }, 400, "encryption_cert"},
		{"a bad code", func(m map[string]any) { m["participant_code"] = "a b" }, 400, "participant_code"},
		{"the gateway's code", func(m map[string]any) { m["participant_code"] = "hcx-gateway-test" }, 409, "participant_code"},
		{"a payer's code", func(m map[string]any) { m["participant_code"] = "payer-a" }, 409, "participant_code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := good()
			c.change(m)
			status, body := p.post("/participant/create", "", m)
			if status != c.status || !bytes.Contains(body, []byte(c.want)) {
				t.Fatalf("%d %s", status, body)
			}
		})
	}
	status, body := p.post("/participant/search", "", map[string]any{"filters": map[string]any{"roles": map[string]string{"eq": "payor"}}})
	var res struct {
		Participants []struct {
			Code string `json:"participant_code"`
		} `json:"participants"`
	}
	_ = json.Unmarshal(body, &res)
	if status != 200 || len(res.Participants) != 2 || res.Participants[0].Code != "payer-a" {
		t.Fatalf("payers: %d %s", status, body)
	}
}

// A sparse request (a bare resource, no patient, no coverage, no id) is
// still answered with valid R4: the provider validates every answer.
func TestSparseRequestsGetValidAnswers(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	h := startSim(t, db, rules(t, nil))
	p := newProvider(t, h, "provider-1")
	for name, c := range map[string]struct {
		action  payer.Action
		payload string
		answer  string
	}{
		"an eligibility request with nothing but its purpose": {payer.EligibilityCheck,
			`{"resourceType":"CoverageEligibilityRequest","status":"active","purpose":["validation"]}`, "CoverageEligibilityResponse"},
		"a claim without patient or insurance": {payer.ClaimSubmit,
			`{"resourceType":"Claim","id":"c9","use":"claim","item":[{"sequence":1,"productOrService":{"coding":[{"code":"99213"}]}}]}`, "ClaimResponse"},
	} {
		t.Run(name, func(t *testing.T) {
			corr := uuid.NewString()
			if status, code := p.send(message{action: c.action, recipient: "payer-a", correlation: corr, bundle: []byte(c.payload)}); status != http.StatusAccepted {
				t.Fatalf("%d %s", status, code)
			}
			got := p.waitFor(1, onCorrelation(corr))[0]
			if got.header.Status != payer.StatusResponseComplete || len(resources(t, got.bundle, c.answer)) != 1 {
				t.Fatalf("answered %s %s", got.action, got.header.Status)
			}
		})
	}
}
