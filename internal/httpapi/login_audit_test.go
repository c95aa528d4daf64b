package httpapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// Logins are security events: a refused one and a granted one each leave an
// audit entry before the answer, and neither names the username.
func TestLoginsAreAudited(t *testing.T) {
	t.Parallel()
	const loginReqID = "0193a4b2-7c1d-7f00-8a00-0000000000c3"
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		accounts, err := auth.NewAccounts(db, auth.AccountsConfig{Params: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
		if err != nil {
			t.Fatal(err)
		}
		user, err := accounts.AddUser(ctx, "nour.billing", testPassword, auth.Billing)
		if err != nil {
			t.Fatal(err)
		}
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		ks, err := auth.NewKeySet(key)
		if err != nil {
			t.Fatal(err)
		}
		tokens := auth.NewTokens(ks, auth.TokenConfig{})
		signer, _, err := audit.GenerateSigner()
		if err != nil {
			t.Fatal(err)
		}
		log, err := audit.New(ctx, db, audit.Options{Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = log.Close(context.Background()) })
		srv := New(Options{DB: db, Audit: log, Access: auth.NewAccess(db, nil, nil),
			Identity: Identity{Authenticator: auth.NewVerifier(tokens, nil), Accounts: accounts, Tokens: tokens}})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		f := &idFixture{fixture: &fixture{srv: srv, ts: ts, logs: &syncBuffer{}}, accounts: accounts, tokens: tokens}

		resp, _ := f.doT(t, "POST", "/api/v1/auth/login", `{"username":"nour.billing","password":"not the password at all"}`,
			map[string]string{"Content-Type": "application/json", "X-Request-ID": loginReqID})
		if resp.StatusCode != 401 {
			t.Fatalf("wrong password: %d, want 401", resp.StatusCode)
		}
		f.login(t, "nour.billing")

		page, err := audit.List(ctx, db, audit.Filter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var denied, granted *audit.Entry
		for i, e := range page.Entries {
			if e.Action != "login" {
				continue
			}
			if strings.Contains(e.Actor+e.ResourceID, "nour") {
				t.Fatalf("an audit entry names the username: %+v", e)
			}
			switch e.Outcome {
			case audit.OutcomeDenied:
				denied = &page.Entries[i]
			case audit.OutcomeSuccess:
				granted = &page.Entries[i]
			}
		}
		if denied == nil || denied.Actor != "anonymous" || denied.RequestID != loginReqID || denied.Severity != audit.SeverityWarning {
			t.Fatalf("refused login entry %+v", denied)
		}
		if granted == nil || granted.Actor != user.ID || granted.Role != string(auth.Billing) || granted.ClientAddr == "" {
			t.Fatalf("granted login entry %+v", granted)
		}
	})
}
