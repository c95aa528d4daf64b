package httpapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// An X-Request-ID is written verbatim into every log line and audit entry
// of its request, so a client must not be able to choose what it says: a
// made-up id (here a birth date) is replaced everywhere, and only an id of
// the form careflow issues is kept, so a retry can still quote the id it
// was given.
func TestIncomingRequestIDIsKeptOnlyWhenCareflowCouldHaveIssuedIt(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		accounts, err := auth.NewAccounts(db, auth.AccountsConfig{Params: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
			// Every case is a refused login; none may be the one that locks.
			Lockout: auth.LockoutPolicy{PairThreshold: 100, AddrThreshold: 100, UnknownFree: 100, Window: time.Minute, BaseLock: time.Minute, MaxLock: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := accounts.AddUser(ctx, "rania.clerk", testPassword, auth.Billing); err != nil {
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
		logs := &syncBuffer{}
		logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		srv := New(Options{Logger: logger, DB: db, Audit: log, Access: auth.NewAccess(db, nil, nil),
			Identity: Identity{Authenticator: auth.NewVerifier(tokens, nil), Accounts: accounts, Tokens: tokens}})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		f := &idFixture{fixture: &fixture{srv: srv, ts: ts, logs: logs}, accounts: accounts, tokens: tokens}

		issued := uuid.Must(uuid.NewV7()).String()
		cases := []struct {
			name, in string
			kept     bool
		}{
			{"a birth date in a made-up id is replaced", "victim-1961-07-13", false},
			{"a name is replaced", "Fatma.Hassan", false},
			{"an upper-case uuid is not the form careflow issues", strings.ToUpper(issued), false},
			{"a uuid of another version is replaced", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", false},
			{"an id careflow issued is kept", issued, true},
		}
		for _, c := range cases {
			resp, _ := f.doT(t, "POST", "/api/v1/auth/login", `{"username":"rania.clerk","password":"not the password at all"}`,
				map[string]string{"Content-Type": "application/json", "X-Request-ID": c.in})
			if resp.StatusCode != 401 {
				t.Fatalf("%s: wrong password = %d, want 401", c.name, resp.StatusCode)
			}
			got := resp.Header.Get("X-Request-ID")
			if (got == c.in) != c.kept || !issuedRequestID(got) {
				t.Fatalf("%s: X-Request-ID in %q out %q, kept want %v", c.name, c.in, got, c.kept)
			}
			page, err := audit.List(ctx, db, audit.Filter{RequestID: got, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Entries) != 1 || page.Entries[0].Action != "login" {
				t.Fatalf("%s: audit entries under the answered id: %+v", c.name, page.Entries)
			}
			if !c.kept {
				page, err := audit.List(ctx, db, audit.Filter{RequestID: c.in, Limit: 10})
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Entries) != 0 {
					t.Fatalf("%s: the incoming id reached the audit log: %+v", c.name, page.Entries)
				}
			}
		}
		for _, leak := range []string{"1961-07-13", "Fatma", strings.ToUpper(issued), "6ba7b810"} {
			if strings.Contains(logs.String(), leak) {
				t.Fatalf("the log holds the incoming id part %q:\n%s", leak, logs.String())
			}
		}
		if !strings.Contains(logs.String(), "incoming X-Request-ID replaced") {
			t.Fatal("no log line says an incoming id was replaced")
		}
	})
}
