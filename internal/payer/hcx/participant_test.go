package hcx

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The patient's name in the test Bundles: the dump test looks for it.
const patientName = "Zenobia Quartermaine"

var claimBundle = []byte(`{"resourceType":"Bundle","type":"collection","identifier":{"value":"b-1"},"entry":[
	{"fullUrl":"urn:uuid:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","resource":{"resourceType":"ClaimResponse","id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","status":"active","use":"claim","outcome":"complete","created":"2026-12-01","insurer":{"reference":"Organization/o"},"patient":{"reference":"Patient/p"},"type":{"text":"institutional"}}},
	{"fullUrl":"urn:uuid:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c","resource":{"resourceType":"Patient","id":"p","name":[{"text":"` + patientName + `"}]}}]}`)

func request(key string) payer.Request {
	return payer.Request{Action: payer.ClaimSubmit, Recipient: payerCode, CorrelationID: "277fb6d0-a63e-4885-a8d0-67672f6ee6e9",
		WorkflowID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", IdempotencyKey: key, Bundle: claimBundle}
}

func TestSendDeliversAnEncryptedMessageAndLogsItOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		p := testParticipant(t, db, g)
		ctx := context.Background()
		req := request("run-1/claim.submit/1")
		ack, err := p.Client().Send(ctx, req)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if ack.APICallID != APICallID(req.IdempotencyKey) || ack.CorrelationID != req.CorrelationID || ack.Timestamp.IsZero() {
			t.Errorf("ack %+v", ack)
		}
		if len(g.received) != 1 {
			t.Fatalf("the payer received %d messages", len(g.received))
		}
		got := g.received[0]
		if got.action != "claim/submit" || got.header.SenderCode != careflowCode || got.header.RecipientCode != payerCode ||
			got.header.WorkflowID != req.WorkflowID || got.header.Status != payer.StatusRequestInitiated || !bytes.Equal(got.payload, claimBundle) {
			t.Errorf("the payer received %+v", got.header)
		}

		// A retry (a crash after the POST) presents the same api_call_id;
		// the gateway says it has it, which is an acknowledgement.
		ack2, err := p.Client().Send(ctx, req)
		if err != nil || ack2.APICallID != ack.APICallID {
			t.Fatalf("retry: %+v, %v", ack2, err)
		}
		if len(g.received) != 1 {
			t.Errorf("the retry was applied again: %d messages", len(g.received))
		}
		msgs, err := p.Log().MessagesOfCorrelation(ctx, req.CorrelationID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].Direction != DirectionOut || !bytes.Equal(msgs[0].Payload, claimBundle) || msgs[0].ErrorCode != "" {
			t.Fatalf("log: %d messages %+v", len(msgs), msgs)
		}
		if bytes.Contains(storetest.Dump(t, db), []byte(patientName)) {
			t.Error("the database dump holds the payload's patient name")
		}
	})
}

func TestSendSortsRefusalsFromTransientFailures(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		p := testParticipant(t, db, g)
		ctx := context.Background()

		g.answer = func(h Header) (int, []byte) {
			return 400, []byte(`{"timestamp":1,"api_call_id":"` + h.APICallID + `","error":{"code":"ERR_INVALID_DOMAIN_PAYLOAD","message":"bad claim"}}`)
		}
		_, err := p.Client().Send(ctx, request("run-2/claim/1"))
		var pe *payer.Error
		if !errors.As(err, &pe) || pe.Code != ErrInvalidDomainPayload || pe.HTTPStatus != 400 {
			t.Fatalf("a refusal: %v", err)
		}
		msgs, _ := p.Log().MessagesOfWorkflow(ctx, request("").WorkflowID)
		if len(msgs) != 1 || msgs[0].ErrorCode != ErrInvalidDomainPayload {
			t.Errorf("the refusal is not on the logged message: %+v", msgs)
		}

		for name, answer := range map[string]func(Header) (int, []byte){
			"a 500 with a protocol error": func(Header) (int, []byte) {
				return 500, []byte(`{"timestamp":1,"error":{"code":"ERR_SERVICE_UNAVAILABLE"}}`)
			},
			"a 502 page":  func(Header) (int, []byte) { return 502, []byte(`<html>bad gateway</html>`) },
			"a redirect":  func(Header) (int, []byte) { return 307, nil },
			"a 400 page ": func(Header) (int, []byte) { return 400, []byte(`oops`) },
		} {
			g.answer = answer
			_, err := p.Client().Send(ctx, request("run-3/"+name))
			if err == nil || errors.As(err, &pe) {
				t.Errorf("%s: %v, want a transient error", name, err)
			}
			if err != nil && (strings.Contains(err.Error(), g.srv.URL) || strings.Contains(err.Error(), "127.0.0.1")) {
				t.Errorf("%s: the error names the gateway: %v", name, err)
			}
		}

		// A network failure is transient and never names the URL.
		g.srv.Close()
		_, err = p.Client().Send(ctx, request("run-4/claim/1"))
		if err == nil || errors.As(err, &pe) || strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("a closed gateway: %v", err)
		}
	})
}

