package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/store"
)

// hcxRefusals sends careflow's served /hcx/v1 route messages as the
// gateway would deliver them (its bearer token, JWE to careflow's
// registered key) that break one protocol rule each: each is refused with
// the protocol's error code, and careflow keeps nothing of it.
func hcxRefusals(t *testing.T, h *rcmHarness) {
	now := time.Now()
	gw, err := hcx.LoadDevIdentity(filepath.Join(h.simDir, "keys", "hcx-gateway"), "hcx-gateway", now)
	if err != nil {
		t.Fatal(err)
	}
	self, err := hcx.LoadDevIdentity(h.dir, "careflow-provider", now)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), store.Config{URL: h.dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// inbound counts the messages careflow kept of an api_call_id (the
	// journeys of the other scenarios receive theirs meanwhile).
	inbound := func(apiCallID string) int {
		var n int
		if err := db.Reader().QueryRow(context.Background(), `SELECT count(*) FROM hcx_messages WHERE direction = 'in' AND api_call_id = $1`,
			apiCallID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A message careflow accepted from payer-nile (the other scenarios
	// run beside this one), whose api_call_id a replay presents again.
	var seen string
	h.eventually("a message accepted from payer-nile", func() bool {
		err := db.Reader().QueryRow(context.Background(), `SELECT api_call_id FROM hcx_messages
			WHERE direction = 'in' AND sender = 'payer-nile' AND error_code = '' ORDER BY stored_at LIMIT 1`).Scan(&seen)
		return err == nil
	})

	bundle := []byte(`{"resourceType":"Bundle","type":"collection","identifier":{"value":"b-1"},"entry":[{"resource":` +
		`{"resourceType":"ClaimResponse","status":"active","outcome":"complete","use":"claim"}}]}`)
	message := func(hdr hcx.Header) (string, string) {
		hdr.Timestamp = time.Now()
		if hdr.SenderCode == "" {
			hdr.SenderCode = "payer-nile"
		}
		if hdr.RecipientCode == "" {
			hdr.RecipientCode = "careflow-provider"
		}
		if hdr.APICallID == "" {
			hdr.APICallID = uuid.NewString()
		}
		if hdr.CorrelationID == "" {
			hdr.CorrelationID = uuid.NewString()
		}
		hdr.Status = payer.StatusResponseComplete
		jwe, err := hcx.Encrypt(hdr, bundle, &self.Keys[0].PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return string(hcx.MarshalBody(jwe)), hdr.APICallID
	}
	body := func(b, _ string) string { return b }
	other, unknown := uuid.NewString(), uuid.NewString()
	for _, tc := range []struct {
		name, body, code, apiCallID string
		kept                        int // the messages of apiCallID careflow keeps: none but the replayed one's first
	}{
		{"a payload that is not a JWE", `{"payload":"not-a-jwe"}`, hcx.ErrInvalidPayload, "", 0},
		{"a JWE of five parts that does not decrypt", `{"payload":"eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0.a.b.c.d"}`, "", "", 0},
		{"a message for another participant", body(message(hcx.Header{RecipientCode: "another-provider", APICallID: other})), hcx.ErrInvalidRecipient, other, 0},
		{"an answer to no exchange careflow made", body(message(hcx.Header{APICallID: unknown})), hcx.ErrInvalidCorrelationID, unknown, 0},
		{"a replayed api_call_id", body(message(hcx.Header{APICallID: seen})), hcx.ErrInvalidAPICallID, seen, 1},
	} {
		tok, err := hcx.SignToken(gw.Keys[0], "hcx-gateway", "careflow-provider", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", "http://"+h.addr+"/hcx/v1/claim/on_submit", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		var pr struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &pr)
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(pr.Error.Code, "ERR_") || (tc.code != "" && pr.Error.Code != tc.code) {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, resp.StatusCode, body, tc.code)
		}
		if tc.apiCallID != "" {
			if n := inbound(tc.apiCallID); n != tc.kept {
				t.Errorf("%s: %d inbound messages kept, want %d", tc.name, n, tc.kept)
			}
		}
	}
	// Without the gateway's token nothing is even read.
	resp, err := http.Post("http://"+h.addr+"/hcx/v1/claim/on_submit", "application/json", strings.NewReader(body(message(hcx.Header{}))))
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, hcx.ErrAccessDenied) {
		t.Errorf("no token: %d %s", resp.StatusCode, body)
	}
}
