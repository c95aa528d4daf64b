package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/events/webhook"
	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// webhookFixture is the authorization fixture serving the real webhooks,
// allowed to call one test receiver (which answers 204).
type webhookFixture struct {
	*authzFixture
	receiver string
}

func newWebhookFixture(t *testing.T, db *store.DB) *webhookFixture {
	t.Helper()
	f := newAuthzFixture(t, db, nil)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(recv.Close)
	u, _ := url.Parse(recv.URL)
	cl, err := outbound.New(outbound.Config{Hosts: []string{u.Host}})
	if err != nil {
		t.Fatal(err)
	}
	// Set before the first request: the routes read it per request.
	f.srv.opts.Webhooks = webhook.New(db, newTestRing(t, db), cl, webhook.Options{})
	return &webhookFixture{authzFixture: f, receiver: recv.URL + "/hook"}
}

func (f *webhookFixture) register(t *testing.T, admin string) webhook.Registered {
	t.Helper()
	body := fmt.Sprintf(`{"url":%q,"event_types":["rcm.*","clinical.*"]}`, f.receiver)
	return must[webhook.Registered](t, f.do(t, admin, "POST", "/api/v1/webhooks", body), http.StatusCreated)
}

// TestWebhooksAuthorizationMatrix drives testdata/authz_matrix_webhooks.csv
// through the real server on every backend: admin alone manages webhooks;
// every route and role has rows, and every decision is audited.
func TestWebhooksAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	rows := readMatrixFile(t, "testdata/authz_matrix_webhooks.csv")
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.role] = true
		covered[r.method+" "+strings.NewReplacer("{webhook}", "{id}", "{webhook_del}", "{id}").Replace(r.path)] = true
	}
	for _, role := range auth.Roles() {
		if !covered[string(role)] {
			t.Errorf("role %s has no row in the webhooks matrix", role)
		}
	}
	for _, p := range New(Options{}).Patterns() {
		if strings.Contains(p, " /api/v1/webhooks") && !covered[p] {
			t.Errorf("route %s has no row in the webhooks matrix", p)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWebhookFixture(t, db)
		admin := f.principal(t, "matrix-admin", auth.Admin, "")
		kept, del := f.register(t, admin), f.register(t, admin)
		repl := strings.NewReplacer("{webhook_del}", del.ID, "{webhook}", kept.ID, "{receiver}", f.receiver)
		for i, row := range rows {
			row.path, row.body = repl.Replace(row.path), repl.Replace(row.body)
			t.Run(fmt.Sprintf("line%03d_%s_%s", row.line, row.role, row.method), func(t *testing.T) {
				runMatrixRow(t, f.authzFixture, i, row)
			})
		}
	})
}