func TestSendRefusesAnUnknownRecipientWithoutCallingTheGateway(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		p := testParticipant(t, db, g)
		req := request("run-5/claim/1")
		req.Recipient = "nobody@hcx"
		_, err := p.Client().Send(context.Background(), req)
		var pe *payer.Error
		if !errors.As(err, &pe) || pe.Code != ErrInvalidRecipient {
			t.Fatalf("Send = %v", err)
		}
		if len(g.received) != 0 {
			t.Error("the gateway was called")
		}
		req.IdempotencyKey = ""
		if _, err := p.Client().Send(context.Background(), req); !errs.Is(err, errs.Invalid) {
			t.Errorf("a request without idempotency key: %v", err)
		}
	})
}

// fakeInbox records what it receives and answers fail when set.
type fakeInbox struct {
	mu       sync.Mutex
	received []payer.Message
	fail     error
}

func (f *fakeInbox) Receive(ctx context.Context, tx store.Tx, msg payer.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.received = append(f.received, msg)
	return f.fail
}

func callbackHeader(apiCallID string) Header {
	return Header{SenderCode: payerCode, RecipientCode: careflowCode, APICallID: apiCallID,
		CorrelationID: "277fb6d0-a63e-4885-a8d0-67672f6ee6e9", WorkflowID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		Timestamp: time.Now(), Status: payer.StatusResponseComplete}
}

func TestTheHandlerStoresAndHandsOnACallbackOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		p := testParticipant(t, db, g)
		inbox := &fakeInbox{}
		srv := httptest.NewServer(p.Handler(inbox))
		t.Cleanup(srv.Close)

		h := callbackHeader("5cbe7122-a1e4-4528-bb4f-b4cefd9d0374")
		status, pr := g.callback(t, srv.URL, payer.ClaimOnSubmit, h, claimBundle, "")
		if status != http.StatusAccepted || pr.Error != nil || pr.APICallID != h.APICallID || pr.CorrelationID != h.CorrelationID {
			t.Fatalf("answer %d %+v", status, pr)
		}
		if len(inbox.received) != 1 {
			t.Fatalf("the inbox received %d messages", len(inbox.received))
		}
		m := inbox.received[0]
		if m.Action != payer.ClaimOnSubmit || m.Sender != payerCode || m.APICallID != h.APICallID || m.ExchangeID == "" ||
			!bytes.Equal(m.Bundle, claimBundle) || m.Status != payer.StatusResponseComplete || !m.Timestamp.Equal(h.Timestamp.Truncate(time.Millisecond)) {
			t.Errorf("message %+v", m)
		}
		msgs, err := p.Log().MessagesOfWorkflow(context.Background(), h.WorkflowID)
		if err != nil || len(msgs) != 1 || msgs[0].ID != m.ExchangeID || msgs[0].Direction != DirectionIn || !bytes.Equal(msgs[0].Payload, claimBundle) {
			t.Fatalf("log: %v %+v", err, msgs)
		}

		// The same api_call_id again: refused, nothing changes.
		status, pr = g.callback(t, srv.URL, payer.ClaimOnSubmit, h, claimBundle, "")
		if status != http.StatusBadRequest || pr.Error == nil || pr.Error.Code != ErrInvalidAPICallID ||
			!IsDuplicateAPICallID(&payer.Error{Code: pr.Error.Code, Message: pr.Error.Message}) {
			t.Fatalf("replay answered %d %+v", status, pr.Error)
		}
		if len(inbox.received) != 1 || countMessages(t, db) != 1 {
			t.Errorf("the replay changed something: %d received, %d rows", len(inbox.received), countMessages(t, db))
		}
		if bytes.Contains(storetest.Dump(t, db), []byte(patientName)) {
			t.Error("the database dump holds the payload's patient name")
		}
	})
}

