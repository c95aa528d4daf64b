package hcx

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// rotate gives a participant of the test gateway a new key and registers
// its certificate, as a participant's rotation does.
func (g *testGateway) rotate(t *testing.T, code string) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c, err := selfSign(k, code, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.participants[code]
	e.EncryptionCert = string(EncodeCertificatePEM(c))
	g.participants[code] = e
	return k
}

func TestRotatedKeysAreFetchedAgainAfterAFailure(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		g := newTestGateway(t)
		p := testParticipant(t, db, g)
		var clock atomic.Int64 // everyone's time
		clock.Store(time.Now().UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		p.registry.now, p.client.now, p.cfg.Clock = now, now, now
		g.mu.Lock()
		g.now = now // tokens are made and checked on this clock on both sides
		g.mu.Unlock()
		inbox := &fakeInbox{}
		srv := httptest.NewServer(p.Handler(inbox))
		t.Cleanup(srv.Close)
		ctx := context.Background()

		// The gateway rotates the key its tokens are signed with.
		if status, _ := g.callback(t, srv.URL, "claim/on_submit", callbackHeader(APICallID("rot/1")), claimBundle, ""); status != http.StatusAccepted {
			t.Fatalf("before the rotation: %d", status)
		}
		newKey := g.rotate(t, DefaultGatewayCode)
		g.mu.Lock()
		g.key = newKey
		g.mu.Unlock()
		// Within minRefresh of the last fetch the cache is kept: refused.
		if status, pr := g.callback(t, srv.URL, "claim/on_submit", callbackHeader(APICallID("rot/2")), claimBundle, ""); status != http.StatusUnauthorized {
			t.Fatalf("a token of the new key within minRefresh: %d %+v", status, pr.Error)
		}
		clock.Add(int64(time.Minute))
		if status, pr := g.callback(t, srv.URL, "claim/on_submit", callbackHeader(APICallID("rot/3")), claimBundle, ""); status != http.StatusAccepted {
			t.Fatalf("after the rotation: %d %+v", status, pr.Error)
		}

		// The payer rotates its encryption key: the first send is refused
		// with ERR_INVALID_ENCRYPTION, the registry is asked again, and the
		// message goes out for the new key.
		if _, err := p.Client().Send(ctx, request("rot/send/1")); err != nil {
			t.Fatal(err)
		}
		newPayerKey := g.rotate(t, payerCode)
		g.mu.Lock()
		g.payerKey = newPayerKey
		g.mu.Unlock()
		clock.Add(int64(time.Minute))
		if _, err := p.Client().Send(ctx, request("rot/send/2")); err != nil {
			t.Fatalf("a send after the payer's rotation: %v", err)
		}
		if n := len(g.received); n != 2 {
			t.Errorf("the payer received %d messages, want 2", n)
		}
	})
}