// The webhooks' API end to end: the secret is shown once and stored sealed;
// a URL on a host the server may not call, plain http to a public host,
// an unknown event type or a short secret is a 400 naming the field; a
// stale version is a 409; a deleted webhook is a 404; each access is
// audited under the webhook's id.
func TestWebhooksAPI(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWebhookFixture(t, db)
		admin := f.principal(t, "api-admin", auth.Admin, "")
		resp := f.do(t, admin, "POST", "/api/v1/webhooks", fmt.Sprintf(`{"url":%q,"event_types":["clinical.*"]}`, f.receiver))
		reg := must[webhook.Registered](t, resp, http.StatusCreated)
		if !strings.HasPrefix(reg.Secret, "whsec_") || resp.header.Get("Location") != "/api/v1/webhooks/"+reg.ID || resp.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("registration %+v, headers %v", reg, resp.header)
		}
		for _, e := range f.auditOf(t, resp.requestID) {
			if e.ResourceType != webhookType || e.ResourceID != reg.ID && e.ResourceID != "" || e.Outcome != audit.OutcomeSuccess {
				t.Fatalf("audit entry %+v", e)
			}
		}
		got := f.do(t, admin, "GET", "/api/v1/webhooks/"+reg.ID, "")
		if bytes.Contains(got.body, []byte(reg.Secret)) || bytes.Contains(got.body, []byte(`"secret"`)) {
			t.Fatalf("a read shows the secret: %s", got.body)
		}
		if e := f.auditOf(t, got.requestID); len(e) != 1 || e[0].ResourceID != reg.ID || e[0].Action != audit.ActionRead {
			t.Fatalf("read audited as %+v", e)
		}
		list := must[struct{ Webhooks []webhook.Webhook }](t, f.do(t, admin, "GET", "/api/v1/webhooks", ""), http.StatusOK)
		if len(list.Webhooks) != 1 || list.Webhooks[0].ID != reg.ID || list.Webhooks[0].EventTypes[0] != "clinical.*" {
			t.Fatalf("list %+v", list)
		}
		var sealed []byte
		if err := db.Reader().QueryRow(context.Background(), `SELECT secret FROM webhooks WHERE id = $1`, reg.ID).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, []byte(reg.Secret)) || bytes.Contains(sealed, []byte(reg.Secret[6:])) {
			t.Fatal("the secret is stored in the clear")
		}

		for _, c := range []struct{ body, field string }{
			{`{"url":"https://elsewhere.example:443/hook","event_types":["*"]}`, "url"},
			{`{"url":"http://203.0.113.7/hook","event_types":["*"]}`, "url"},
			{`{"url":"ftp://127.0.0.1/hook","event_types":["*"]}`, "url"},
			{fmt.Sprintf(`{"url":%q,"event_types":["Clinical Stuff"]}`, f.receiver), "event_types"},
			{fmt.Sprintf(`{"url":%q,"event_types":[]}`, f.receiver), "event_types"},
			{fmt.Sprintf(`{"url":%q,"event_types":["*"],"secret":"short"}`, f.receiver), "secret"},
			{fmt.Sprintf(`{"url":%q,"event_types":["*"],"colour":"red"}`, f.receiver), "colour"},
		} {
			if p := problemOf(t, f.do(t, admin, "POST", "/api/v1/webhooks", c.body), http.StatusBadRequest); p.Field != c.field {
				t.Fatalf("%s: problem names %q, want %q (%s)", c.body, p.Field, c.field, p.Detail)
			}
		}
		put := fmt.Sprintf(`{"url":%q,"event_types":["*"],"version":1}`, f.receiver)
		if w := must[webhook.Webhook](t, f.do(t, admin, "PUT", "/api/v1/webhooks/"+reg.ID, put), http.StatusOK); w.Version != 2 || w.EventTypes[0] != "*" {
			t.Fatalf("update %+v", w)
		}
		if p := problemOf(t, f.do(t, admin, "PUT", "/api/v1/webhooks/"+reg.ID, put), http.StatusConflict); p.Field != "version" {
			t.Fatalf("stale update: %+v", p)
		}
		page := must[webhook.DeadLetterPage](t, f.do(t, admin, "GET", "/api/v1/webhooks/"+reg.ID+"/dead-letters?limit=10", ""), http.StatusOK)
		if len(page.DeadLetters) != 0 {
			t.Fatalf("dead letters %+v", page)
		}
		if p := problemOf(t, f.do(t, admin, "GET", "/api/v1/webhooks/"+reg.ID+"/dead-letters?after=x", ""), http.StatusBadRequest); p.Field != "after" {
			t.Fatalf("bad cursor: %+v", p)
		}
		if r := f.do(t, admin, "DELETE", "/api/v1/webhooks/"+reg.ID, ""); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		problemOf(t, f.do(t, admin, "GET", "/api/v1/webhooks/"+reg.ID, ""), http.StatusNotFound)
		problemOf(t, f.do(t, admin, "POST", "/api/v1/webhooks/"+reg.ID+"/dead-letters", "{}"), http.StatusNotFound)
	})
}