func TestTheHandlerRefusesAndStoresNothing(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		p := testParticipant(t, db, g)
		inbox := &fakeInbox{}
		srv := httptest.NewServer(p.Handler(inbox))
		t.Cleanup(srv.Close)
		providerTok, _ := SignToken(testKeys()[0], careflowCode, careflowCode, time.Now())
		expired, _ := SignToken(g.key, DefaultGatewayCode, careflowCode, time.Now().Add(-time.Hour))

		n := 0
		next := func() Header {
			n++
			return callbackHeader(APICallID("refusal/" + string(rune('a'+n))))
		}
		cases := []struct {
			name   string
			send   func() (int, ProtocolResponse)
			status int
			code   string
			inbox  error
		}{
			{"a malformed JWE", func() (int, ProtocolResponse) {
				return g.post(t, srv.URL+Path+"claim/on_submit", MarshalBody("not.a.jwe"), "")
			}, 400, ErrInvalidPayload, nil},
			{"a body that is not the protocol's", func() (int, ProtocolResponse) {
				return g.post(t, srv.URL+Path+"claim/on_submit", []byte(`{"data":1}`), "")
			}, 400, ErrInvalidPayload, nil},
			{"a message for another participant", func() (int, ProtocolResponse) {
				h := next()
				h.RecipientCode = "other@hcx"
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, h, claimBundle, "")
			}, 400, ErrInvalidRecipient, nil},
			{"a message from an unknown sender", func() (int, ProtocolResponse) {
				h := next()
				h.SenderCode = "stranger@hcx"
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, h, claimBundle, "")
			}, 400, ErrInvalidSender, nil},
			{"a message from the future", func() (int, ProtocolResponse) {
				h := next()
				h.Timestamp = time.Now().Add(time.Hour)
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, h, claimBundle, "")
			}, 400, ErrInvalidTimestamp, nil},
			{"a payload that is not a Bundle", func() (int, ProtocolResponse) {
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, next(), []byte(`{"hello":1}`), "")
			}, 400, ErrInvalidDomainPayload, nil},
			{"an unknown correlation", func() (int, ProtocolResponse) {
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, next(), claimBundle, "")
			}, 400, ErrInvalidCorrelationID, errs.E(errs.NotFound, "no journey")},
			{"a sender that is not the journey's payer", func() (int, ProtocolResponse) {
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, next(), claimBundle, "")
			}, 400, ErrInvalidSender, errs.E(errs.Invalid, "not its payer").InField("sender")},
			{"no bearer token", func() (int, ProtocolResponse) {
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, next(), claimBundle, "-")
			}, 401, ErrAccessDenied, nil},
			{"a token that is not the gateway's", func() (int, ProtocolResponse) {
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, next(), claimBundle, providerTok)
			}, 401, ErrAccessDenied, nil},
			{"an expired token", func() (int, ProtocolResponse) {
				return g.callback(t, srv.URL, payer.ClaimOnSubmit, next(), claimBundle, expired)
			}, 401, ErrAccessDenied, nil},
			{"an action careflow does not receive", func() (int, ProtocolResponse) {
				return g.callback(t, srv.URL, payer.ClaimSubmit, next(), claimBundle, "")
			}, 404, ErrInvalidPayload, nil},
		}
		for _, tc := range cases {
			inbox.fail = tc.inbox
			before := len(inbox.received)
			status, pr := tc.send()
			if status != tc.status || pr.Error == nil || pr.Error.Code != tc.code {
				t.Errorf("%s: answered %d %+v, want %d %s", tc.name, status, pr.Error, tc.status, tc.code)
			}
			if tc.inbox == nil && len(inbox.received) != before {
				t.Errorf("%s: the inbox was called", tc.name)
			}
			if c := countMessages(t, db); c != 0 {
				t.Errorf("%s: %d messages stored", tc.name, c)
			}
		}
	})
}

