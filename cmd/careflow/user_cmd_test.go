package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// `careflow user unlock` clears an account's lock-outs on the shared
// database, so the next login from the locked address goes through.
func TestUserUnlockClearsLockOuts(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			dir := t.TempDir()
			dbURL := filepath.Join(dir, "cf.db")
			if d == store.Postgres {
				dbURL = storetest.NewPostgresDatabase(t)
			}
			env := map[string]string{"CAREFLOW_DATABASE": dbURL, "CAREFLOW_DATA_DIR": dir}
			pwFile := filepath.Join(dir, "pw")
			if err := os.WriteFile(pwFile, []byte("correct horse battery\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if code, _, errOut := runCmd(t, env, "user", "add", "amal", "--role", "physician", "--password-file", pwFile); code != 0 {
				t.Fatalf("user add = %d %s", code, errOut)
			}
			ctx := context.Background()
			db, err := store.Open(ctx, store.Config{URL: dbURL})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			a, err := auth.NewAccounts(db, auth.AccountsConfig{})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				_, err = a.Authenticate(ctx, "amal", "wrong password!!", "198.51.100.7")
			}
			if !errs.Is(err, errs.RateLimited) {
				t.Fatalf("5th failure = %v, want a lock-out", err)
			}
			code, out, errOut := runCmd(t, env, "user", "unlock", "Amal")
			if code != 0 || !strings.Contains(out, "unlocked user amal") {
				t.Fatalf("user unlock = %d %q %q", code, out, errOut)
			}
			if _, err := a.Authenticate(ctx, "amal", "correct horse battery", "198.51.100.7"); err != nil {
				t.Fatalf("login after unlock = %v", err)
			}
			// The unlock is in the audit log, on the account's id.
			u, err := a.UserByName(ctx, "amal")
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM audit_entries WHERE action = 'user_unlock' AND resource_id = $1 AND actor = 'careflow-cli'`, u.ID).Scan(&n); err != nil || n != 1 {
				t.Fatalf("audit entries of the unlock = %d, %v; want 1", n, err)
			}
			code, out, _ = runCmd(t, env, "user", "unlock", "amal")
			if code != 0 || !strings.Contains(out, "had no failed-login lock-out") {
				t.Fatalf("second unlock = %d %q", code, out)
			}
			code, _, errOut = runCmd(t, env, "user", "unlock", "ghost")
			if code != 0 || !strings.Contains(errOut, "there is no user ghost") {
				t.Fatalf("unlock of an unknown name = %d %q", code, errOut)
			}
		})
	}
}
