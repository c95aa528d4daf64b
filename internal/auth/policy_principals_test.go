package auth

import (
	"context"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A role the policy keeps for machine clients (integration) cannot be given
// to an account, nor one kept for people to a client.
func TestRolesAreGivenOnlyToThePrincipalsTheyAreFor(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := newTestAccounts(t, db, newTestClock())
		_, err := a.AddUser(ctx, "gateway.person", goodPassword, Integration)
		if e, ok := errs.As(err); !ok || e.Kind != errs.Invalid || e.Field != "role" ||
			!strings.Contains(e.Message, "role integration is for machine clients only") || !strings.Contains(e.Message, "physician") {
			t.Fatalf("AddUser(integration) = %v", err)
		}
		if _, err := a.UserByName(ctx, "gateway.person"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("the refused account exists: %v", err)
		}
		if _, err := a.AddUser(ctx, "huda", goodPassword, Nurse); err != nil {
			t.Fatal(err)
		}
		if err := a.SetRole(ctx, "huda", Integration); !errs.Is(err, errs.Invalid) {
			t.Fatalf("SetRole(integration) = %v", err)
		}
		if u, _ := a.UserByName(ctx, "huda"); u.Role != Nurse {
			t.Fatalf("role after the refused change = %s", u.Role)
		}
		if _, _, err := a.AddClient(ctx, "bot", Physician, []string{"system/*.cruds"}); !errs.Is(err, errs.Invalid) ||
			!strings.Contains(err.Error(), "for people only") {
			t.Fatalf("AddClient(physician) = %v", err)
		}
		if _, _, err := a.AddClient(ctx, "gateway", Integration, []string{"system/Claim.cruds"}); err != nil {
			t.Fatalf("AddClient(integration) = %v", err)
		}
	})
}

// An account given a machine role before the policy said so (here: by
// hand in the database) cannot sign in or refresh; whoever knows its
// password is told why and how to fix it, anyone else learns nothing; and
// serve can count such accounts.
func TestAnAccountWithAMachineRoleCannotSignIn(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := newTestAccounts(t, db, newTestClock())
		u, err := a.AddUser(ctx, "feed.person", goodPassword, Nurse)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := a.StartSession(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Writer().Exec(ctx, `UPDATE auth_users SET role = $1 WHERE id = $2`, string(Integration), u.ID); err != nil {
			t.Fatal(err)
		}
		_, err = a.Authenticate(ctx, "feed.person", goodPassword, "192.0.2.1")
		if e, ok := errs.As(err); !ok || e.Kind != errs.Forbidden || !strings.Contains(e.Message, "careflow user set-role") {
			t.Fatalf("login with the integration role = %v; want forbidden naming the fix", err)
		}
		if _, err := a.Authenticate(ctx, "feed.person", "wrong password!!", "192.0.2.1"); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("wrong password = %v; want the usual 401", err)
		}
		if _, err := a.Refresh(ctx, sess.RefreshToken); !errs.Is(err, errs.Forbidden) {
			t.Fatalf("refresh with the integration role = %v", err)
		}
		if n, err := a.UsersWithRolesNotForPeople(ctx); err != nil || n != 1 {
			t.Fatalf("UsersWithRolesNotForPeople = %d, %v", n, err)
		}
		if err := a.SetRole(ctx, "feed.person", Nurse); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(ctx, "feed.person", goodPassword, "192.0.2.1"); err != nil {
			t.Fatalf("login after set-role = %v", err)
		}
		// A client given a people's role by hand gets no token either.
		c, secret, err := a.AddClient(ctx, "feed", Integration, []string{"system/Observation.c"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Writer().Exec(ctx, `UPDATE auth_clients SET role = $1 WHERE id = $2`, string(Physician), c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AuthenticateClient(ctx, c.ID, secret); !errs.Is(err, errs.Forbidden) {
			t.Fatalf("client with a physician's role = %v", err)
		}
	})
}
