package httpapi

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A password account that holds the integration role (made before the
// policy kept that role for machine clients) gets no session: its login
// is a 403 saying why and what fixes it. A machine client holding a role
// for people gets no token.
func TestMachineRolesDoNotSignPeopleIn(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newIDFixture(t, db, nil)
		if _, err := f.accounts.AddUser(ctx, "feed.person", testPassword, auth.Integration); err == nil {
			t.Fatal("an account was given the integration role")
		}
		f.addUser(t, "feed.person", auth.Nurse)
		if _, err := db.Writer().Exec(ctx, `UPDATE auth_users SET role = 'integration' WHERE username = 'feed.person'`); err != nil {
			t.Fatal(err)
		}
		resp, body := f.doT(t, "POST", "/api/v1/auth/login", `{"username":"feed.person","password":"`+testPassword+`"}`,
			map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != 403 || !strings.Contains(string(body), "careflow user set-role") || strings.Contains(string(body), "access_token") {
			t.Fatalf("login of an account with the integration role = %d %s", resp.StatusCode, body)
		}

		c, secret, err := f.accounts.AddClient(ctx, "feed", auth.Integration, []string{"system/Observation.c"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Writer().Exec(ctx, `UPDATE auth_clients SET role = 'physician' WHERE id = $1`, c.ID); err != nil {
			t.Fatal(err)
		}
		resp, body = f.doT(t, "POST", "/api/v1/auth/token", "grant_type=client_credentials&client_id="+c.ID+"&client_secret="+url.QueryEscape(secret),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		if resp.StatusCode != 400 || !strings.Contains(string(body), `"unauthorized_client"`) {
			t.Fatalf("token for a client with a physician's role = %d %s", resp.StatusCode, body)
		}
	})
}