func TestTheHandlerLimitsTheBody(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		p := testParticipant(t, db, g)
		p.cfg.MaxBody = 1024
		srv := httptest.NewServer(p.Handler(&fakeInbox{}))
		t.Cleanup(srv.Close)
		status, pr := g.post(t, srv.URL+Path+"claim/on_submit", MarshalBody(strings.Repeat("a", 4096)), "")
		if status != http.StatusRequestEntityTooLarge || pr.Error == nil || pr.Error.Code != ErrInvalidPayload {
			t.Errorf("answered %d %+v", status, pr.Error)
		}
	})
}

func TestRegistryCachesParticipantsAndFetchesAgainWhenAsked(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		// A certificate served by URL, fetched through the outbound client.
		payerPEM := []byte(g.participants[payerCode].EncryptionCert)
		certSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(payerPEM)
		}))
		t.Cleanup(certSrv.Close)
		certHost := strings.TrimPrefix(certSrv.URL, "http://")
		p := testParticipant(t, db, g, certHost)
		var clock atomic.Int64 // the registry's and the gateway's time
		clock.Store(time.Now().UnixNano())
		p.registry.now = func() time.Time { return time.Unix(0, clock.Load()) }
		g.mu.Lock()
		g.now = p.registry.now
		g.mu.Unlock()
		ctx := context.Background()

		g.mu.Lock()
		e := g.participants[payerCode]
		e.EncryptionCert = certSrv.URL + "/payer.pem"
		g.participants[payerCode] = e
		g.participants["retired@hcx"] = RegistryEntry{Participant: payer.Participant{Code: "retired@hcx", Roles: []string{RolePayer}, Status: "Inactive"},
			EncryptionCert: e.EncryptionCert}
		before := g.searches
		g.mu.Unlock()

		for range 3 {
			got, ok, err := p.Directory().Lookup(ctx, payerCode)
			if err != nil || !ok || got.Name != "Payer Sim" || !hasRole(got.Roles, RolePayer) {
				t.Fatalf("Lookup = %+v, %v, %v", got, ok, err)
			}
		}
		if _, err := p.Directory().EncryptionKey(ctx, payerCode); err != nil {
			t.Fatal(err)
		}
		if n := g.searches - before; n != 1 {
			t.Errorf("%d registry searches for one participant looked up four times", n)
		}
		if _, ok, err := p.Directory().Lookup(ctx, "retired@hcx"); ok || err != nil {
			t.Errorf("an inactive participant: %v, %v", ok, err)
		}
		if _, ok, err := p.Directory().Lookup(ctx, "nobody@hcx"); ok || err != nil {
			t.Errorf("an unknown participant: %v, %v", ok, err)
		}
		before = g.searches
		p.Directory().Invalidate(payerCode)
		_, _, _ = p.Directory().Lookup(ctx, payerCode)
		clock.Add(int64(DefaultCacheTTL + time.Second))
		_, _, _ = p.Directory().Lookup(ctx, payerCode)
		if n := g.searches - before; n != 2 {
			t.Errorf("%d searches after an invalidation and an expiry, want 2", n)
		}

		payers, err := p.Directory().Payers(ctx)
		if err != nil || len(payers) != 1 || payers[0].Code != payerCode {
			t.Errorf("Payers = %+v, %v", payers, err)
		}
	})
}

func TestNewParticipantRefusesAGatewayTheOutboundClientDoesNotAllow(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		p := testParticipant(t, db, g)
		cfg := p.cfg
		cfg.GatewayURL = "http://" + net.JoinHostPort("203.0.113.7", "8443")
		if _, err := NewParticipant(cfg); err == nil {
			t.Fatal("accepted a gateway outside the allow-list")
		}
	})
}
